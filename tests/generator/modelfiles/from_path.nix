# From <modelfiles>/from_path.Modelfile by `corral import-modelfile --nix`.
{
  from_path = {
    # FROM (line 1): not a file on this machine (yet)
    path = "<modelfiles>/weights/model-q4_k_m.gguf";
  };
}
