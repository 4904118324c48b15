# Stand-in declarations for the NixOS options that the module writes to, and no others.
#
# Owns just enough of each option for `lib.evalModules` to check the module's definitions
# (their names and types) and merge them. It does nothing with them: no units are built,
# no users created. A definition outside this list fails the evaluation, which is the point.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  anything = mkOption {
    type = types.attrsOf types.anything;
    default = { };
  };
  strings = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };
in
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    warnings = strings;

    systemd.packages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };
    systemd.services = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options = {
            wantedBy = strings;
            reloadTriggers = mkOption {
              type = types.listOf types.str;
              default = [ ];
            };
            serviceConfig = anything;
          };
        }
      );
    };

    systemd.sockets = mkOption {
      default = { };
      type = types.attrsOf (types.submodule { options.wantedBy = strings; });
    };

    environment.etc = mkOption {
      default = { };
      type = types.attrsOf (types.submodule { options.source = mkOption { type = types.path; }; });
    };
    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };

    users.users = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options = {
            isSystemUser = mkOption { type = types.bool; };
            group = mkOption { type = types.str; };
            description = mkOption { type = types.str; };
          };
        }
      );
    };
    users.groups = mkOption {
      type = types.attrsOf (types.submodule { });
      default = { };
    };

    # Read, not written: the warning for CUDA without an NVIDIA driver.
    services.xserver.videoDrivers = strings;

    networking.firewall.allowedTCPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
    };
  };
}
