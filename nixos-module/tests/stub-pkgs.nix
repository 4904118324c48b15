# A stand-in for the few parts of nixpkgs that the module uses, for evaluating it with
# nixpkgs' lib alone (nixpkgs itself cannot be fetched where these tests run).
#
# Owns fakes that behave like the real ones where the module depends on it: derivations
# are real `builtins.derivation`s (so string context, `lib.getExe` and, with `nix-build`,
# building work); `config` is nixpkgs' config (cudaSupport, rocmSupport, allowUnfree);
# llama-cpp takes exactly the arguments of nixpkgs' pkgs/by-name/ll/llama-cpp/package.nix,
# with the same defaults for the GPU flags, the same cmakeFlags and the same bin/ names;
# the variants are pkgs/by-name/ll/llama-cpp-{cuda,rocm,vulkan}/package.nix; fetchurl is a
# fixed-output derivation as pkgs/build-support/fetchurl/default.nix makes, so Nix refuses
# a malformed hash; `corral` runs the corral named by `corralBin`. Nothing here is fetched
# or built until something asks.
{
  lib,
  # nixpkgs' `config` (`nixpkgs.config` on NixOS): only the keys the tests set.
  config ? { },
  # The real corral (for example the dev venv's); builds that run it need `sandbox = false`.
  corralBin ? "/bin/false",
  # A real llama-server for llama-cpp's bin/ (the flake's app test runs it); null: none.
  llamaServerBin ? null,
}:
let
  system = builtins.currentSystem;
  # /bin/sh and /usr/bin stand in for stdenv: these fakes are built only on a dev machine.
  basePath = "/usr/bin:/bin";

  shellDerivation =
    name: script: env:
    derivation (
      {
        inherit name system;
        builder = "/bin/sh";
        # stdenv's builders stop at the first failing command; so do these.
        args = [
          "-c"
          ("set -eu\n" + script)
        ];
        PATH = basePath;
      }
      // env
    );

  # A shell script at `path` that runs `program` with its arguments.
  wrapper = path: program: ''
    printf '#!/bin/sh\nexec %s "$@"\n' ${lib.escapeShellArg program} > "${path}"
    chmod +x "${path}"
  '';

  fakePackage =
    pname: script:
    shellDerivation pname script { }
    // {
      inherit pname;
      meta.mainProgram = pname;
    };

  # pkgs/top-level/config.nix: these default to false.
  pkgsConfig = {
    cudaSupport = false;
    rocmSupport = false;
    allowUnfree = false;
  }
  // config;

  # pkgs/stdenv/generic/check-meta.nix: a CUDA build pulls in cuda_cudart (unfree), and
  # nixpkgs refuses to evaluate the derivation (its outPath, drvPath) without allowUnfree;
  # its other attributes (cmakeFlags) still evaluate.
  unfree = throw ''
    Package ‘cuda_cudart’ in pkgs/development/cuda-modules has an unfree license (‘CUDA EULA’), refusing to evaluate.

    a) To temporarily allow unfree packages, you can use an environment variable
       for a single invocation of the nix tools: export NIXPKGS_ALLOW_UNFREE=1
    b) For `nixos-rebuild` you can set
      { nixpkgs.config.allowUnfree = true; }
    in configuration.nix to override this.'';

  # The arguments of nixpkgs' pkgs/by-name/ll/llama-cpp/package.nix (nixos-26.05), in its
  # order. The build inputs' defaults stand in for what callPackage would pass; an argument
  # outside this list fails the way it does against nixpkgs: "called with unexpected
  # argument".
  llamaCpp = lib.makeOverridable (
    {
      lib ? null,
      autoAddDriverRunpath ? null,
      cmake ? null,
      fetchFromGitHub ? null,
      nix-update-script ? null,
      stdenv ? null,
      config ? pkgsConfig,
      cudaSupport ? config.cudaSupport,
      cudaPackages ? { },
      rocmSupport ? config.rocmSupport,
      rocmPackages ? { },
      openclSupport ? false,
      clblast ? null,
      blasSupport ? !(cudaSupport || metalSupport || openclSupport || rocmSupport || vulkanSupport),
      blas ? null,
      pkg-config ? null,
      metalSupport ? false,
      vulkanSupport ? false,
      rpcSupport ? false,
      curl ? null,
      shaderc ? null,
      vulkan-headers ? null,
      vulkan-loader ? null,
      ninja ? null,
      git ? null,
    }:
    let
      flags = lib'.filter (f: f != "") [
        (lib'.optionalString cudaSupport "cuda")
        (lib'.optionalString rocmSupport "rocm")
        (lib'.optionalString vulkanSupport "vulkan")
      ];
      built =
        fakePackage (lib'.concatStringsSep "-" ([ "llama-cpp" ] ++ flags)) (
          "mkdir -p $out/bin\n"
          + lib'.optionalString (llamaServerBin != null) (wrapper "$out/bin/llama-server" llamaServerBin)
          # package.nix's postInstall: `cp bin/rpc-server $out/bin/llama-rpc-server`.
          + lib'.optionalString rpcSupport (wrapper "$out/bin/llama-rpc-server" "/bin/false")
        )
        // {
          # package.nix's cmakeFlags, as lib.cmakeBool writes them.
          cmakeFlags = [
            (lib'.cmakeBool "GGML_NATIVE" false)
            (lib'.cmakeBool "LLAMA_BUILD_SERVER" true)
            (lib'.cmakeBool "GGML_BLAS" blasSupport)
            (lib'.cmakeBool "GGML_CUDA" cudaSupport)
            (lib'.cmakeBool "GGML_HIP" rocmSupport)
            (lib'.cmakeBool "GGML_METAL" metalSupport)
            (lib'.cmakeBool "GGML_RPC" rpcSupport)
            (lib'.cmakeBool "GGML_VULKAN" vulkanSupport)
          ];
        };
    in
    if cudaSupport && !pkgsConfig.allowUnfree then
      # Its `out` too: lib.getExe' reads the path through it.
      lib'.fix (
        self:
        built
        // {
          outPath = unfree;
          drvPath = unfree;
          out = self;
        }
      )
    else
      built
  ) { };
  # package.nix's own argument `lib` shadows nixpkgs' lib inside the function above.
  lib' = lib;

  # pkgs/by-name/ll/llama-cpp-{cuda,rocm,vulkan}/package.nix: `{ llama-cpp }:
  # llama-cpp.override { cudaSupport = true; }`, called by callPackage, so their own
  # `override` takes `llama-cpp` and nothing else.
  variant = flag: lib.makeOverridable ({ llama-cpp }: llama-cpp.override { ${flag} = true; }) {
    llama-cpp = llamaCpp;
  };

  jsonValue =
    let
      valueType =
        lib.types.nullOr (
          lib.types.oneOf [
            lib.types.bool
            lib.types.int
            lib.types.float
            lib.types.str
            lib.types.path
            (lib.types.attrsOf valueType)
            (lib.types.listOf valueType)
          ]
        )
        // {
          description = "JSON value";
        };
    in
    valueType;

  writeText =
    name: text:
    shellDerivation name ''printf '%s' "$text" > "$out"'' {
      inherit text;
    };
in
{
  inherit writeText;
  config = pkgsConfig;
  # For harnesses that need more fakes of the same kind (flake-outputs.nix).
  stubPackage = fakePackage;

  # Like stdenv, meta and passthru stay on the result and out of the build's environment.
  runCommand =
    name: env: script:
    shellDerivation name script (
      removeAttrs env [
        "nativeBuildInputs"
        "meta"
        "passthru"
      ]
      // {
        PATH = lib.makeBinPath (env.nativeBuildInputs or [ ]) + ":" + basePath;
      }
    )
    // {
      meta = env.meta or { };
    }
    // env.passthru or { };

  formats.json =
    _:
    {
      type = jsonValue;
      generate = name: value: writeText name (builtins.toJSON value);
    };

  llama-cpp = llamaCpp;
  llama-cpp-cuda = variant "cudaSupport";
  llama-cpp-rocm = variant "rocmSupport";
  llama-cpp-vulkan = variant "vulkanSupport";

  # Never built here (no network): it keeps what it was asked for, for the tests to read.
  # A fixed-output derivation, as pkgs/build-support/fetchurl/default.nix makes (`hash` is
  # its outputHash), so Nix itself refuses a malformed hash when the path is needed.
  fetchurl =
    {
      url,
      hash,
      name ? baseNameOf url,
    }:
    shellDerivation name "exit 1" {
      inherit url hash;
      outputHash = hash;
      outputHashMode = "flat";
    };

  corral = fakePackage "corral" ("mkdir -p $out/bin\n" + wrapper "$out/bin/corral" corralBin);

  coreutils = fakePackage "coreutils" "mkdir -p $out/bin";
}
