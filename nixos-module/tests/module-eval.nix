# The flake's `checks.<system>.module-eval`: the module in a whole NixOS evaluation (real
# nixpkgs, real systemd options), with the seed user's six models.
#
# Owns what tests/nix cannot see with lib alone: that the NixOS options the module writes
# to accept its definitions, that its own assertions hold, and that building the result
# runs `corral generate` and installs config.yaml and a unit that reloads on a change.
{
  pkgs,
  lib,
  module,
}:
let
  nixos = lib.nixosSystem {
    modules = [
      module
      ../../tests/nix/fixtures/seed.nix
      {
        # CUDA is unfree and large; acceleration's override is covered by tests/nix.
        services.corral.acceleration = lib.mkForce "cpu";
        nixpkgs.hostPlatform = pkgs.stdenv.hostPlatform.system;
        system.stateVersion = "26.05";
      }
    ];
  };
  inherit (nixos) config;
  failed = map (a: a.message) (
    lib.filter (a: !a.assertion && lib.hasPrefix "services.corral" a.message) config.assertions
  );
  generated = config.services.corral.generated;
  dropIn = pkgs.writeText "corral-dropin" config.systemd.units."corral.service".text;
in
if failed != [ ] then
  throw "services.corral assertions failed:\n${lib.concatStringsSep "\n" failed}"
else
  pkgs.runCommand "corral-module-eval" { } ''
    set -eu
    unit=${generated}/lib/systemd/system/corral.service
    grep -q '^ExecReload=.* -HUP ' "$unit"
    grep -q -- '--config /etc/corral/config.yaml' "$unit"
    grep -q 'qwen2.5-coder:32b' ${generated}/config.yaml
    test "${config.environment.etc."corral/config.yaml".source}" = "${generated}/config.yaml"
    grep -q '^X-Reload-Triggers=' ${dropIn}
    touch "$out"
  ''
