# The attribute set handed to `corral generate --settings`: `services.corral.generatorInput`.
#
# Owns the mapping from options to the generator's camelCase keys (the contract is
# generator/settings.py and generator/cli.py) and nothing else: no checks, no defaults of
# the generator's own. Unset (null) options are dropped, so the generator sees only what
# the user set and applies its own defaults to the rest.
{
  lib,
  pkgs,
  cfg,
  # The machine's name (networking.hostName), for the lock file's messages.
  host ? "HOST",
}:
let
  dropNulls = lib.filterAttrs (_: value: value != null);
  # An empty list or set is the generator's default too; leaving it out matters for a
  # preset (`from`), which would otherwise override its base's extraArgs or env with nothing.
  dropEmpty = lib.filterAttrs (_: value: value != [ ] && value != { });
  layout = import ./layout.nix;
  # settings.service.name may rename the unit; the credential directory follows it.
  unitName = cfg.settings.service.name or layout.unitName;

  lock = import ./lock.nix {
    inherit lib pkgs;
    inherit (cfg) lockFile;
    inherit host;
  };

  model =
    name: m:
    dropEmpty (dropNulls ({
      inherit (m)
        from
        source
        path
        contextSize
        gpuLayers
        ttl
        aliases
        extraArgs
        rpc
        env
        chatTemplate
        parameters
        systemPrompt
        group
        memory
        preload
        unlisted
        sendLoadingState
        ;
    } // lib.optionalAttrs (m.source != null && m.path == null) (lock.model name m)));

  group = g: {
    inherit (g)
      members
      swap
      exclusive
      persistent
      ;
  };

  fromOptions = dropNulls {
    inherit (cfg)
      host
      port
      modelsPath
      ollamaModels
      defaultTTL
      healthTimeout
      allowedOrigins
      metricsAllow
      memoryMargin
      maxSwapWait
      ;
    # A device without a declared budget is detected at start: the generator never sees it.
    devices =
      let
        declared = lib.filterAttrs (_: device: device.memory != null) cfg.devices;
      in
      if declared == { } then null else declared;
    llamaServer = lib.getExe' cfg.llamaCpp.finalPackage "llama-server";
    # The file itself reaches the service as a systemd credential (see default.nix).
    apiKeyFile =
      if cfg.apiKeyFile == null then null else "/run/credentials/${unitName}.service/api-keys";
    models = lib.mapAttrs model cfg.models;
    # Each peer's key reaches the service as a credential, as apiKeyFile's does (remote.nix).
    peers =
      if cfg.peers == { } then
        null
      else
        lib.mapAttrs (
          name: peer:
          dropNulls {
            inherit (peer) url models;
            apiKeyFile =
              if peer.apiKeyFile == null then
                null
              else
                "/run/credentials/${unitName}.service/peer-${name}";
          }
        ) cfg.peers;
    groups = lib.mapAttrs (_: group) cfg.groups;
    service = dropNulls {
      name = unitName;
      corralBin = lib.getExe cfg.package;
      # No configPath: generate.nix passes --config-path, because `corral generate` fills
      # in config_path itself and would then see the key twice (configPath, config_path).
      killBin = "${pkgs.coreutils}/bin/kill";
      inherit (cfg)
        user
        extraGroups
        acceleration
        environment
        ipAddressAllow
        ;
      # No Group= unless one was chosen or the module creates it (default.nix): a normal
      # user's primary group is `users`, and Group=alice would fail with 216/GROUP.
      group =
        if cfg.group != null then
          cfg.group
        else if cfg.user == layout.account then
          layout.account
        else
          null;
      stateDirectory = "corral";
    };
  };
in
lib.recursiveUpdate fromOptions cfg.settings
