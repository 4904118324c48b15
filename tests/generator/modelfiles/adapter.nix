# From <modelfiles>/adapter.Modelfile by `corral import-modelfile --nix`.
{
  adapter = {
    # FROM (line 1): not a file on this machine (yet)
    path = "/models/base.gguf";
    extraArgs = [ "--lora" "<modelfiles>/lora/style.gguf" "--lora" "<home>/adapters/second.gguf" ];
  };
}
