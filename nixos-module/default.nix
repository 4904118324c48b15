# The NixOS module `services.corral`: what the options turn into on the machine.
#
# Owns the wiring: the generated unit(s) installed through `systemd.packages`, config.yaml
# at a stable path in /etc, a reload (not a restart) when only the config changed, the API
# key credential, the service user, the firewall, and the assertions that need nothing but
# the options. It declares no options itself (options.nix) and re-implements none of the
# generator's validation or rendering (`corral generate` does both at build time).
{
  config,
  lib,
  ...
}:
let
  cfg = config.services.corral;
  layout = import ./layout.nix;
  unitName = cfg.generatorInput.service.name;
  configFile = "${cfg.generated}/config.yaml";

  modelsWithoutPath = lib.filterAttrs (
    name: model:
    model.path == null && model.source == null && (cfg.settings.models.${name}.cmd or null) == null
  ) cfg.models;
in
{
  imports = [ ./options.nix ];

  config = lib.mkIf cfg.enable {
    assertions =
      lib.mapAttrsToList (name: _: {
        assertion = false;
        message = ''services.corral.models.${lib.strings.escapeNixIdentifier name}.path: must be set (a GGUF file: a path, a string or pkgs.fetchurl { url = …; hash = …; }), got null; or set services.corral.settings.models.${lib.strings.escapeNixIdentifier name}.cmd'';
      }) modelsWithoutPath
      ++ [
        {
          assertion = cfg.user != null || cfg.group == null;
          message = "services.corral.group: is ${builtins.toJSON cfg.group}, but services.corral.user is null (a DynamicUser, which has its own group); set services.corral.user too, or use services.corral.extraGroups";
        }
      ];

    # The generator renders the unit; NixOS adds a drop-in for what follows.
    systemd.packages = [ cfg.generated ];
    systemd.services.${unitName} = {
      wantedBy = [ "multi-user.target" ];
      # The unit reads config.yaml from /etc, so a change of models alone leaves the unit
      # file as it was: switch-to-configuration then reloads (ExecReload: SIGHUP) and the
      # loaded models keep running, instead of restarting and dropping them.
      reloadTriggers = [ configFile ];
      serviceConfig.LoadCredential = lib.mkIf (cfg.apiKeyFile != null) [
        "api-keys:${cfg.apiKeyFile}"
      ];
    };

    environment.etc.${layout.etcName}.source = configFile;

    # `corral check` and `corral generate` for the administrator.
    environment.systemPackages = [ cfg.package ];

    users.users = lib.mkIf (cfg.user == "corral") {
      corral = {
        isSystemUser = true;
        group = if cfg.group == null then "corral" else cfg.group;
        description = "corral model server";
      };
    };
    users.groups = lib.mkIf (cfg.group == "corral") { corral = { }; };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.port ];
  };
}
