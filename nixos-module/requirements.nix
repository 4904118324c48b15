# pyproject.toml's requirements as python3Packages attributes. The flake's `dependencies`,
# `nativeCheckInputs` and dev shell are all made here from pyproject.toml, so the Nix build
# cannot drift from what pip installs (a dependency left out fails nixpkgs'
# pythonRuntimeDepsCheck, a test dependency left out fails the package's tests).
#
# Owns reading a PEP 508 requirement down to its name, and the name's python3Packages
# attribute. It does not check versions: nixpkgs' pythonRuntimeDepsCheck does, at build time.
{ lib }:
rec {
  # PyPI names whose python3Packages attribute is not the normalized name itself.
  renamed = { };

  # PyPI names that nixpkgs has only as a top-level application, not in python3Packages
  # (pkgs/by-name/im/import-linter/package.nix): the dev shell takes them from pkgs.
  applications = [ "import-linter" ];
  isApplication = requirement: builtins.elem (attribute requirement) applications;

  # "uvicorn[standard]>=0.29; python_version < '3.13'" -> "uvicorn"
  name =
    requirement:
    let
      found = builtins.match "[[:space:]]*([A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?).*" requirement;
    in
    if found == null then
      throw "pyproject.toml: cannot read a package name from the requirement ${builtins.toJSON requirement}"
    else
      builtins.head found;

  # PEP 503: lower case, and every run of `-`, `_` and `.` is one `-` ("PyYAML" -> "pyyaml",
  # "zope.interface" -> "zope-interface"). nixpkgs names Python packages the same way.
  normalize =
    text:
    lib.toLower (lib.concatStringsSep "-" (lib.filter builtins.isString (builtins.split "[-_.]+" text)));

  attribute =
    requirement:
    let
      normalized = normalize (name requirement);
    in
    renamed.${normalized} or normalized;

  # The packages of `pythonPackages` that `requirements` (strings) name, in their order.
  packages =
    pythonPackages: requirements:
    map (
      requirement:
      let
        attr = attribute requirement;
      in
      pythonPackages.${attr}
        or (throw "pyproject.toml requires ${builtins.toJSON requirement}, but python3Packages has no attribute ${attr}; map it in nixos-module/requirements.nix (renamed)")
    ) requirements;

  # What the package's check phase needs from [project.optional-dependencies] dev: all of it
  # but the linters and type stubs (pytest itself comes with pytestCheckHook).
  checkOnly =
    requirements:
    lib.filter (
      requirement:
      !(builtins.elem (attribute requirement) [
        "pytest"
        "ruff"
        "mypy"
        "import-linter"
      ])
      && !(lib.hasPrefix "types-" (attribute requirement))
    ) requirements;
}
