# `services.corral.llamaCpp.finalPackage`: llama.cpp built for the resolved acceleration.
#
# Owns the override and its failure message. The override is applied always, never only for
# a GPU, so the package and the unit (whose devices follow the same acceleration) agree. It
# uses the argument names of nixpkgs' pkgs/by-name/ll/llama-cpp/package.nix; a package
# whose override takes other names gets a message that says what to set instead of Nix's
# "called with unexpected argument".
{
  lib,
  package,
  # "cpu", "cuda", "rocm" or "vulkan", already resolved from null (options.nix).
  acceleration,
  # llama.cpp's RPC backend (rpc-server, llama-server --rpc): asked for only when used, so a
  # package without that argument still works for everyone else.
  rpc ? false,
}:
let
  flags = {
    cudaSupport = acceleration == "cuda";
    rocmSupport = acceleration == "rocm";
    vulkanSupport = acceleration == "vulkan";
  }
  // lib.optionalAttrs rpc { rpcSupport = true; };
  takes = if package ? override then lib.functionArgs package.override else { };
  missing = lib.filter (flag: !(takes ? ${flag})) (lib.attrNames flags);
  name = package.name or "the package";
  takesText =
    if takes == { } then
      "it has no override taking named arguments"
    else
      "its override takes ${lib.concatMapStringsSep ", " (a: "`${a}`") (lib.attrNames takes)}";
in
if missing == [ ] then
  package.override flags
else
  throw ''
    services.corral.llamaCpp.package: ${name} cannot be built for acceleration "${acceleration}": ${takesText}, not ${lib.concatMapStringsSep ", " (a: "`${a}`") missing} as nixpkgs' llama-cpp does.
    Use pkgs.llama-cpp, or wrap yours so that it takes nixpkgs' names; for llama.cpp's own flake (useCuda, useRocm, useVulkan):
      services.corral.llamaCpp.package = pkgs.callPackage (
        { cudaSupport ? false, rocmSupport ? false, vulkanSupport ? false }:
        llama-cpp.packages.''${pkgs.stdenv.hostPlatform.system}.default.override {
          useCuda = cudaSupport; useRocm = rocmSupport; useVulkan = vulkanSupport;
        }
      ) { };''
