# From <modelfiles>/system.Modelfile by `corral import-modelfile --nix`.
{
  system = {
    # FROM someone/helper:q4 (line 1): a model of your config, or of Ollama's store
    # (ollama_models); or download it: replace `from` with `source:
    # ollama:someone/helper:q4`
    from = "someone/helper:q4";
    systemPrompt = "\nYou are Mario from Super Mario Bros.\nAnswer as Mario, \"the assistant\", only.\n";
  };
}
