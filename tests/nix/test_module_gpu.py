"""The GPU a 3090 user gets from the configs they actually write (issue 24, items 1 to 4).

Owns what the module makes of the machine's NVIDIA driver, a llama.cpp package the user
sets (nixpkgs' variants included), hardware.graphics and nixpkgs' allowUnfree: which
acceleration the unit gets, which llama.cpp runs, and what the user is told. A CPU unit on
an NVIDIA machine never goes unsaid.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.nix.test_module_eval import backends

pytestmark = pytest.mark.nix

#: services.xserver.videoDrivers = [ "nvidia" ] makes nixpkgs' hardware.nvidia.enabled true;
#: hardware.nvidia.open must be set with it (drivers >= 560).
NVIDIA = 'services.xserver.videoDrivers = [ "nvidia" ]; hardware.nvidia.open = true;'
MODEL = 'models.m.path = "m.gguf";'


def machine(nixos: str, corral: str = "") -> str:
    """A configuration module: NixOS options, then services.corral's (Nix text)."""
    return (
        f"{{ pkgs, ... }}: {{ {nixos} services.corral = {{ enable = true; {MODEL} {corral} }}; }}"
    )


def outcome(module: Any, configuration: str, pkgs_config: str | None = None) -> dict[str, Any]:
    """What a user gets: the acceleration, llama-server, warnings and failed assertions."""
    evaluated = module if pkgs_config is None else type(module)(module.lib, pkgs_config=pkgs_config)
    found: dict[str, Any] = evaluated.value(configuration, "outcome")
    return found


# 1. The driver is on and acceleration is unset: CUDA, not a silent CPU build.
def test_the_nvidia_driver_makes_null_acceleration_cuda(module: Any) -> None:
    configuration = machine(NVIDIA)
    got = outcome(module, configuration)
    assert got["acceleration"] == "cuda"
    assert got["warnings"] == [] and got["failedAssertions"] == []
    server = module.value(configuration, "generatorInput.llamaServer")
    assert server.endswith("-llama-cpp-cuda/bin/llama-server")
    assert backends(module, configuration) == {"CUDA"}
    assert module.value(configuration, "generatorInput.service.acceleration") == "cuda"


def test_the_datacenter_driver_counts_too(module: Any) -> None:
    got = outcome(module, machine("hardware.nvidia.datacenter.enable = true;"))
    assert got["acceleration"] == "cuda"


def test_without_an_nvidia_driver_null_stays_cpu(module: Any) -> None:
    assert outcome(module, machine(""))["acceleration"] == "cpu"


def test_an_explicit_cpu_on_an_nvidia_machine_is_the_users_word(module: Any) -> None:
    got = outcome(module, machine(NVIDIA, 'acceleration = "cpu";'))
    assert got["acceleration"] == "cpu"
    assert got["warnings"] == []


def test_cuda_without_allow_unfree_fails_an_assertion_that_names_the_fix(module: Any) -> None:
    got = outcome(module, machine(NVIDIA), pkgs_config="{ }")
    [message] = got["failedAssertions"]
    assert message.startswith(
        'services.corral.acceleration: is "cuda" (resolved from hardware.nvidia.enabled):'
    )
    assert "set nixpkgs.config.allowUnfree = true" in message
    # A list or a predicate may admit CUDA: corral cannot tell, and leaves it to nixpkgs.
    listed = '{ allowUnfreePackages = [ "cuda_cudart" ]; }'
    assert outcome(module, machine(NVIDIA), pkgs_config=listed)["failedAssertions"] == []
    # Past the assertions, nixpkgs itself refuses, as the stand-in does.
    stubbed = type(module)(module.lib, pkgs_config="{ }")
    assert "has an unfree license (\u2018CUDA EULA\u2019), refusing to evaluate" in stubbed.error(
        machine(NVIDIA)
    )


# 2. A package the user sets is used as given, and the unit follows it.
SEED_PACKAGE = "llamaCpp.package = pkgs.llama-cpp.override { cudaSupport = true; };"


def test_the_seeds_own_package_stays_a_cuda_build(module: Any) -> None:
    configuration = machine(NVIDIA, SEED_PACKAGE)
    got = outcome(module, configuration)
    assert got["acceleration"] == "cuda"
    assert got["warnings"] == [] and got["failedAssertions"] == []
    assert backends(module, configuration) == {"CUDA"}
    # Without the driver, the unit still follows the package (and warns of the driver).
    alone = outcome(module, machine("", SEED_PACKAGE))
    assert alone["acceleration"] == "cuda"
    assert [w.split(":")[0] for w in alone["warnings"]] == ["services.corral.acceleration"]


@pytest.mark.parametrize(
    ("variant", "acceleration", "backend"),
    [("cuda", "cuda", "CUDA"), ("rocm", "rocm", "HIP"), ("vulkan", "vulkan", "VULKAN")],
)
def test_nixpkgs_variants_work_as_given(
    module: Any, variant: str, acceleration: str, backend: str
) -> None:
    configuration = machine(NVIDIA, f"llamaCpp.package = pkgs.llama-cpp-{variant};")
    got = outcome(module, configuration)
    assert got["acceleration"] == acceleration
    assert got["failedAssertions"] == []
    assert backends(module, configuration) == {backend}
    server = module.value(configuration, "generatorInput.llamaServer")
    assert server.endswith(f"-llama-cpp-{variant}/bin/llama-server")
    # RPC, where a model uses it, reaches the llama-cpp inside the variant.
    rpc = configuration.replace(MODEL, 'models.m = { path = "m.gguf"; rpc = [ "h:50052" ]; };')
    assert backends(module, rpc) == {backend, "RPC"}


def test_a_package_at_odds_with_acceleration_fails_an_assertion(module: Any) -> None:
    got = outcome(
        module, machine("", 'acceleration = "cpu"; llamaCpp.package = pkgs.llama-cpp-vulkan;')
    )
    [message] = got["failedAssertions"]
    assert message.startswith(
        'services.corral.acceleration: is "cpu", but services.corral.llamaCpp.package'
        ' (llama-cpp-vulkan) is built for "vulkan"'
    )


def test_a_package_whose_backend_is_unknown_asks_for_acceleration(module: Any) -> None:
    unknown = 'llamaCpp.package = pkgs.writeText "llama-cpp-flake" "";'
    got = outcome(module, machine(NVIDIA, unknown))
    [message] = got["failedAssertions"]
    assert message.startswith(
        "services.corral.acceleration: is unset, and corral cannot tell which GPU"
        " services.corral.llamaCpp.package (llama-cpp-flake) is built for"
    )
    # Said explicitly, the package is used as it is, and the unit gets that acceleration.
    told = outcome(module, machine(NVIDIA, f'{unknown} acceleration = "cuda";'))
    assert (told["acceleration"], told["failedAssertions"]) == ("cuda", [])


def test_a_cpu_package_on_an_nvidia_machine_warns(module: Any) -> None:
    got = outcome(module, machine(NVIDIA, "llamaCpp.package = pkgs.llama-cpp;"))
    assert got["acceleration"] == "cpu"
    [warning] = got["warnings"]
    assert warning.startswith('services.corral.acceleration: resolves to "cpu", because')
    assert "use pkgs.llama-cpp-cuda" in warning


# 3. A headless machine: llama.cpp finds libcuda in /run/opengl-driver/lib.
def test_a_gpu_unit_turns_hardware_graphics_on(module: Any) -> None:
    assert outcome(module, machine(NVIDIA))["graphics"] is True
    assert outcome(module, machine("", 'acceleration = "vulkan";'))["graphics"] is True
    assert outcome(module, machine(""))["graphics"] is False


def test_graphics_turned_off_by_hand_warns(module: Any) -> None:
    got = outcome(module, machine(f"{NVIDIA} hardware.graphics.enable = false;"))
    assert got["graphics"] is False
    [warning] = got["warnings"]
    assert warning.startswith(
        'services.corral.acceleration: is "cuda", but hardware.graphics.enable is false'
    )
    assert "/run/opengl-driver" in warning and "libcuda" in warning


@pytest.mark.parametrize(
    ("flag", "acceleration"),
    [("GGML_CUDA", "cuda"), ("GGML_HIPBLAS", "rocm"), ("GGML_VULKAN", "vulkan")],
)
def test_llama_cpps_own_flake_is_read_from_its_cmake_flags(
    module: Any, flag: str, acceleration: str
) -> None:
    # llama.cpp's .devops/nix/package.nix writes (cmakeBool "GGML_CUDA" useCuda), and older
    # versions GGML_HIPBLAS for ROCm.
    package = (
        'llamaCpp.package = pkgs.writeText "llama-cpp-flake" "" // { cmakeFlags = ['
        f' "-DGGML_BLAS:BOOL=FALSE" "-D{flag}:BOOL=TRUE" ]; }};'
    )
    got = outcome(module, machine("", package))
    assert (got["acceleration"], got["failedAssertions"]) == (acceleration, [])
