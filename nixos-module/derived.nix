# Read-only options that serve the rebuild before anything is built: `services.corral.checked`
# (the settings check that needs corral alone) and `services.corral.lockInput` (what
# `corral lock` reads, for a NixOS user who has no config.yaml).
#
# Owns those two options. The check's derivation is generate.nix's; the lock's reading is
# lock.nix's.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types literalExpression literalMD;
  cfg = config.services.corral;
in
{
  options.services.corral = {
    checked = mkOption {
      type = types.package;
      readOnly = true;
      default = (import ./generate.nix { inherit pkgs lib cfg; }).checked;
      defaultText = literalMD "`corral generate` on {option}`services.corral.generatorInput` without its string context";
      example = literalExpression "config.services.corral.checked";
      description = ''
        The generator's check of the settings (read-only), on a copy that names the same
        store paths without depending on them: it needs corral alone, not llama.cpp or a
        model, so a wrong setting fails in seconds. {option}`services.corral.generated`
        depends on it: `nixos-rebuild` builds it first.
      '';
    };

    lockInput = mkOption {
      type = types.attrsOf types.anything;
      readOnly = true;
      default = {
        models = lib.mapAttrs (_: m: { inherit (m) source; }) (
          lib.filterAttrs (_: m: m.source != null) cfg.models
        );
      };
      defaultText = literalMD "`{ models.<name>.source = …; }` for every model with a `source`";
      example = {
        models."qwen2.5-coder:3b".source = "ollama:qwen2.5-coder:3b";
      };
      description = ''
        What `corral lock` needs (read-only): every model's `source`. It evaluates without
        the lock file, so a NixOS user, who has no config.yaml, writes the lock with
        `nix eval --json .#nixosConfigurations.HOST.config.services.corral.lockInput > lock-input.json && corral lock --config lock-input.json`.
      '';
    };
  };
}
