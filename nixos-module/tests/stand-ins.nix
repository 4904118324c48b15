# Stand-in declarations for the NixOS options that the module writes to or reads, and no
# others.
#
# Owns just enough of each option for `lib.evalModules` to check the module's definitions
# (their names and types) and merge them as NixOS does. It does nothing with them: no
# units are built, no users created. A definition outside this list fails the evaluation,
# which is the point. Each one names the nixpkgs file it mirrors.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  strings = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };

  # nixos/lib/systemd-unit-options.nix (unitOption): a value given as a list in any
  # definition makes the option a list, and the definitions' lists are concatenated
  # (two modules' LoadCredential= add up); other values must agree.
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if lib.any (def: lib.isList def.value) defs' then
        lib.concatMap (def: lib.toList def.value) defs'
      else
        lib.mergeEqualOption loc defs';
  };

  nvidia = config.hardware.nvidia;
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
            # nixos/lib/systemd-unit-options.nix: serviceConfig is attrsOf unitOption.
            serviceConfig = mkOption {
              type = types.attrsOf unitOption;
              default = { };
            };
          };
        }
      );
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

    # nixos/modules/services/x11/xserver.nix; read for the NVIDIA driver.
    services.xserver.videoDrivers = strings;

    # nixos/modules/hardware/video/nvidia.nix: `enable` (on with the "nvidia" video
    # driver), `datacenter.enable`, the read-only `enabled`, and `open`, which must be set
    # for drivers >= 560 (its assertion, below).
    hardware.nvidia = {
      enable = mkOption {
        type = types.bool;
        default = builtins.elem "nvidia" config.services.xserver.videoDrivers;
      };
      datacenter.enable = mkOption {
        type = types.bool;
        default = false;
      };
      enabled = mkOption {
        type = types.bool;
        readOnly = true;
        default = nvidia.enable || nvidia.datacenter.enable;
      };
      open = mkOption {
        type = types.nullOr types.bool;
        default = null;
      };
    };

    # nixos/modules/hardware/graphics.nix: off by default; on, NixOS links the driver's
    # libraries to /run/opengl-driver.
    hardware.graphics.enable = mkOption {
      type = types.bool;
      default = false;
    };

    # nixos/modules/misc/nixpkgs.nix: read only for what the README's example sets.
    nixpkgs.config = mkOption {
      type = types.attrsOf types.anything;
      default = { };
    };

    networking.firewall.allowedTCPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
    };
  };

  config.assertions = lib.optional nvidia.enabled {
    assertion = nvidia.open != null || nvidia.datacenter.enable;
    message = ''
      You must configure `hardware.nvidia.open` on NVIDIA driver versions >= 560.
      It is suggested to use the open source kernel modules on Turing or later GPUs (RTX series, GTX 16xx), and the closed source modules otherwise.
    '';
  };
}
