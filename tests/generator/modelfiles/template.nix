# From <modelfiles>/template.Modelfile by `corral import-modelfile --nix`.
# TEMPLATE (line 2): not used. corral runs the GGUF's own Jinja chat template
# (tokenizer.chat_template); llama-server cannot run Ollama's Go templates. If the GGUF has
# none, set chat_template to a llama.cpp built-in name (gemma, chatml, llama3, ...) or a
# Jinja file.
{
  template = {
    # FROM gemma3:270m (line 1): a model of your config, or of Ollama's store
    # (ollama_models); or download it: replace `from` with `source: ollama:gemma3:270m`
    from = "gemma3:270m";
  };
}
