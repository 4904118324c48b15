# The typed options of one model and of one group: the entries of `services.corral.models`
# and `services.corral.groups`.
#
# Owns their names, types, defaults and documentation. It does not check what the
# generator checks (ranges, alias clashes, group membership): `corral generate` does that
# at build time, with messages that name the key. Unset options are null and are left out
# of `generatorInput`, so the generator's own defaults apply.
{ lib, jsonValue }:
let
  inherit (lib) mkOption types literalExpression;

  # -ngl: a count of layers, or -1 for all of them (the generator's ge=-1).
  layers = types.addCheck types.int (n: n >= -1) // {
    description = "integer at least -1 (-1: every layer)";
  };

  nullOr = type: example: description: mkOption {
    type = types.nullOr type;
    default = null;
    inherit example description;
  };
in
{
  model =
    { name, ... }:
    {
      options = {
        path = mkOption {
          type = types.nullOr (types.either types.path types.str);
          default = null;
          # A path literal stays where it is (toString does not copy it into the store: a
          # 20 GB GGUF must not be); a derivation keeps its context, so it gets built.
          apply = p: if p == null then null else toString p;
          example = literalExpression ''
            pkgs.fetchurl {
              url = "https://huggingface.co/Qwen/Qwen2.5-Coder-3B-Instruct-GGUF/resolve/main/qwen2.5-coder-3b-instruct-q8_0.gguf";
              hash = lib.fakeHash; # the first build fails and prints the real hash
            }
          '';
          description = ''
            The GGUF file of model `${name}`. One of:

            - a derivation, such as `pkgs.fetchurl { url = …; hash = …; }`: the declarative
              download that `ollama pull` used to be. Nix fetches it once, checks its hash and
              keeps it in the store; the service reads it from there;
            - an absolute path (a path literal is used in place, not copied into the store);
            - a string relative to {option}`services.corral.modelsPath`.

            `null` is allowed only when `services.corral.settings.models."${name}".cmd` runs
            something other than llama-server.
          '';
        };

        source = nullOr types.str "ollama:qwen2.5-coder:7b" ''
          Where the GGUF of model `${name}` comes from: `ollama:NAME:TAG` (Ollama's library),
          `hf:owner/repo:QUANT` or `hf:owner/repo/file.gguf`. With no {option}`path`, the
          file is `pkgs.fetchurl` of the entry in {option}`services.corral.lockFile`, which
          `corral lock` writes; the library's parameters and system prompt become defaults.
        '';

        contextSize = nullOr types.ints.positive 32768 ''
          Context window in tokens (llama-server's `-c`). `null`: corral's default, 4096.
        '';

        gpuLayers = nullOr layers 35 ''
          Layers offloaded to the GPU (`-ngl`); `-1` offloads all of them. `null`: llama-server
          decides.
        '';

        ttl = nullOr types.ints.unsigned 3600 ''
          Seconds this model may stay idle before it is unloaded; `0` keeps it loaded.
          `null`: {option}`services.corral.defaultTTL`.
        '';

        aliases = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [ "coder" ];
          description = "Other names that clients may use for model `${name}`.";
        };

        rpc = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [ "192.168.1.20:50052" ];
          description = ''
            llama.cpp RPC workers (`host:port`, each running `rpc-server`, e.g. another
            machine's {option}`services.corral.rpcWorker`) that hold part of model
            `${name}`'s layers: llama-server gets `--rpc`. The unit may then reach those
            addresses. rpc-server has no authentication: keep them on a trusted network.
          '';
        };

        extraArgs = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [
            "--flash-attn"
            "on"
            "--cache-type-k"
            "q8_0"
          ];
          description = ''
            Extra llama-server arguments, one list item each (never a shell string). corral
            sets `--host` and `--port` itself.
          '';
        };

        env = mkOption {
          type = types.attrsOf types.str;
          default = { };
          example = {
            CUDA_VISIBLE_DEVICES = "0";
          };
          description = "Environment variables for this model's llama-server only.";
        };

        chatTemplate = nullOr types.str "gemma" ''
          A llama.cpp built-in chat template name (`gemma`, `chatml`, `llama3`, …) or a
          template file. Set it when the GGUF carries no template or the wrong one: a wrong
          template is what makes a good model answer badly. `null`: the GGUF's own.
        '';

        parameters = mkOption {
          type = types.attrsOf jsonValue;
          default = { };
          example = {
            temperature = 0.7;
            top_p = 0.9;
          };
          description = "Request defaults, used when a client does not set them.";
        };

        systemPrompt = nullOr types.str "You are a concise coding assistant." ''
          System message prepended to requests that have none.
        '';

        from = nullOr types.str "qwen2.5-coder:32b" ''
          Make model `${name}` a preset of another entry, like a Modelfile's `FROM`: it reuses
          that entry's GGUF file and server settings and overrides only what it sets itself
          (`parameters` are merged key by key). Presets that differ only in `parameters`,
          `systemPrompt` or `ttl` share one running llama-server, so switching between them
          costs no reload.
        '';

        group = nullOr types.str "big" ''
          The name of the entry of {option}`services.corral.groups` this model belongs to.
        '';

        memory = nullOr (types.either types.ints.unsigned types.str) "6GiB" ''
          Memory model `${name}` takes when loaded (bytes, or a size such as `6GiB`),
          overriding the figure corral measured at its last load or estimated from its GGUF
          header. `null`: measured, else estimated.
        '';

        preload = mkOption {
          type = types.bool;
          default = false;
          example = true;
          description = "Whether to load model `${name}` as soon as corral starts.";
        };

        unlisted = mkOption {
          type = types.bool;
          default = false;
          example = true;
          description = "Whether to hide model `${name}` from model lists (it stays servable).";
        };

        sendLoadingState = mkOption {
          type = types.nullOr types.bool;
          default = null;
          example = true;
          description = ''
            Whether a streaming chat request that has to wait for model `${name}` to load gets
            the load's progress first: as `reasoning_content` in OpenAI chunks (llama-swap's
            `sendLoadingState`), as `thinking` in Ollama's lines. Chat UIs show it as the
            model's reasoning. `null`: corral's default, off (a preset: its base model's).
          '';
        };
      };
    };

  group =
    { name, ... }:
    {
      options = {
        members = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [
            "qwen2.5-coder:32b"
            "qwq:32b"
          ];
          description = "Names of the models in group `${name}`.";
        };
        swap = mkOption {
          type = types.bool;
          default = true;
          example = false;
          description = "Whether at most one member of group `${name}` runs at a time.";
        };
        exclusive = mkOption {
          type = types.bool;
          default = true;
          example = false;
          description = "Whether loading a member unloads every model outside the group.";
        };
        persistent = mkOption {
          type = types.bool;
          default = false;
          example = true;
          description = "Whether another group's exclusive load leaves these members running.";
        };
      };
    };
}
