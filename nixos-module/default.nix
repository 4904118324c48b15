# The NixOS module `services.corral`: what the options turn into on the machine.
#
# Owns the wiring: the generated unit(s) installed through `systemd.packages`, config.yaml
# at a stable path in /etc, a reload (not a restart) when only the config changed, the API
# key credential, the user and group it owns (`corral`), the firewall, and the assertions
# and warnings that need nothing but the options. It declares no options itself
# (options.nix) and re-implements none of the generator's validation or rendering
# (`corral generate` does both at build time).
{
  config,
  options,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.corral;
  layout = import ./layout.nix;
  unitName = cfg.generatorInput.service.name;
  configFile = "${cfg.generated}/config.yaml";

  # A preset (`from`) takes its base's file; a `cmd` in settings runs something else.
  modelsWithoutPath = lib.filterAttrs (
    name: model:
    model.path == null
    && model.from == null
    && model.source == null
    && (cfg.settings.models.${name}.cmd or null) == null
  ) cfg.models;

  # For the warnings only; the unit's own decision is the generator's (is_loopback).
  host = cfg.environment.HOST or cfg.host;
  bare = lib.toLower (lib.removePrefix "[" (lib.removeSuffix "]" host));
  loopback =
    bare == "localhost" || lib.hasSuffix ".localhost" bare || lib.hasPrefix "127." bare || bare == "::1";
  inlineKeys = lib.filter (key: (cfg.settings.${key} or [ ]) != [ ]) [
    "apiKeys"
    "api_keys"
  ];
  hasKeys = cfg.apiKeyFile != null || inlineKeys != [ ];
  gpu = import ./acceleration.nix {
    inherit
      lib
      pkgs
      config
      options
      ;
  };
  secrets = import ./secrets.nix { inherit lib; };
in
{
  imports = [
    ./options.nix
    ./derived.nix
    ./remote.nix
    ./ollama-store.nix
  ];

  config = lib.mkMerge [
    (lib.mkIf (cfg.enable || cfg.rpcWorker.enable) {
      inherit (gpu) assertions warnings;
      hardware.graphics.enable = lib.mkIf gpu.graphics (lib.mkDefault true);
    })
    (lib.mkIf cfg.enable {
      assertions =
        lib.mapAttrsToList (name: _: {
          assertion = false;
          message = ''services.corral.models.${lib.strings.escapeNixIdentifier name}.path: must be set (a GGUF file: a path, a string or pkgs.fetchurl { url = …; hash = …; }), got null; or set services.corral.settings.models.${lib.strings.escapeNixIdentifier name}.cmd'';
        }) modelsWithoutPath
        ++ [
          (secrets.outsideStore "services.corral.apiKeyFile" cfg.apiKeyFile)
          {
            assertion = cfg.user != null || cfg.group == null;
            message = "services.corral.group: is ${builtins.toJSON cfg.group}, but services.corral.user is null (a DynamicUser, which has its own group); set services.corral.user too, or use services.corral.extraGroups";
          }
        ];

      warnings =
        lib.optional (!loopback && !hasKeys) ''services.corral.host: is ${builtins.toJSON host}, beyond loopback, and no API key is set: every client on the networks that services.corral.ipAddressAllow admits can use the models and the GPU; set services.corral.apiKeyFile''
        ++ lib.optional (cfg.openFirewall && loopback) ''services.corral.openFirewall: opens port ${toString cfg.port}, but services.corral.host is ${builtins.toJSON host} (loopback), so nothing from outside can connect; set services.corral.host = "0.0.0.0" or leave openFirewall false''
        ++ map (key: ''services.corral.settings.${key}: the keys are written into config.yaml in the Nix store, which every user of this machine can read; put them in a file outside the store, one per line, and set services.corral.apiKeyFile to its path'') inlineKeys;

      # The generator renders the unit; NixOS adds a drop-in for what follows.
      systemd.packages = [ cfg.generated ];
      systemd.services.${unitName} = {
        wantedBy = [ "multi-user.target" ];
        # The unit reads config.yaml from /etc, so a change of models alone leaves the unit
        # file as it was: switch-to-configuration then reloads (ExecReload: SIGHUP) and the
        # loaded models keep running, instead of restarting and dropping them. What a reload
        # cannot apply (host, port, limits) is in the unit's X-Restart-Triggers= line, which
        # the generator writes, so a change of those changes the unit and restarts it.
        reloadTriggers = [ configFile ];
        serviceConfig.LoadCredential = lib.mkIf (cfg.apiKeyFile != null) [
          "api-keys:${cfg.apiKeyFile}"
        ];
      };

      environment.etc.${layout.etcName}.source = configFile;

      # `corral check` and `corral generate` for the administrator.
      environment.systemPackages = [ cfg.package ];

      # The name this module owns, created as services.ollama creates its own; any other user
      # is the administrator's (a normal user's primary group is `users`, not its name).
      users.users = lib.mkIf (cfg.user == layout.account) {
        ${layout.account} = {
          isSystemUser = true;
          group = cfg.generatorInput.service.group;
          description = "corral model server";
        };
      };
      users.groups = lib.mkIf (cfg.generatorInput.service.group or null == layout.account) {
        ${layout.account} = { };
      };

      networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.port ];
    })
  ];
}
