# Evaluates the module with nixpkgs' real `lib.evalModules`, the stand-ins for the NixOS
# options it writes to, and the stub pkgs: the harness of tests/nix (nixpkgs' lib alone).
#
#   nix-instantiate --eval --strict --json nixos-module/tests/eval.nix \
#     --arg configuration ./tests/nix/fixtures/seed.nix -A generatorInput
#
# Owns the wiring of one evaluation and the views the tests read. `lib` defaults to
# $NIXPKGS_LIB, nixpkgs' lib directory (nix-community/nixpkgs.lib).
{
  lib ? import (builtins.getEnv "NIXPKGS_LIB"),
  # A module: the user's side of the configuration.
  configuration,
  corralBin ? "/bin/false",
  # nixpkgs' config, e.g. { cudaSupport = true; }.
  pkgsConfig ? { },
}:
let
  pkgs = import ./stub-pkgs.nix {
    inherit lib corralBin;
    config = pkgsConfig;
  };
  evaluated = lib.evalModules {
    modules = [
      ./stand-ins.nix
      ../default.nix
      { _module.args.pkgs = pkgs; }
      configuration
    ];
  };
  inherit (evaluated) config;
  service = config.systemd.services.corral or { };
  # The derivations a derivation's build reads (its direct inputs), by name: the settings
  # check must need corral alone, never llama.cpp or a model.
  inputsOf =
    drv:
    map (
      path: lib.removeSuffix ".drv" (builtins.substring 44 (-1) (builtins.unsafeDiscardStringContext path))
    ) (lib.attrNames (builtins.getContext (builtins.toJSON drv.drvAttrs)));
in
{
  inherit config pkgs;
  inherit (config) warnings;
  inherit (config.services.corral) generatorInput generated;
  # Every option of services.corral as the manual would show it (forces each description,
  # type, default and example to evaluate).
  docs = map (o: {
    inherit (o) name description type readOnly;
    default = o.default or null;
    example = o.example or null;
  }) (lib.filter (o: lib.take 2 o.loc == [ "services" "corral" ] && o.visible && !o.internal) (lib.optionAttrSetToDocList evaluated.options));
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  # What a user sees of the GPU setup: the unit's acceleration, hardware.graphics, and
  # what they are told.
  outcome = {
    inherit (config.services.corral) acceleration;
    graphics = config.hardware.graphics.enable;
    inherit (config) warnings;
    failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  };
  # The inputs of services.corral.checked and of its settings file, and the same of
  # services.corral.generated: what each build waits for.
  inputs = lib.mapAttrs (_: drv: {
    own = inputsOf drv;
    settings = inputsOf drv.settingsFile;
  }) { inherit (config.services.corral) checked generated; };
  # What the module installs, as plain data for the tests.
  installed = {
    units = map (p: p.name) config.systemd.packages;
    wantedBy = service.wantedBy or [ ];
    reloadTriggers = service.reloadTriggers or [ ];
    loadCredential = service.serviceConfig.LoadCredential or [ ];
    etc = lib.mapAttrs (_: e: e.source) config.environment.etc;
    users = lib.mapAttrs (_: u: { inherit (u) isSystemUser group; }) config.users.users;
    acceleration = config.services.corral.acceleration;
    groups = lib.attrNames config.users.groups;
    firewall = config.networking.firewall.allowedTCPPorts;
    llamaServer = config.services.corral.generatorInput.llamaServer;
  };
}
