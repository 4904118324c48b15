"""``corral import-modelfile``: each instruction's preset, in YAML and in Nix, against golden
files (rerun with CORRAL_UPDATE_GOLDEN=1 to rewrite them), and the files it refuses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from corral.generator import loader
from corral.generator.cli import cli

CASES = Path(__file__).parent / "modelfiles"
NAMES = sorted(p.stem for p in CASES.glob("*.Modelfile"))


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["import-modelfile", *args])
    return result.exit_code, result.stdout, result.stderr


def stable(text: str) -> str:
    """The output without this checkout's folder or this user's home in its paths."""
    return text.replace(str(CASES), "<modelfiles>").replace(str(Path.home()), "<home>")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("nix", [False, True], ids=["yaml", "nix"])
def test_golden(name: str, nix: bool) -> None:
    code, out, err = run(str(CASES / f"{name}.Modelfile"), *(["--nix"] if nix else []))
    assert code == 0, err
    golden = CASES / f"{name}.{'nix' if nix else 'yaml'}"
    text = stable(out)
    if os.environ.get("CORRAL_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8"), (
        f"rerun with CORRAL_UPDATE_GOLDEN=1: {golden}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_every_yaml_preset_is_a_valid_config(name: str) -> None:
    _, out, _ = run(str(CASES / f"{name}.Modelfile"))
    data = yaml.safe_load(out)
    (entry,) = data["models"]
    bases = [{"name": entry["from"], "path": "base.gguf"}] if "from" in entry else []
    config = loader.validate({"models": [*bases, *data["models"]]})
    assert config.model(entry["name"]) is not None


@pytest.mark.skipif(shutil.which("nix-instantiate") is None, reason="needs nix-instantiate")
@pytest.mark.parametrize("name", NAMES)
def test_the_nix_preset_evaluates_to_the_yaml_one(name: str) -> None:
    modelfile = str(CASES / f"{name}.Modelfile")
    _, nix, _ = run(modelfile, "--nix")
    _, text, _ = run(modelfile)
    evaluated = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "-E", nix],
        capture_output=True,
        text=True,
        check=True,
    )
    ((name_in_nix, entry),) = json.loads(evaluated.stdout).items()
    (expected,) = yaml.safe_load(text)["models"]
    assert {"name": name_in_nix, **entry} == _camel(expected)


def _camel(entry: dict[str, object]) -> dict[str, object]:
    names = {"args": "extraArgs", "context_size": "contextSize", "gpu_layers": "gpuLayers"}
    names["system_prompt"] = "systemPrompt"
    return {names.get(k, k): v for k, v in entry.items()}


def test_name_defaults_to_the_folder_of_a_file_named_modelfile(tmp_path: Path) -> None:
    folder = tmp_path / "mario"
    folder.mkdir()
    (folder / "Modelfile").write_text("FROM llama3.2\n", encoding="utf-8")
    (tmp_path / "coder.modelfile").write_text("FROM qwen2.5-coder:7b\n", encoding="utf-8")
    assert "- name: mario\n" in run(str(folder / "Modelfile"))[1]
    assert "- name: coder\n" in run(str(tmp_path / "coder.modelfile"))[1]
    assert "- name: plumber\n" in run(str(folder / "Modelfile"), "--name", "plumber")[1]


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("FROM m\nFOO bar\n", ":2:", "unknown instruction 'FOO'"),
        ("FROM m\nPARAMETER temprature 0.7\n", ":2:", "PARAMETER temprature: unknown parameter"),
        ("FROM m\n\nPARAMETER top_k many\n", ":3:", "PARAMETER top_k: must be int, got 'many'"),
        ("FROM m\nPARAMETER temperature hot\n", ":2:", "must be float, got 'hot'"),
        ("FROM m\nPARAMETER use_mmap maybe\n", ":2:", "must be bool, got 'maybe'"),
        ("FROM m\nPARAMETER top_k 1_000\n", ":2:", "must be int"),
        ('FROM m\nSYSTEM """open\n', ":2:", "never closed"),
        ("FROM bad..name\n", ":1:", "neither a file here nor an Ollama model name"),
        ("PARAMETER top_k 4\n", ": ", "no FROM line"),
    ],
)
def test_malformed_modelfiles_fail_with_the_line(
    tmp_path: Path, text: str, where: str, words: str
) -> None:
    file = tmp_path / "Modelfile"
    file.write_text(text, encoding="utf-8")
    code, out, err = run(str(file))
    assert code == 2 and out == ""
    assert f"error: {file}{where}" in err and words in err


def test_from_a_blob_of_ollamas_store_suggests_its_name(tmp_path: Path) -> None:
    blob = tmp_path / "models" / "blobs" / f"sha256-{'a' * 64}"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"GGUF")
    file = tmp_path / "Modelfile"
    file.write_text(f"FROM {blob}\n", encoding="utf-8")
    code, out, _ = run(str(file))
    assert code == 0 and f"  path: {blob}\n" in out
    assert "a blob of Ollama's store; with ollama_models set, `path: ollama:NAME`" in out


def test_from_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "safetensors").mkdir()
    file = tmp_path / "Modelfile"
    file.write_text("FROM ./safetensors\n", encoding="utf-8")
    code, _, err = run(str(file))
    assert code == 2 and ":1: FROM ./safetensors: a folder" in err
