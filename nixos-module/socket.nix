# Socket activation: `services.corral.socketActivation` and `services.corral.idleExit`.
#
# Owns these two options and the wiring that only they need: systemd listens on the port
# (the generator renders <name>.socket beside the service, and `systemd.packages` installs
# both), sockets.target wants the socket, and nothing wants the service at boot: the first
# connection starts it, and with idleExit it exits again when idle. NixOS reads no
# [Install] section of a packaged unit, so both are said here. What the options mean to
# corral is the generator's (generator-input.nix hands them over).
{
  config,
  lib,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.corral;
  unitName = cfg.generatorInput.service.name;
in
{
  options.services.corral = {
    socketActivation = mkOption {
      type = types.bool;
      default = false;
      example = true;
      description = ''
        Let systemd listen on {option}`services.corral.host` and
        {option}`services.corral.port` (a `corral.socket` unit) and start corral on the first
        connection, instead of at boot. With {option}`services.corral.idleExit` (60 seconds
        unless set) corral exits once no model is loaded and no client is connected, so an
        idle machine runs nothing; the next request starts it again (about a second, plus the
        model's load). The host must be an IP address or `localhost`.
      '';
    };

    idleExit = mkOption {
      type = types.nullOr (types.either types.ints.unsigned types.float);
      default = null;
      example = 300;
      description = ''
        Seconds with no model loaded and no connection open after which corral exits
        (exit code 0, so systemd does not restart it); `0` never exits. `null`: 60 with
        {option}`services.corral.socketActivation`, else never (nothing would start it
        again). Preloaded models that never unload keep corral up: `corral check` says so.
      '';
    };
  };

  config = lib.mkIf (cfg.enable && cfg.socketActivation) {
    systemd.sockets.${unitName}.wantedBy = [ "sockets.target" ];
    # The socket starts the service; started at boot as well, it would bind the port itself.
    systemd.services.${unitName}.wantedBy = lib.mkForce [ ];
  };
}
