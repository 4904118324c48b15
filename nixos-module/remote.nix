# Beyond one machine: `services.corral.peers` (other servers whose models corral serves) and
# `services.corral.rpcWorker` (this machine as a llama.cpp RPC worker for another's corral).
#
# Owns those options, the peers' keys as systemd credentials, and the worker: its unit
# (written by `corral rpc-worker`, hardened like corral's), its llama.cpp (with RPC), its
# warnings. The worker needs no `services.corral.enable`: a worker box may run nothing else.
# Validation of the values is the generator's, at build time.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.corral;
  worker = cfg.rpcWorker;
  layout = import ./layout.nix;
  unitName = cfg.generatorInput.service.name;
  workerName = "corral-rpc";

  host = if worker.host == null then "" else lib.toLower (lib.removePrefix "[" (lib.removeSuffix "]" worker.host));
  loopback = host == "localhost" || lib.hasPrefix "127." host || host == "::1";

  secrets = import ./secrets.nix { inherit lib; };

  # nixpkgs' llama-cpp installs the worker as bin/llama-rpc-server (its postInstall copies
  # bin/rpc-server there); newer llama.cpp builds name it ggml-rpc-server, its own install
  # rpc-server. Which one a package has is known only once it is built.
  rpcServerNames = [
    "llama-rpc-server"
    "ggml-rpc-server"
    "rpc-server"
  ];
  workerSettings = lib.filterAttrs (_: v: v != null) {
    name = workerName;
    rpcServer = "@rpcServer@"; # the unit's build puts the binary it found here

    inherit (worker)
      host
      port
      devices
      ipAddressAllow
      ;
    inherit (cfg) acceleration;
  };
  workerUnit =
    pkgs.runCommand "corral-rpc-worker"
      {
        nativeBuildInputs = [ cfg.package ];
        llamaCpp = cfg.llamaCpp.finalPackage;
        settingsFile = pkgs.writeText "corral-rpc-worker.json" (builtins.toJSON workerSettings);
      }
      ''
        rpcServer=
        for name in ${lib.concatStringsSep " " rpcServerNames}; do
          if [ -x "$llamaCpp/bin/$name" ]; then
            rpcServer="$llamaCpp/bin/$name"
            break
          fi
        done
        if [ -z "$rpcServer" ]; then
          echo "services.corral.rpcWorker: $llamaCpp/bin has none of ${lib.concatStringsSep ", " rpcServerNames}: services.corral.llamaCpp.package must be built with llama.cpp's RPC backend (nixpkgs' llama-cpp: rpcSupport = true, which corral sets on its default)" >&2
          exit 1
        fi
        sed "s|@rpcServer@|$rpcServer|" "$settingsFile" > settings.json
        corral rpc-worker --settings settings.json --out "$out/lib/systemd/system"
      '';

  peerModel = types.submodule {
    options = {
      name = mkOption {
        type = types.str;
        example = "qwen3:8b";
        description = "The model's name on the peer.";
      };
      aliases = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "qwen-laptop" ];
        description = "Other names clients of this corral may use for it; the peer gets `name`.";
      };
    };
  };
  peer = types.submodule {
    options = {
      url = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "http://192.168.1.20:11434";
        description = "The peer's base URL, `http://` or `https://` (required).";
      };
      apiKeyFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        apply = p: if p == null then null else toString p;
        example = "/run/secrets/corral-laptop-key";
        description = ''
          File whose first line is the key sent to this peer as `Authorization: Bearer`.
          It stays out of the store (a systemd credential). Only this peer ever gets it, and
          the keys clients send to corral are never passed on.
        '';
      };
      models = mkOption {
        type = types.listOf (types.either types.str peerModel);
        default = [ ];
        example = lib.literalExpression ''[ "llama3.2:3b" { name = "qwen3:8b"; aliases = [ "qwen-laptop" ]; } ]'';
        description = "The peer's models that this corral serves by passing requests on.";
      };
    };
  };
in
{
  options.services.corral = {
    peers = mkOption {
      type = types.attrsOf peer;
      default = { };
      example = lib.literalExpression ''
        { laptop = { url = "http://192.168.1.20:11434"; models = [ "llama3.2:3b" ]; }; }
      '';
      description = ''
        Other servers (a corral, llama-swap, Ollama, or any OpenAI-compatible server) whose
        models corral serves: requests for them go to the peer, streamed, with the peer's own
        key. `/v1/models`, `/api/tags` and `/running` list them with the peer's name. The
        unit may reach each peer's address. Ollama-API requests are passed on as they are,
        so they need a peer that speaks Ollama's API (corral or Ollama).
      '';
    };

    rpcWorker = {
      enable = lib.mkEnableOption ''
        llama.cpp's `rpc-server` on this machine, so that another machine's corral can put
        part of a model's layers on its devices (that model's `rpc`). rpc-server has no
        authentication: whoever reaches its port can run code on its devices; keep it on a
        trusted network'';

      host = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "192.168.1.20";
        description = ''
          The address rpc-server binds (required): this machine's address on the trusted
          network that the head reaches it by. There is deliberately no default, and never
          `0.0.0.0`: rpc-server has no authentication.
        '';
      };

      port = mkOption {
        type = types.port;
        default = 50052;
        example = 50100;
        description = "The port rpc-server binds (llama.cpp's default is 50052).";
      };

      devices = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "CUDA0" ];
        description = "Devices to offer (`rpc-server -d`); empty: every device it finds.";
      };

      ipAddressAllow = mkOption {
        type = types.nullOr (types.listOf types.str);
        default = null;
        example = [ "192.168.1.10" ];
        description = ''
          Who may connect (the unit's `IPAddressAllow=`, besides localhost). `null`: the
          local networks; best: the head's address alone.
        '';
      };
    };
  };

  config = lib.mkMerge [
    (lib.mkIf (cfg.enable && cfg.peers != { }) {
      assertions = lib.mapAttrsToList (
        name: p:
        secrets.outsideStore "services.corral.peers.${lib.strings.escapeNixIdentifier name}.apiKeyFile" p.apiKeyFile
      ) cfg.peers;
      systemd.services.${unitName}.serviceConfig.LoadCredential = lib.mapAttrsToList (
        name: p: "peer-${name}:${p.apiKeyFile}"
      ) (lib.filterAttrs (_: p: p.apiKeyFile != null) cfg.peers);
    })
    (lib.mkIf worker.enable {
      assertions = [
        {
          assertion = worker.host != null;
          message = ''services.corral.rpcWorker.host: must be set to this machine's address on a trusted network (rpc-server has no authentication), got null'';
        }
      ];
      # Set to the head's address, the port is as closed as it can be: nothing left to say.
      warnings = lib.optional (
        !loopback && (worker.ipAddressAllow == null || builtins.elem "any" worker.ipAddressAllow)
      ) ''services.corral.rpcWorker: rpc-server on ${toString worker.host}:${toString worker.port} has no authentication: whoever reaches that port can run code on this machine's devices. It must sit on a trusted network; set services.corral.rpcWorker.ipAddressAllow to the head's address'';
      systemd.packages = [ workerUnit ];
      systemd.services.${workerName}.wantedBy = [ "multi-user.target" ];
    })
  ];
}
