# `services.corral.llamaCpp.finalPackage`: the llama.cpp that corral runs.
#
# Owns what is done to the package: nixpkgs' default `pkgs.llama-cpp` gets the resolved
# acceleration's flags (the argument names of nixpkgs' pkgs/by-name/ll/llama-cpp/package.nix),
# so the build and the unit (whose devices follow the same acceleration) agree. A package
# the user set is used as given: acceleration.nix reads its backend instead. The one thing
# added to either is RPC, where a model or the worker uses it and the package lacks it.
{
  lib,
  package,
  # "cpu", "cuda", "rocm" or "vulkan", already resolved from null (acceleration.nix).
  acceleration,
  # Whether services.corral.llamaCpp.package was set (not nixpkgs' default).
  packageGiven,
  # llama.cpp's RPC backend (rpc-server, llama-server --rpc): asked for only when used, so a
  # package without that argument still works for everyone else.
  rpc ? false,
}:
let
  takes = if package ? override then lib.functionArgs package.override else { };
  name = package.name or "the package";
  takesText =
    if takes == { } then
      "it has no override taking named arguments"
    else
      "its override takes ${lib.concatMapStringsSep ", " (a: "`${a}`") (lib.attrNames takes)}";
  hasRpc = builtins.elem "-DGGML_RPC:BOOL=TRUE" (package.cmakeFlags or [ ]);

  flags = {
    cudaSupport = acceleration == "cuda";
    rocmSupport = acceleration == "rocm";
    vulkanSupport = acceleration == "vulkan";
  }
  // lib.optionalAttrs rpc { rpcSupport = true; };
  missing = lib.filter (flag: !(takes ? ${flag})) (lib.attrNames flags);

  # RPC for a given package: its own argument, or, for nixpkgs' variants (whose override
  # takes only `llama-cpp`), the llama-cpp inside.
  withRpc =
    if !rpc || hasRpc then
      package
    else if takes ? rpcSupport then
      package.override { rpcSupport = true; }
    else if takes ? llama-cpp then
      package.override (old: {
        llama-cpp = old.llama-cpp.override { rpcSupport = true; };
      })
    else
      package;
in
if packageGiven then
  withRpc
else if missing == [ ] then
  package.override flags
else
  throw ''
    services.corral.llamaCpp.package: the default, ${name}, cannot be built for acceleration "${acceleration}": ${takesText}, not ${lib.concatMapStringsSep ", " (a: "`${a}`") missing} as nixpkgs' llama-cpp does.
    Set services.corral.llamaCpp.package to a llama.cpp built for it, which is used as given: pkgs.llama-cpp-cuda, pkgs.llama-cpp-rocm, pkgs.llama-cpp-vulkan, or llama.cpp's own flake:
      services.corral.llamaCpp.package = llama-cpp.packages.''${pkgs.stdenv.hostPlatform.system}.cuda;''
