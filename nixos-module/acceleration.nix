# `services.corral.acceleration` resolved, and the checks that keep llama.cpp's build, the
# unit's devices and the machine's driver in step.
#
# Owns how `null` resolves, how the backend of a llama.cpp package is read (its
# `cmakeFlags`, which nixpkgs' llama-cpp, its -cuda/-rocm/-vulkan variants and llama.cpp's
# own flake all write with lib.cmakeBool), and the GPU assertions and warnings. It builds
# nothing (llama-cpp.nix applies the flags) and renders no unit (the generator does).
{
  lib,
  pkgs,
  config,
  options,
}:
let
  cfg = config.services.corral;
  opts = options.services.corral;

  # What the user wrote: the option's own value is the resolved one (options.nix).
  given = lib.head (opts.acceleration.definitions ++ [ null ]);
  # A package the user set is used as given; the default (pkgs.llama-cpp) gets the flags.
  packageGiven = opts.llamaCpp.package.highestPrio < (lib.mkOptionDefault null).priority;
  package = cfg.llamaCpp.package;
  name = package.name or "the package";

  flags = lib.filter builtins.isString (package.cmakeFlags or [ ]);
  switch =
    names:
    let
      one = flag: {
        on = builtins.elem "-D${flag}:BOOL=TRUE" flags || builtins.elem "-D${flag}=ON" flags;
        named = lib.any (f: lib.hasPrefix "-D${flag}:" f || lib.hasPrefix "-D${flag}=" f) flags;
      };
    in
    {
      on = lib.any (flag: (one flag).on) names;
      named = lib.any (flag: (one flag).named) names;
    };
  backends = {
    cuda = switch [ "GGML_CUDA" ];
    # llama.cpp's own flake said GGML_HIPBLAS before GGML_HIP.
    rocm = switch [
      "GGML_HIP"
      "GGML_HIPBLAS"
    ];
    vulkan = switch [ "GGML_VULKAN" ];
  };
  # "cuda", "rocm", "vulkan", "cpu", or null where the cmakeFlags say nothing about GPUs.
  built =
    let
      on = lib.filter (b: backends.${b}.on) [
        "cuda"
        "rocm"
        "vulkan"
      ];
    in
    if on != [ ] then
      lib.head on
    else if lib.any (b: b.named) (lib.attrValues backends) then
      "cpu"
    else
      null;

  nvidia = config.hardware.nvidia.enabled or false;
  # pkgs/top-level/config.nix and check-meta.nix. Where a predicate or a list decides,
  # corral cannot tell whether it admits CUDA: nixpkgs' own message says so if not.
  unfreeAllowed =
    pkgs.config.allowUnfree or false
    || pkgs.config ? allowUnfreePredicate
    || (pkgs.config.allowUnfreePackages or [ ]) != [ ]
    || builtins.getEnv "NIXPKGS_ALLOW_UNFREE" == "1";

  resolve =
    value:
    if value != null then
      value
    else if packageGiven then
      # Unknown: "cpu" for the unit, and an assertion below asks for the option.
      if built != null then built else "cpu"
    else if pkgs.config.cudaSupport or false then
      "cuda"
    else if pkgs.config.rocmSupport or false then
      "rocm"
    # The NVIDIA driver is on: the machine has an NVIDIA GPU that its owner wants used.
    else if nvidia then
      "cuda"
    else
      "cpu";
  resolved = cfg.acceleration;
  show = builtins.toJSON;
in
{
  inherit resolve packageGiven;

  assertions = [
    {
      assertion = !(packageGiven && given == null && built == null);
      message = ''services.corral.acceleration: is unset, and corral cannot tell which GPU services.corral.llamaCpp.package (${name}) is built for (its cmakeFlags set none of GGML_CUDA, GGML_HIP, GGML_VULKAN); set services.corral.acceleration to the one it uses ("cuda", "rocm", "vulkan" or "cpu"), so that the unit may open that GPU's devices'';
    }
    {
      assertion = !(packageGiven && given != null && built != null && given != built);
      message = ''services.corral.acceleration: is ${show given}, but services.corral.llamaCpp.package (${name}) is built for ${show built}, so the unit's devices would not match it; set services.corral.acceleration = ${show built}, or leave it unset to follow the package'';
    }
    {
      assertion = resolved != "cuda" || unfreeAllowed;
      message = ''services.corral.acceleration: is "cuda"${
        lib.optionalString (given == null) " (resolved from ${
          if packageGiven then "services.corral.llamaCpp.package"
          else if pkgs.config.cudaSupport or false then "nixpkgs.config.cudaSupport"
          else "hardware.nvidia.enabled"
        })"
      }: llama.cpp is then built with CUDA, which is unfree, and nixpkgs refuses to evaluate it; set nixpkgs.config.allowUnfree = true (the NVIDIA driver needs it too), or an allowUnfreePredicate that admits the cuda_* packages'';
    }
  ];

  warnings =
    lib.optional (resolved == "cuda" && !nvidia) ''services.corral.acceleration: is "cuda", but no NVIDIA driver is configured (hardware.nvidia.enabled is false): llama.cpp will find no GPU and run on the CPU; add services.xserver.videoDrivers = [ "nvidia" ] (also on a machine without X)''
    ++ lib.optional (resolved == "cpu" && given == null && nvidia) ''services.corral.acceleration: resolves to "cpu", because services.corral.llamaCpp.package (${name}) is built without a GPU backend, but the NVIDIA driver is on (hardware.nvidia.enabled): llama.cpp will run on the CPU; use pkgs.llama-cpp-cuda (or leave services.corral.llamaCpp.package unset), or set services.corral.acceleration = "cpu" to say so''
    ++ lib.optional (resolved != "cpu" && !config.hardware.graphics.enable) ''services.corral.acceleration: is ${show resolved}, but hardware.graphics.enable is false: NixOS then links no driver libraries to /run/opengl-driver, where llama.cpp finds ${
      if resolved == "cuda" then "libcuda" else "the GPU driver"
    }, so it would run on the CPU; remove hardware.graphics.enable = false (corral turns it on with mkDefault)'';

  # llama.cpp loads the driver's libraries from /run/opengl-driver (autoAddDriverRunpath
  # for CUDA, the Vulkan loader's ICDs), which NixOS creates only with hardware.graphics:
  # a desktop has it, a headless server does not.
  graphics = resolved != "cpu";
}
