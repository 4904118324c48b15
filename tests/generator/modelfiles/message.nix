# From <modelfiles>/message.Modelfile by `corral import-modelfile --nix`.
# MESSAGE user (line 2): not supported; corral adds no example messages to requests, so this
# one is dropped: Is Toronto in Canada?
# MESSAGE assistant (line 3): not supported; corral adds no example messages to requests, so
# this one is dropped: yes
{
  message = {
    # FROM gemma3:270m (line 1): a model of your config, or of Ollama's store
    # (ollama_models); or download it: replace `from` with `source: ollama:gemma3:270m`
    from = "gemma3:270m";
  };
}
