# Evaluates flake.nix's outputs for x86_64-linux against a stand-in nixpkgs: the stub pkgs
# grown by the few functions the flake calls, and a `lib.nixosSystem` made of the same
# stand-in NixOS options as eval.nix. nixpkgs cannot be fetched where tests/nix runs, so
# this is how a typo in the flake, the VM test's machine or the module-eval check shows.
#
# Owns that wiring only. It proves the outputs evaluate and hang together; building them
# (the Python package's tests, the VM) needs nixpkgs: `nix flake check`.
{
  lib ? import (builtins.getEnv "NIXPKGS_LIB"),
  corralBin ? "/bin/false",
  llamaServerBin ? null,
}:
let
  system = "x86_64-linux";
  stub = import ./stub-pkgs.nix { inherit lib corralBin llamaServerBin; };
  fake = name: stub.stubPackage name "mkdir -p $out/bin";

  # Python packages: any attribute is a fake package, except the functions the flake calls.
  python3Packages =
    lib.genAttrs [
      "setuptools"
      "wheel"
      "pydantic"
      "jinja2"
      "pyyaml"
      "click"
      "httpx"
      "psutil"
      "starlette"
      "uvicorn"
      "aiohttp"
      "pytestCheckHook"
      "pytest"
      "pytest-asyncio"
      "mypy"
      "types-pyyaml"
      "types-psutil"
      "openai"
      "ollama"
    ] fake
    // {
      fetchPypi = args: fake "${args.pname}-${args.version}-${args.python}-none-any.whl";
      # The stub corral (which runs corralBin), carrying the recipe for the tests to read.
      buildPythonApplication = attrs: stub.corral // attrs;
    };

  pkgs =
    stub
    // lib.genAttrs [ "unzip" "ruff" "nixfmt" "curl" "procps" ] fake
    // {
      inherit python3Packages;
      stdenv.hostPlatform = {
        inherit system;
        isLinux = true;
      };
      callPackage = lib.callPackageWith pkgs;
      python3.withPackages = select: fake "python3-env" // { packages = select python3Packages; };
      # An executable $out/bin/NAME, as the real one makes (without its shellcheck).
      writeShellApplication =
        {
          name,
          runtimeInputs,
          text,
        }:
        stub.runCommand name
          {
            script = ''
              #!/bin/sh
              set -eu
              export PATH="${lib.makeBinPath runtimeInputs}:$PATH"
              ${text}
            '';
            passAsFile = [ "script" ];
            meta.mainProgram = name;
          }
          ''
            mkdir -p "$out/bin"
            cp "$scriptPath" "$out/bin/${name}"
            chmod +x "$out/bin/${name}"
          ''
        // {
          inherit text;
        };
      mkShell = attrs: fake "shell" // { inherit (attrs) packages NIXPKGS_LIB; };
      testers.runNixOSTest =
        test:
        let
          machine = nixosSystem { modules = [ test.nodes.machine ]; };
        in
        fake "vm-test-${test.name}"
        // {
          inherit (test) testScript;
          corral = machine.config.services.corral.generatorInput;
        };
    };

  # NixOS options that the VM test and the module-eval check set, beyond the module's own.
  machineStandIns =
    { config, ... }:
    {
      options = {
        virtualisation.memorySize = lib.mkOption { type = lib.types.int; };
        virtualisation.cores = lib.mkOption { type = lib.types.int; };
        nixpkgs.hostPlatform = lib.mkOption { type = lib.types.str; };
        system.stateVersion = lib.mkOption { type = lib.types.str; };
        systemd.units = lib.mkOption {
          type = lib.types.attrsOf (lib.types.submodule { options.text = lib.mkOption { }; });
        };
      };
      # A sketch of what NixOS renders from a service: only the line the check reads.
      config.systemd.units = lib.mapAttrs' (
        name: service:
        lib.nameValuePair "${name}.service" {
          text = "[Unit]\nX-Reload-Triggers=${toString service.reloadTriggers}\n";
        }
      ) config.systemd.services;
    };

  nixosSystem =
    { modules }:
    lib.evalModules {
      modules = modules ++ [
        ./stand-ins.nix
        machineStandIns
        { _module.args.pkgs = pkgs; }
      ];
    };

  nixpkgs = {
    outPath = "/nix/store/00000000000000000000000000000000-nixpkgs";
    lib = lib // {
      inherit nixosSystem;
    };
    legacyPackages.${system} = pkgs;
  };
  systems.outPath = ./systems.nix;

  flake = import ../../flake.nix;
  outputs = flake.outputs {
    self = outputs;
    inherit nixpkgs systems;
  };
  src = outputs.packages.${system}.default.src;
in
{
  inherit outputs flake;
  # Whether the package's source filter keeps each of these (relative) paths.
  sourceKeeps = lib.genAttrs [
    "pyproject.toml"
    "README.md"
    "generator/cli.py"
    "generator/templates/corral.service.j2"
    "supervisor/cli.py"
    "tests/nix/conftest.py"
    "flake.nix"
    "nixos-module/default.nix"
    ".venv/bin/python"
    "models/gemma-3-270m-q4_k_m.gguf"
  ] (relative: src.filter "${toString src.origSrc}/${relative}" "regular");
  names = lib.mapAttrs (
    _: value: if lib.isAttrs value && !lib.isDerivation value then lib.attrNames value else null
  ) outputs;
}
