# From <modelfiles>/others.Modelfile by `corral import-modelfile --nix`.
# LICENSE (line 2): not carried over; it stays in the Modelfile
# REQUIRES 0.6.0 (line 4): an Ollama version; dropped
# RENDERER qwen3-coder (line 5): Ollama's own Go renderer, not used; llama-server formats
# and parses with the GGUF's Jinja template
# PARSER qwen3-coder (line 6): Ollama's own Go parser, not used; llama-server formats and
# parses with the GGUF's Jinja template
# DRAFT (line 7): a GGUF file for llama-server's --model-draft
{
  others = {
    # FROM gemma3:270m (line 1): a model of your config, or of Ollama's store
    # (ollama_models); or download it: replace `from` with `source: ollama:gemma3:270m`
    from = "gemma3:270m";
    # args is set when llama-server starts: that makes this its own model, with its own
    # llama-server, rather than a preset sharing gemma3:270m's (as one that sets only
    # parameters or system_prompt would)
    extraArgs = [ "--model-draft" "<modelfiles>/draft.gguf" ];
  };
}
