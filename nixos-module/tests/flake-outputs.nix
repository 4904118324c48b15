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
  # A directory with a user's flake.nix and configuration.nix (the README's): the flake's
  # nixosConfigurations.workstation, evaluated against this flake's outputs.
  userFlake ? null,
}:
let
  system = "x86_64-linux";
  stub = import ./stub-pkgs.nix { inherit lib corralBin llamaServerBin; };
  fake = name: stub.stubPackage name "mkdir -p $out/bin";

  pyproject = lib.importTOML ../../pyproject.toml;
  requirements = import ../requirements.nix { inherit lib; };

  # What nixpkgs' python3Packages propagates, where the check below depends on it: uvicorn
  # carries click and h11, and httptools only in its `standard` extra (not propagated).
  propagates = {
    uvicorn = [
      "click"
      "h11"
    ];
    httpx = [
      "anyio"
      "certifi"
      "httpcore"
      "idna"
    ];
    starlette = [ "anyio" ];
    pydantic = [
      "annotated-types"
      "pydantic-core"
      "typing-extensions"
    ];
  };
  fakePython =
    name:
    fake name
    // {
      pname = name;
      propagatedNames = [ name ] ++ propagates.${name} or [ ];
    };

  # Python packages: the attributes nixpkgs has that the flake may ask for (a name outside
  # this list is missing, as it would be in nixpkgs), and the functions the flake calls.
  python3Packages =
    lib.genAttrs [
      "setuptools"
      "wheel"
      "pydantic"
      "jinja2"
      "pyyaml"
      "click"
      "httpx"
      "httptools"
      "uvloop"
      "psutil"
      "starlette"
      "uvicorn"
      "aiohttp"
      "gguf"
      "pytestCheckHook"
      "pytest"
      "pytest-asyncio"
      "ruff"
      "mypy"
      "types-pyyaml"
      "types-psutil"
      "jsonschema"
      "hypothesis"
      "openai"
      "ollama"
      "prometheus-client"
      "playwright"
      "nvidia-ml-py"
    ] fakePython
    // {
      fetchPypi = args: fake "${args.pname}-${args.version}-${args.python}-none-any.whl";
      # The stub corral (which runs corralBin), carrying the recipe for the tests to read.
      # Like nixpkgs' pythonRuntimeDepsCheck, every requirement of pyproject.toml must be
      # installed by `dependencies` (or what they propagate); otherwise the build fails.
      buildPythonApplication =
        attrs:
        let
          installed = lib.concatMap (p: p.propagatedNames) attrs.dependencies;
          missing = lib.filter (
            r: !(builtins.elem (requirements.normalize (requirements.name r)) installed)
          ) pyproject.project.dependencies;
          failed = stub.runCommand "${attrs.pname}-${attrs.version}" { } ''
            echo "Checking runtime dependencies for ${attrs.pname}-${attrs.version}-py3-none-any.whl" >&2
            ${lib.concatMapStrings (r: "echo '  - ${r} not installed' >&2
") missing}
            exit 1
          '';
        in
        (if missing == [ ] then stub.corral else failed)
        // attrs
        // {
          pythonRuntimeDepsCheck = {
            inherit missing;
          };
        };
    };

  pkgs =
    stub
    // lib.genAttrs [ "unzip" "ruff" "nixfmt" "curl" "procps" "import-linter" ] fake
    // {
      inherit python3Packages;
      stdenv.hostPlatform = {
        inherit system;
        isLinux = true;
      };
      callPackage = lib.callPackageWith pkgs;
      # pkgs/development/interpreters/python/with-packages.nix: the environment is built
      # from the packages, so evaluating it evaluates each of them.
      python3.withPackages =
        select:
        let
          packages = select python3Packages;
        in
        stub.runCommand "python3-env" { nativeBuildInputs = packages; } "mkdir -p $out/bin"
        // {
          inherit packages;
        };
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
          inherit text runtimeInputs;
        };
      # pkgs/build-support/mkshell/default.nix: a derivation with the packages as inputs, so
      # `nix flake check` (which evaluates its drvPath) evaluates every one of them.
      mkShell =
        attrs:
        stub.runCommand "shell" { nativeBuildInputs = attrs.packages; } "touch $out"
        // {
          inherit (attrs) packages NIXPKGS_LIB;
        };
      testers.runNixOSTest =
        test:
        let
          machine = nixosSystem { modules = [ test.nodes.machine ]; };
        in
        fake "vm-test-${test.name}"
        // {
          inherit (test) testScript;
          corral = machine.config.services.corral.generatorInput;
          # Each specialisation as NixOS builds it: the machine plus its configuration.
          specialisations = lib.mapAttrs (
            _: special:
            (nixosSystem {
              modules = [
                test.nodes.machine
                special.configuration
              ];
            }).config.services.corral.generatorInput
          ) machine.config.specialisation;
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
        specialisation = lib.mkOption {
          default = { };
          type = lib.types.attrsOf (
            lib.types.submodule { options.configuration = lib.mkOption { type = lib.types.deferredModule; }; }
          );
        };
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
        # nixos/modules/misc/nixpkgs.nix: pkgs is nixpkgs with the machine's nixpkgs.config.
        (
          { config, ... }:
          {
            _module.args.pkgs =
              pkgs
              // import ./stub-pkgs.nix {
                inherit lib corralBin llamaServerBin;
                config = config.nixpkgs.config;
              };
          }
        )
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
  # The module imported twice (directly and through another module), as NixOS allows for
  # one module: its key makes it one.
  importedTwice =
    (nixosSystem {
      modules = [
        outputs.nixosModules.default
        { imports = [ outputs.nixosModules.default ]; }
        {
          services.corral.enable = true;
          services.corral.models.m.path = "m.gguf";
        }
      ];
    }).config.services.corral.generatorInput.models;
  # The dev shell's packages by name, and the Python environment's.
  devShell =
    let
      shell = outputs.devShells.${system}.default;
    in
    {
      inherit (shell) drvPath;
      packages = map (p: p.name) shell.packages;
      python = map (p: p.pname) (builtins.head shell.packages).packages;
    };
  # The corral that the demo app runs, and whether its build runs the tests.
  demoCorral = map (p: {
    inherit (p) pname;
    doCheck = p.doCheck or null;
  }) outputs.packages.${system}.demo.runtimeInputs;
  defaultDoCheck = outputs.packages.${system}.default.doCheck or null;
  # The user's machine, from their flake as written: what they see of it.
  userMachine =
    let
      user = import (userFlake + "/flake.nix");
      machine =
        (user.outputs {
          self = null;
          inherit nixpkgs;
          corral = outputs;
        }).nixosConfigurations.workstation;
      inherit (machine) config;
    in
    {
      inherit (config) warnings;
      failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
      inherit (config.services.corral) acceleration lockInput;
      graphics = config.hardware.graphics.enable;
      llamaServer = config.services.corral.generatorInput.llamaServer;
    };
  # pkgs with the overlay applied: pkgs.corral.
  overlaid = (pkgs // outputs.overlays.default pkgs pkgs).corral;
  # Whether the package's source filter keeps each of these (relative) paths.
  sourceKeeps = lib.genAttrs [
    "pyproject.toml"
    "README.md"
    "examples/seed.yaml"
    "generator/accelerations.json"
    "generator/cli.py"
    "generator/templates/corral.service.j2"
    "supervisor/cli.py"
    "tests/nix/conftest.py"
    "flake.nix"
    "nixos-module/default.nix"
    ".venv/bin/python"
    "models/gemma-3-270m-q4_k_m.gguf"
  ] (relative: src.filter "${toString src.origSrc}/${relative}" "regular");
  # Which of `files` (paths relative to the checkout) the source filter keeps: the file and
  # every folder above it, as cleanSourceWith asks (tests/nix/test_package_build.py).
  kept =
    files:
    lib.filter (
      relative:
      let
        parts = lib.splitString "/" relative;
        folders = builtins.genList (
          i: lib.concatStringsSep "/" (lib.take (i + 1) parts)
        ) (builtins.length parts - 1);
        keeps = path: type: src.filter "${toString src.origSrc}/${path}" type;
      in
      lib.all (folder: keeps folder "directory") folders && keeps relative "regular"
    ) files;
  # The package's recipe as plain data: attribute names, which are PyPI's normalized names.
  recipe =
    let
      package = outputs.packages.${system}.default;
      names = map (p: p.pname);
    in
    {
      buildSystem = names package.build-system;
      dependencies = names package.dependencies;
      nativeCheckInputs = names package.nativeCheckInputs;
      inherit (package) enabledTestPaths disabledTestMarks;
    };
  names = lib.mapAttrs (
    _: value: if lib.isAttrs value && !lib.isDerivation value then lib.attrNames value else null
  ) outputs;
}
