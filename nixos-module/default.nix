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
  lib,
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
  hasKeys = cfg.apiKeyFile != null || (cfg.settings.apiKeys or cfg.settings.api_keys or [ ]) != [ ];
  nvidiaDriver =
    builtins.elem "nvidia" (config.services.xserver.videoDrivers or [ ])
    || (config.hardware.nvidia.datacenter.enable or false);

  # Ollama's store (ollamaModels): services.ollama writes it with UMask=0077, readable by its
  # user alone, and its DynamicUser's state sits in /var/lib/private (0700). corral reads it
  # as that user instead of loosening either; these say what to set when that is not so.
  store = cfg.ollamaModels;
  ollama = config.services.ollama or { };
  ollamaUser = ollama.user or null;
  within = dir: path: path == dir || lib.hasPrefix "${dir}/" path;
  storePrivate = store != null && (within "/var/lib/ollama" store || within "/var/lib/private" store);
  storeOwnedByOllama =
    store != null
    && (ollama.enable or false)
    && (store == (ollama.models or null) || within (ollama.home or "/var/lib/ollama") store);
  storeRecipe = ''services.ollama.user = "ollama"; services.ollama.models = "/var/lib/ollama-models"; systemd.tmpfiles.rules = [ "d /var/lib/ollama-models 0700 ollama ollama -" ]; services.corral.user = "ollama"; services.corral.ollamaModels = config.services.ollama.models; and move the store there once (systemctl stop ollama; mv /var/lib/private/ollama/models/* /var/lib/ollama-models/; chown -R ollama:ollama /var/lib/ollama-models)'';
in
{
  imports = [
    ./options.nix
    ./remote.nix
  ];

  config = lib.mkIf cfg.enable {
    assertions =
      lib.mapAttrsToList (name: _: {
        assertion = false;
        message = ''services.corral.models.${lib.strings.escapeNixIdentifier name}.path: must be set (a GGUF file: a path, a string or pkgs.fetchurl { url = …; hash = …; }), got null; or set services.corral.settings.models.${lib.strings.escapeNixIdentifier name}.cmd'';
      }) modelsWithoutPath
      ++ [
        {
          assertion = !storePrivate;
          message = "services.corral.ollamaModels: ${store} is inside services.ollama's state directory, which systemd keeps in /var/lib/private (mode 0700) for its DynamicUser, with files only ollama's user can read (UMask=0077): no other service can read it without loosening that. Share ollama's user and give the store a folder of its own: ${storeRecipe}. corral's unit mounts the store read-only.";
        }
        {
          assertion = storePrivate || !storeOwnedByOllama || (ollamaUser != null && cfg.user == ollamaUser);
          message = "services.corral.ollamaModels: ${store} is services.ollama's store, whose files only its user can read (UMask=0077); run corral as that user: set services.ollama.user = \"ollama\" (a static account; it is ${builtins.toJSON ollamaUser}) and services.corral.user to the same (it is ${builtins.toJSON cfg.user}). corral's unit mounts the store read-only.";
        }
        {
          assertion = cfg.user != null || cfg.group == null;
          message = "services.corral.group: is ${builtins.toJSON cfg.group}, but services.corral.user is null (a DynamicUser, which has its own group); set services.corral.user too, or use services.corral.extraGroups";
        }
      ];

    warnings =
      lib.optional (!loopback && !hasKeys) ''services.corral.host: is ${builtins.toJSON host}, beyond loopback, and no API key is set: every client on the networks that services.corral.ipAddressAllow admits can use the models and the GPU; set services.corral.apiKeyFile''
      ++ lib.optional (cfg.openFirewall && loopback) ''services.corral.openFirewall: opens port ${toString cfg.port}, but services.corral.host is ${builtins.toJSON host} (loopback), so nothing from outside can connect; set services.corral.host = "0.0.0.0" or leave openFirewall false''
      ++ lib.optional (cfg.acceleration == "cuda" && !nvidiaDriver) ''services.corral.acceleration: is "cuda", but no NVIDIA driver is configured (services.xserver.videoDrivers has no "nvidia", hardware.nvidia.datacenter.enable is not set): llama.cpp will find no GPU and run on the CPU; add services.xserver.videoDrivers = [ "nvidia" ] (also on a machine without X)'';

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
  };
}
