"""``corral import-modelfile``: an Ollama Modelfile as a corral preset, in YAML or in Nix.

Owns what each instruction becomes: ``FROM`` a name -> ``from:`` (the name as Ollama lists
it), ``FROM`` a file -> ``path:``; ``PARAMETER`` -> ``parameters:`` through
``ollama_options`` (typed as ``api.FormatParams`` types them), with the options that start a
server (``num_ctx`` -> ``context_size``, ``num_gpu`` -> ``gpu_layers``, the rest as llama-server
arguments) marked, since they make the preset its own model; ``SYSTEM`` -> ``system_prompt``;
``ADAPTER`` -> ``--lora``; ``DRAFT`` -> ``--model-draft``; and a comment for what corral does
not take over (``TEMPLATE``, ``MESSAGE``, ``LICENSE``, ``RENDERER``, ``PARSER``,
``REQUIRES``). The grammar is ``modelfile``'s, the text ``preset_text``'s; nothing is
validated here.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from corral.generator import model_source, modelfile, ollama_options, ollama_store
from corral.generator.fields import NAME_PATTERN
from corral.generator.preset_text import Preset, to_nix, to_yaml

#: Load-time options as llama-server arguments (llama.cpp's common/arg.cpp names).
_LOAD_ARGS = {
    "num_thread": "--threads",
    "num_batch": "--batch-size",
    "main_gpu": "--main-gpu",
    "draft_num_predict": "--draft-max",
}
_GO_BOOL = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True}
_GO_BOOL |= {"0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}
_GO_INT = re.compile(r"^[+-]?[0-9]+$")
#: Keys that a preset sets for its server, not its requests.
_SERVER_KEYS = ("context_size", "gpu_layers", "args")
_OWN_MODEL = (
    "{key} is set when llama-server starts: that makes this its own model, with its own "
    "llama-server, rather than a preset sharing {base}'s (as one that sets only parameters "
    "or system_prompt would)"
)


def convert(instructions: list[modelfile.Instruction], name: str, folder: Path) -> Preset:
    """The preset named ``name`` for a parsed Modelfile; files resolve against ``folder``."""
    preset = Preset({"name": name})
    entry = preset.entry
    parameters: dict[str, Any] = {}
    args: list[str] = []
    for step in instructions:
        where = f"line {step.line}"
        if step.name == "model":
            _from(preset, step, folder)
        elif step.keyword == "PARAMETER":
            _parameter(preset, parameters, args, step)
        elif step.name == "system":
            entry["system_prompt"] = step.args
        elif step.name == "adapter":
            args += ["--lora", _file(step.args, folder)]
        elif step.name == "draft":
            args += ["--model-draft", _file(step.args, folder)]
            preset.notes.append(f"DRAFT ({where}): a GGUF file for llama-server's --model-draft")
        elif step.name == "template":
            preset.notes.append(
                f"TEMPLATE ({where}): not used. corral runs the GGUF's own Jinja chat template "
                "(tokenizer.chat_template); llama-server cannot run Ollama's Go templates. If "
                "the GGUF has none, set chat_template to a llama.cpp built-in name (gemma, "
                "chatml, llama3, ...) or a Jinja file."
            )
        elif step.name == "message":
            role, _, text = step.args.partition(": ")
            preset.notes.append(
                f"MESSAGE {role} ({where}): not supported; corral adds no example messages to "
                f"requests, so this one is dropped: {_one_line(text)}"
            )
        elif step.name == "license":
            preset.notes.append(f"LICENSE ({where}): not carried over; it stays in the Modelfile")
        elif step.name in ("renderer", "parser"):
            preset.notes.append(
                f"{step.keyword} {step.args} ({where}): Ollama's own Go {step.name}, not used; "
                "llama-server formats and parses with the GGUF's Jinja template"
            )
        elif step.name == "requires":
            preset.notes.append(f"REQUIRES {step.args} ({where}): an Ollama version; dropped")
    if parameters:
        entry["parameters"] = parameters
    if args:
        entry["args"] = args
    for key in _SERVER_KEYS:
        if key in entry and "from" in entry:
            preset.remark(key, _OWN_MODEL.format(key=key, base=entry["from"]))
    return preset


def _from(preset: Preset, step: modelfile.Instruction, folder: Path) -> None:
    entry, value, where = preset.entry, step.args, f"line {step.line}"
    entry.pop("from", None)
    entry.pop("path", None)
    path = _expand(value, folder)
    if path.is_dir():
        raise modelfile.ModelfileError(
            step.line,
            f"FROM {value}: a folder (safetensors); corral serves GGUF files: convert it "
            "with llama.cpp's convert_hf_to_gguf.py and name the .gguf",
        )
    if path.is_file() or _looks_like_path(value):
        entry["path"] = str(path)
        if not path.is_file():
            preset.remark("path", f"FROM ({where}): not a file on this machine (yet)")
        if path.parent.name == "blobs" and path.name.startswith("sha256-"):
            preset.remark(
                "path",
                f"FROM ({where}): a blob of Ollama's store; with ollama_models set, "
                "`path: ollama:NAME` names it by its model's name instead",
            )
        return
    try:
        source = model_source.parse(value)
    except model_source.SourceSyntaxError:
        source = None
    if not isinstance(source, model_source.OllamaName):
        raise modelfile.ModelfileError(
            step.line, f"FROM {value}: neither a file here nor an Ollama model name"
        )
    entry["from"] = ollama_store.name_of(source)
    preset.remark(
        "from",
        f"FROM {value} ({where}): a model of your config, or of Ollama's store (ollama_models); "
        f"or download it: replace `from` with `source: ollama:{entry['from']}`",
    )


def _parameter(
    preset: Preset, parameters: dict[str, Any], args: list[str], step: modelfile.Instruction
) -> None:
    key, where = step.name, f"line {step.line}"
    if key in ollama_options.DEPRECATED:
        preset.notes.append(f"PARAMETER {key} ({where}): deprecated in Ollama, which ignores it")
        return
    value = _typed(step)
    if key == "stop":
        parameters.setdefault("stop", []).append(value)
    elif key == "num_ctx":
        preset.entry["context_size"] = value
        preset.remark("context_size", f"PARAMETER num_ctx ({where})")
    elif key == "num_gpu":
        preset.entry["gpu_layers"] = value
        preset.remark("gpu_layers", f"PARAMETER num_gpu ({where})")
    elif key == "use_mmap":
        if value is False:
            args.append("--no-mmap")
            preset.remark("args", f"PARAMETER use_mmap false ({where})")
    elif key in _LOAD_ARGS:
        args += [_LOAD_ARGS[key], str(value)]
        preset.remark("args", f"PARAMETER {key} ({where})")
    else:
        parameters.update(ollama_options.to_parameters({key: value}))
        if key == "num_predict" and isinstance(value, int) and value < 0:
            preset.notes.append(f"PARAMETER num_predict {value} ({where}): llama-server's default")


def _typed(step: modelfile.Instruction) -> Any:
    """A PARAMETER's value as ``api.FormatParams`` types it; a ModelfileError otherwise."""
    kind = ollama_options.TYPES.get(step.name)
    text = step.args
    if kind is None:
        known = ", ".join(sorted(ollama_options.TYPES))
        raise modelfile.ModelfileError(
            step.line, f"PARAMETER {step.name}: unknown parameter; Ollama's are {known}"
        )
    if kind is int and _GO_INT.match(text):
        return int(text)
    if kind is float:
        try:
            return float(text)
        except ValueError:
            pass
    if kind is bool and text in _GO_BOOL:
        return _GO_BOOL[text]
    if kind is list:
        return text
    raise modelfile.ModelfileError(
        step.line, f"PARAMETER {step.name}: must be {kind.__name__}, got {text!r}"
    )


def _expand(value: str, folder: Path) -> Path:
    """``expandPath``: ``~`` and ``~user`` expanded, relative paths against the Modelfile's
    folder, made absolute."""
    path = Path(value).expanduser()
    return (path if path.is_absolute() else folder / path).absolute()


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~")) or value.lower().endswith((".gguf", ".bin"))


def _file(value: str, folder: Path) -> str:
    return str(_expand(value, folder))


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= 60 else flat[:57] + "..."


def default_name(file: Path) -> str:
    """The preset's name when --name is not given: the folder of a file named Modelfile,
    else the file's name without ``Modelfile``."""
    base = file.absolute().parent.name if file.name.lower() == "modelfile" else file.name
    base = re.sub(r"(?i)(^modelfile[._-]?|[._-]?modelfile$)", "", base) or "imported"
    cleaned = re.sub(r"[^A-Za-z0-9._:/+-]+", "-", base).strip("._:/+-")
    return cleaned if re.match(NAME_PATTERN, cleaned) else "imported"


@click.command("import-modelfile")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="The preset's name (default: from the file or its folder).")
@click.option("--nix", is_flag=True, help="Print a Nix attribute set for services.corral.models.")
def command(file: Path, name: str | None, nix: bool) -> None:
    """Print a corral preset made from an Ollama Modelfile (YAML, or Nix with --nix)."""
    if name is not None and not re.match(NAME_PATTERN, name):
        raise click.BadParameter(f"must match {NAME_PATTERN}, got {name!r}", param_hint="--name")
    try:
        instructions = modelfile.parse(modelfile.decode(file.read_bytes()))
        preset = convert(instructions, name or default_name(file), file.absolute().parent)
    except modelfile.ModelfileError as exc:
        where = f"{file}:{exc.line}" if exc.line else str(file)
        click.echo(f"error: {where}: {exc.message}", err=True)
        sys.exit(2)
    except (OSError, UnicodeDecodeError) as exc:
        click.echo(f"error: {file}: cannot read: {exc}", err=True)
        sys.exit(2)
    click.echo(to_nix(preset, str(file)) if nix else to_yaml(preset, str(file)), nl=False)
