# From <modelfiles>/from_name.Modelfile by `corral import-modelfile --nix`.
{
  from_name = {
    # FROM llama3.2 (line 2): a model of your config, or of Ollama's store (ollama_models);
    # or download it: replace `from` with `source: ollama:llama3.2:latest`
    from = "llama3.2:latest";
  };
}
