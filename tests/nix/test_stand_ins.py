"""The stand-ins (nixos-module/tests/stub-pkgs.nix, stand-ins.nix) refuse what nixpkgs refuses.

Owns the checks that the stand-ins are no more lenient than the nixpkgs files they name, where
the module's behaviour depends on it (issue 24): a lenient stand-in is a test that cannot fail.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.nix


def with_model(path: str) -> str:
    return f"{{ pkgs, ... }}: {{ services.corral = {{ enable = true; models.m.path = {path}; }}; }}"


def test_fetchurl_refuses_a_malformed_hash(module: Any) -> None:
    # pkgs/build-support/fetchurl: the hash is the fixed output's, which Nix checks.
    bad = with_model(
        'pkgs.fetchurl { url = "https://example.invalid/m.gguf"; hash = "sha256-abc"; }'
    )
    assert "invalid SRI hash 'abc'" in module.error(bad)
    good = bad.replace("sha256-abc", "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    assert module.value(good, "generatorInput.models.m.path").endswith("-m.gguf")


def test_the_variants_override_takes_only_llama_cpp(module: Any) -> None:
    # pkgs/by-name/ll/llama-cpp-cuda/package.nix is `{ llama-cpp }: llama-cpp.override …`.
    message = module.error(
        "{ pkgs, ... }: { services.corral = { enable = true;"
        " llamaCpp.package = pkgs.llama-cpp-vulkan.override { vulkanSupport = true; }; }; }"
    )
    assert "unexpected argument 'vulkanSupport'" in message


def test_llama_cpp_takes_rpc_support_and_installs_the_worker_as_nixpkgs_does(module: Any) -> None:
    flags = module.value(
        '{ pkgs, ... }: { services.corral = { enable = true; acceleration = "cpu";'
        " llamaCpp.package = pkgs.llama-cpp.override { rpcSupport = true; }; }; }",
        "config.services.corral.llamaCpp.finalPackage.cmakeFlags",
    )
    assert "-DGGML_RPC:BOOL=TRUE" in flags
    script = module.value(
        '{ pkgs, ... }: { services.corral.rpcWorker = { enable = true; host = "10.0.0.2"; }; }',
        "config.services.corral.llamaCpp.finalPackage.drvAttrs.args",
    )[1]
    assert "$out/bin/llama-rpc-server" in script
    assert "$out/bin/rpc-server" not in script


def test_the_nvidia_driver_needs_hardware_nvidia_open(module: Any) -> None:
    # nixos/modules/hardware/video/nvidia.nix's assertion for drivers >= 560.
    failed = module.value('{ services.xserver.videoDrivers = [ "nvidia" ]; }', "failedAssertions")
    assert [m.split("\n")[0] for m in failed] == [
        "You must configure `hardware.nvidia.open` on NVIDIA driver versions >= 560."
    ]
