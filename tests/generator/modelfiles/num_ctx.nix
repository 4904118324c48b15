# From <modelfiles>/num_ctx.Modelfile by `corral import-modelfile --nix`.
{
  num_ctx = {
    # FROM gemma3:270m (line 1): a model of your config, or of Ollama's store
    # (ollama_models); or download it: replace `from` with `source: ollama:gemma3:270m`
    from = "gemma3:270m";
    # PARAMETER num_ctx (line 2)
    # context_size is set when llama-server starts: that makes this its own model, with its
    # own llama-server, rather than a preset sharing gemma3:270m's (as one that sets only
    # parameters or system_prompt would)
    contextSize = 8192;
    # PARAMETER num_gpu (line 3)
    # gpu_layers is set when llama-server starts: that makes this its own model, with its
    # own llama-server, rather than a preset sharing gemma3:270m's (as one that sets only
    # parameters or system_prompt would)
    gpuLayers = 99;
    # PARAMETER num_thread (line 4)
    # PARAMETER use_mmap false (line 5)
    # args is set when llama-server starts: that makes this its own model, with its own
    # llama-server, rather than a preset sharing gemma3:270m's (as one that sets only
    # parameters or system_prompt would)
    extraArgs = [ "--threads" "4" "--no-mmap" ];
  };
}
