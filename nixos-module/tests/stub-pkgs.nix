# A stand-in for the few parts of nixpkgs that the module uses, for evaluating it with
# nixpkgs' lib alone (nixpkgs itself cannot be fetched where these tests run).
#
# Owns fakes that behave like the real ones where the module depends on it: derivations
# are real `builtins.derivation`s (so string context, `lib.getExe` and, with `nix-build`,
# building work); `config` is nixpkgs' config (cudaSupport, rocmSupport); llama-cpp takes
# exactly the arguments of nixpkgs' pkgs/by-name/ll/llama-cpp/package.nix, with the same
# defaults for the GPU flags, and records them; `corral` runs the corral named by
# `corralBin`. Nothing here is fetched or built until something asks.
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

  pkgsConfig = {
    cudaSupport = false;
    rocmSupport = false;
  }
  // config;

  # The arguments of nixpkgs' package.nix (nixos-26.05), in its order. The build inputs'
  # defaults stand in for what callPackage would pass; an argument outside this list fails
  # the way it does against nixpkgs: "called with unexpected argument".
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
    in
    fakePackage (lib'.concatStringsSep "-" ([ "llama-cpp" ] ++ flags)) (
      "mkdir -p $out/bin\n"
      + lib'.optionalString (llamaServerBin != null) (wrapper "$out/bin/llama-server" llamaServerBin)
    )
    // {
      inherit cudaSupport rocmSupport vulkanSupport;
    }
  ) { };
  # package.nix's own argument `lib` shadows nixpkgs' lib inside the function above.
  lib' = lib;

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

  # Never built here (no network): it keeps what it was asked for, for the tests to read.
  fetchurl =
    {
      url,
      hash,
      name ? baseNameOf url,
    }:
    shellDerivation name "exit 1" { inherit url hash; };

  corral = fakePackage "corral" ("mkdir -p $out/bin\n" + wrapper "$out/bin/corral" corralBin);

  coreutils = fakePackage "coreutils" "mkdir -p $out/bin";
}
