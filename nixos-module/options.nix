# The options of `services.corral`: their names, types, defaults and documentation.
#
# Owns the user-facing surface and nothing else: what these options turn into (the
# generator's input, the units, the users, the firewall) is in default.nix, and whether a
# combination of values makes sense is for `corral generate` to say.
{
  config,
  options,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    mkOption
    types
    literalExpression
    literalMD
    ;
  cfg = config.services.corral;
  settingsFormat = pkgs.formats.json { };
  entries = import ./model-options.nix {
    inherit lib;
    jsonValue = settingsFormat.type;
  };
  # Nothing is copied into the store: a path literal names a file on the machine.
  pathString = p: if p == null then null else toString p;
  accelerationOf = import ./acceleration.nix {
    inherit
      lib
      pkgs
      config
      options
      ;
  };
in
{
  options.services.corral = {
    enable = lib.mkEnableOption "corral, which serves local GGUF models on demand behind one OpenAI- and Ollama-compatible endpoint";

    package = lib.mkPackageOption pkgs "corral" {
      example = "inputs.corral.packages.\${pkgs.stdenv.hostPlatform.system}.default";
      extraDescription = "The flake's `nixosModules.default` sets this to its own `packages.default`.";
    };

    llamaCpp.package = lib.mkPackageOption pkgs "llama-cpp" {
      example = "pkgs.llama-cpp.override { cudaPackages = pkgs.cudaPackages_12; }";
      extraDescription = ''
        The default gets {option}`services.corral.acceleration` with `.override`. A package
        you set is used as given (`pkgs.llama-cpp-cuda`, `pkgs.llama-cpp.override { … }`,
        llama.cpp's own flake); its cmakeFlags say which GPU it is built for, and the unit
        opens that GPU's devices.
      '';
    };

    llamaCpp.finalPackage = mkOption {
      type = types.package;
      readOnly = true;
      default = import ./llama-cpp.nix {
        inherit lib;
        inherit (cfg) acceleration;
        package = cfg.llamaCpp.package;
        inherit (accelerationOf) packageGiven;
        # RPC only where it is used: a model's rpc workers, or this machine as a worker.
        rpc = cfg.rpcWorker.enable || lib.any (m: m.rpc != [ ]) (lib.attrValues cfg.models);
      };
      defaultText = literalExpression ''
        # a package you set: as it is (rpcSupport added where RPC is used and it lacks it)
        config.services.corral.llamaCpp.package.override {
          cudaSupport = config.services.corral.acceleration == "cuda";
          rocmSupport = config.services.corral.acceleration == "rocm";
          vulkanSupport = config.services.corral.acceleration == "vulkan";
          # only when services.corral.rpcWorker.enable or a model sets rpc:
          rpcSupport = true;
        }
      '';
      example = literalExpression "pkgs.llama-cpp.override { cudaSupport = true; }";
      description = ''
        The llama.cpp that corral runs (read-only): the default package with
        {option}`services.corral.acceleration` applied, so that the build and the unit's
        devices agree; a package you set, as it is.
      '';
    };

    acceleration = mkOption {
      # The one list of accelerators is the generator's (generator/accelerations.json).
      type = types.nullOr (types.enum (lib.importJSON ../generator/accelerations.json));
      default = null;
      # null is resolved here, once: the unit's devices and the llama.cpp build both read
      # the resolved value, so they cannot disagree.
      apply = accelerationOf.resolve;
      example = "cuda";
      description = ''
        Which GPU llama.cpp is built for, and which devices the unit may open.

        - `null`: the GPU that {option}`services.corral.llamaCpp.package` is built for,
          when you set one; else `"cuda"` with `nixpkgs.config.cudaSupport = true`,
          `"rocm"` with `nixpkgs.config.rocmSupport`, `"cuda"` where the NVIDIA driver is
          on (`hardware.nvidia.enabled`), else `"cpu"`;
        - `"cpu"`: no GPU support and no GPU devices;
        - `"cuda"`, `"rocm"`, `"vulkan"`: {option}`services.corral.llamaCpp.package` with
          `cudaSupport`, `rocmSupport` or `vulkanSupport` set (the same override one would
          write by hand), and only that GPU's device nodes in the unit.

        Reading the option gives the resolved value, never `null`.
      '';
    };

    host = mkOption {
      type = types.str;
      default = "127.0.0.1";
      example = "0.0.0.0";
      description = ''
        Address corral listens on. Anything but loopback should have
        {option}`services.corral.apiKeyFile` too (the module warns without it). A change
        restarts the service: a reload cannot move a listening socket.
      '';
    };

    port = mkOption {
      type = types.port;
      default = 11434;
      example = 8080;
      description = ''
        Port corral listens on; 11434 is Ollama's, so Ollama clients keep working. A change
        restarts the service.
      '';
    };

    ipAddressAllow = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      example = [
        "192.168.1.0/24"
        "2001:db8:1234::/64"
      ];
      description = ''
        With a {option}`services.corral.host` beyond loopback: the networks that may connect
        (the unit's `IPAddressAllow=`, besides localhost). `null`: the local networks, which
        are 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10 (CGNAT, as Tailscale
        uses), fc00::/7 (IPv6 unique-local) and link-local. Global IPv6 addresses are not
        among them: a LAN that gives its clients global IPv6 addresses needs its prefix here
        (with the IPv4 networks it still wants). `[ "any" ]` admits every address.
        A loopback host admits localhost only, whatever this says.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      example = true;
      description = "Whether to open {option}`services.corral.port` in the firewall.";
    };

    modelsPath = mkOption {
      type = types.nullOr (types.either types.path types.str);
      default = null;
      apply = pathString;
      example = "/var/lib/corral/models";
      description = ''
        Directory of GGUF files. Relative model paths resolve against it, and every `*.gguf`
        in it that no model names is served too, named after its file stem. The service may
        only read it.
      '';
    };

    ollamaModels = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = literalExpression "config.services.ollama.models";
      description = ''
        Ollama's models folder (its `OLLAMA_MODELS`). Every model in it is served in place,
        read-only, under the name `ollama list` shows; an entry of
        {option}`services.corral.models` with the same name wins, and one whose `path` is
        `"ollama:NAME"` sets more on the store's model. The unit gets `ReadOnlyPaths=` for it,
        and corral never pulls into it or deletes from it.

        services.ollama keeps its store readable only by its own user (`UMask=0077`) and, by
        default, in `/var/lib/private/ollama` (mode 0700, for its DynamicUser). corral does
        not loosen that: it runs as ollama's user, and the store moves out of the private
        folder. An assertion says exactly what to set: {option}`services.ollama.user`,
        {option}`services.ollama.models`, {option}`services.corral.user`.
      '';
    };

    defaultTTL = mkOption {
      type = types.nullOr types.ints.unsigned;
      default = null;
      example = 3600;
      description = "Seconds a model may stay idle before it is unloaded; `0` keeps models loaded. `null`: corral's default, 300.";
    };

    healthTimeout = mkOption {
      type = types.nullOr types.numbers.positive;
      default = null;
      example = 300;
      description = "Seconds a model may take to load before the request fails. `null`: corral's default, 120.";
    };

    devices = mkOption {
      type = types.attrsOf (
        types.submodule {
          options.memory = mkOption {
            type = types.nullOr (types.either types.ints.unsigned types.str);
            default = null;
            example = "24GiB";
            description = "Memory corral may fill with models on this device, before `memoryMargin`: bytes, or a size such as `24GiB`, `512MiB` or `24GB` (decimal). `null`: detected when corral starts.";
          };
        }
      );
      default = { };
      example = literalExpression ''{ gpu0.memory = "24GiB"; cpu.memory = "28GiB"; }'';
      description = ''
        Memory budget per device: `cpu`, `gpu0`, `gpu1`, … (the CUDA index). Models that fit
        side by side stay loaded together; one that doesn't evicts the least recently used
        idle models. A device not listed is detected when corral starts (free GPU memory
        through nvidia-ml-py when installed; MemAvailable for the CPU).
      '';
    };

    memoryMargin = mkOption {
      type = types.nullOr (types.either types.ints.unsigned types.str);
      default = null;
      example = "1GiB";
      description = "Memory kept free on every device, below its budget. `null`: corral's default, 512MiB.";
    };

    maxSwapWait = mkOption {
      type = types.nullOr types.numbers.nonnegative;
      default = null;
      example = 30;
      description = "Seconds a loaded model keeps serving its own waiting requests before a swap to a model that does not fit beside it; `0` swaps at once. `null`: corral's default, 10.";
    };

    models = mkOption {
      type = types.attrsOf (types.submodule entries.model);
      default = { };
      example = literalExpression ''
        {
          "qwen2.5-coder:3b" = {
            path = pkgs.fetchurl {
              url = "https://huggingface.co/Qwen/Qwen2.5-Coder-3B-Instruct-GGUF/resolve/main/qwen2.5-coder-3b-instruct-q8_0.gguf";
              hash = lib.fakeHash; # the first build fails and prints the real hash
            };
            contextSize = 32768;
          };
          "qwen2.5-coder:32b" = {
            path = "qwen2.5-coder-32b-instruct-q4_k_m.gguf"; # in modelsPath
            contextSize = 32768;
            gpuLayers = 35;
          };
        }
      '';
      description = "The models to serve, keyed by the name clients use (Ollama-style tags such as `qwen2.5-coder:3b` are fine).";
    };

    groups = mkOption {
      type = types.attrsOf (types.submodule entries.group);
      default = { };
      example = literalExpression ''
        { big = { members = [ "qwen2.5-coder:32b" "qwq:32b" ]; }; }
      '';
      description = "Named groups of models with llama-swap's swap, exclusive and persistent rules.";
    };

    lockFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = literalExpression "./corral.lock.json";
      description = ''
        The lock file that `corral lock --config FILE` writes: every model `source` resolved
        to exact URLs and sha256. Each model with a `source` and no `path` becomes
        `pkgs.fetchurl { url; hash; }` from it; a source missing from it fails evaluation.
      '';
    };

    apiKeyFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      apply = pathString;
      example = "/run/secrets/corral-api-keys";
      description = ''
        File with one accepted API key per line; `null` accepts every request. It must stay
        out of the store, which every user can read: give its path on the machine as a
        string (a path literal in a flake is copied into the store, and is refused). systemd
        hands it to the service as a credential (`LoadCredential`), so it may be readable by
        root only. systemd copies it when the service starts: a changed file takes effect on
        `systemctl restart corral`, not on a reload.
      '';
    };

    allowedOrigins = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      example = [
        "http://localhost:*"
        "https://chat.example.org"
      ];
      description = ''
        Browser origins (`scheme://host[:port]`, `*` for any part) whose pages may call corral;
        a request from any other `Origin` gets 403. `null`: corral's default, this machine's
        pages on any port (`localhost`, `127.0.0.1`, `[::1]`) and local apps (`app://`,
        `tauri://`, VS Code webviews). Setting it replaces that list.
      '';
    };

    metricsAllow = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      example = [ "10.0.0.5" ];
      description = ''
        Addresses or networks (CIDR) that may read `/metrics` without an API key: a
        Prometheus server on another host, when {option}`services.corral.apiKeyFile` is set.
        Everyone else needs a key there, as on every route (Prometheus can also send one:
        `authorization.credentials_file`). The scrape must reach corral: set
        {option}`services.corral.host` to an address it can reach, and open the port.
      '';
    };

    user = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "corral";
      description = ''
        User to run as. `null`: a [`DynamicUser`](https://www.freedesktop.org/software/systemd/man/latest/systemd.exec.html#DynamicUser=),
        whose state lives in /var/lib/private/corral. The user `corral` (with its group
        `corral`) is created by this module, as services.ollama creates its own; any other
        user must already exist, for example your own, to read models in your home.
      '';
    };

    group = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "corral";
      description = ''
        Primary group to run as, used only with {option}`services.corral.user`. `null`: the
        user's own primary group (for a normal user on NixOS that is `users`), and no
        `Group=` in the unit; for the user `corral`, the group `corral`. A group named
        `corral` is created.
      '';
    };

    extraGroups = mkOption {
      type = types.nullOr (types.listOf types.str);
      default = null;
      example = [
        "video"
        "render"
      ];
      description = ''
        Supplementary groups of the service, for the GPU device nodes that are not
        world-readable. `null`: the groups {option}`services.corral.acceleration` needs
        (`render` and `video` for ROCm and Vulkan, none for CUDA, whose nodes are 0666).
      '';
    };

    environment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = {
        CUDA_VISIBLE_DEVICES = "0";
      };
      description = "Environment variables of the service (and so of every llama-server it starts).";
    };

    settings = mkOption {
      type = types.submodule { freeformType = settingsFormat.type; };
      default = { };
      example = literalExpression ''
        { models."qwen2.5-coder:3b".concurrency = 4; service.execStart = "…"; }
      '';
      description = ''
        Keys that have no option here, in corral's camelCase settings (see `corral schema`),
        merged over the options (RFC 42). The generator checks them like any other key.
      '';
    };

    generatorInput = mkOption {
      type = types.attrsOf types.anything;
      readOnly = true;
      default = import ./generator-input.nix {
        inherit lib pkgs cfg;
        host = config.networking.hostName or "HOST";
      };
      defaultText = literalMD "the options above, camelCase, without unset (`null`) ones, with {option}`services.corral.settings` merged over them";
      example = {
        host = "127.0.0.1";
        port = 11434;
        models."qwen2.5-coder:3b" = {
          path = "qwen2.5-coder-3b-instruct-q8_0.gguf";
          contextSize = 32768;
        };
        service.name = "corral";
      };
      description = ''
        The exact attribute set handed to `corral generate --settings` as JSON (read-only).
        Inspect it with `nix eval .#nixosConfigurations.HOST.config.services.corral.generatorInput --json`.
      '';
    };

    generated = mkOption {
      type = types.package;
      readOnly = true;
      default = (import ./generate.nix { inherit pkgs lib cfg; }).generated;
      defaultText = literalMD "the output of `corral generate` on {option}`services.corral.generatorInput`";
      example = literalExpression ''"''${config.services.corral.generated}/config.yaml"'';
      description = ''
        The derivation that runs `corral generate` (read-only): `config.yaml` and, under
        `lib/systemd/system`, the hardened unit(s). A wrong setting fails its build with the
        generator's message.
      '';
    };
  };
}
