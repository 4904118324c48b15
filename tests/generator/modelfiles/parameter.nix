# From <modelfiles>/parameter.Modelfile by `corral import-modelfile --nix`.
# PARAMETER mirostat (line 8): deprecated in Ollama, which ignores it
{
  parameter = {
    # FROM registry.ollama.ai/library/gemma3:270m (line 1): a model of your config, or of
    # Ollama's store (ollama_models); or download it: replace `from` with `source:
    # ollama:gemma3:270m`
    from = "gemma3:270m";
    parameters = {
      temperature = 0.7;
      top_k = 40;
      max_tokens = 64;
      n_keep = (-1);
      stop = [ "<end_of_turn>" "<eos>" ];
      seed = 42;
    };
  };
}
