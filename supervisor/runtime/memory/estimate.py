"""How much memory a model takes once loaded, per device, computed without loading it.

Owns the arithmetic: the tensors (from the GGUF header, placed on the GPU or the CPU the
way llama.cpp places them for ``-ngl``), the KV cache (context, parallel slots, sliding
windows, cache types), the output and compute buffers; and the choice between a declared,
a measured and an estimated figure. Pure: it reads no file (``gguf_facts`` does, and
``learned`` keeps the measurements) and detects no device (``devices`` does).

The formulas follow llama.cpp's allocation (src/llama-kv-cache-iswa.cpp, llama-context.cpp)
and were checked against the buffer sizes llama-server logs for the demo model.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from corral.generator.model_settings import ModelConfig
from corral.supervisor.runtime.memory.gguf_facts import Facts

#: Bytes per KV cache element, for llama-server's ``-ctk``/``-ctv`` types (ggml block sizes).
CACHE_TYPE_BYTES: dict[str, float] = {
    "f32": 4,
    "f16": 2,
    "bf16": 2,
    "q8_0": 34 / 32,
    "q4_0": 18 / 32,
    "q4_1": 20 / 32,
    "iq4_nl": 18 / 32,
    "q5_0": 22 / 32,
    "q5_1": 24 / 32,
}

#: llama-server's own defaults, for what neither the config nor ``args`` set.
AUTO_PARALLEL = 4  # "-np -1 = auto": 4 slots sharing one unified KV cache
DEFAULT_UBATCH = 512
#: llama.cpp pads the sliding-window cache to this many cells.
SWA_PAD = 256

CPU = "cpu"


class Source(enum.StrEnum):
    """Where a model's figure comes from, most trusted first."""

    DECLARED = "declared"
    MEASURED = "measured"
    ESTIMATED = "estimated"


@dataclass(frozen=True)
class Footprint:
    """A model's memory per device (``cpu``, ``gpu0`` …), and where the figure comes from."""

    by_device: Mapping[str, int]
    source: Source
    #: The estimate's parts (weights, kv, output, compute), in bytes; empty unless estimated.
    parts: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_device.values())


@dataclass(frozen=True)
class Launch:
    """The llama-server settings that decide memory, from the config, ``args`` and ``env``."""

    context_size: int
    #: Layers on the GPU (-ngl): None = llama-server's default (as many as fit: all).
    gpu_layers: int | None = None
    parallel: int = AUTO_PARALLEL
    kv_unified: bool = True
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    ubatch: int = DEFAULT_UBATCH
    flash_attn: bool = True
    swa_full: bool = False
    #: Expert tensors of the first N layers stay on the CPU (--n-cpu-moe; --cpu-moe = all).
    cpu_moe_layers: int = 0


#: args flags (every spelling) -> the name used below; env LLAMA_ARG_* set the same.
_FLAGS = {
    "-c": "ctx", "--ctx-size": "ctx", "-np": "parallel", "--parallel": "parallel",
    "-ngl": "ngl", "--gpu-layers": "ngl", "--n-gpu-layers": "ngl",
    "-ctk": "ctk", "--cache-type-k": "ctk", "-ctv": "ctv", "--cache-type-v": "ctv",
    "-ub": "ubatch", "--ubatch-size": "ubatch", "-fa": "fa", "--flash-attn": "fa",
    "-ncmoe": "ncmoe", "--n-cpu-moe": "ncmoe",
}  # fmt: skip
_SWITCHES = {
    "--swa-full": ("swa_full", "1"), "-kvu": ("kvu", "1"), "--kv-unified": ("kvu", "1"),
    "-no-kvu": ("kvu", "0"), "--no-kv-unified": ("kvu", "0"),
    "-cmoe": ("ncmoe", "1000000"), "--cpu-moe": ("ncmoe", "1000000"),
}  # fmt: skip
_ENV = {
    "LLAMA_ARG_CTX_SIZE": "ctx", "LLAMA_ARG_N_PARALLEL": "parallel",
    "LLAMA_ARG_N_GPU_LAYERS": "ngl", "LLAMA_ARG_CACHE_TYPE_K": "ctk",
    "LLAMA_ARG_CACHE_TYPE_V": "ctv", "LLAMA_ARG_UBATCH": "ubatch",
    "LLAMA_ARG_FLASH_ATTN": "fa", "LLAMA_ARG_N_CPU_MOE": "ncmoe",
    "LLAMA_ARG_SWA_FULL": "swa_full", "LLAMA_ARG_KV_UNIFIED": "kvu",
}  # fmt: skip


def launch(model: ModelConfig) -> Launch:
    """What llama-server will be told for ``model``: its settings, then env, then ``args``."""
    found: dict[str, str] = {name: model.env[var] for var, name in _ENV.items() if var in model.env}
    if model.gpu_layers is not None:
        found["ngl"] = str(model.gpu_layers)
    found.update(_from_args(model.args))  # the child's argv puts args last: they win
    parallel = _int(found.get("parallel"), -1)
    # llama-server: -np unset (auto) means 4 slots over one unified cache; an explicit -np
    # gives each slot its own stream of context/np cells unless --kv-unified says otherwise.
    unified = _truthy(found["kvu"]) if "kvu" in found else parallel <= 0
    ngl = found.get("ngl")
    return Launch(
        context_size=_int(found.get("ctx"), model.context_size) or model.context_size,
        gpu_layers=None if ngl in (None, "auto", "all", "-1") else _int(ngl, 0),
        parallel=parallel if parallel > 0 else AUTO_PARALLEL,
        kv_unified=unified,
        cache_type_k=found.get("ctk", "f16").lower(),
        cache_type_v=found.get("ctv", "f16").lower(),
        ubatch=_int(found.get("ubatch"), DEFAULT_UBATCH),
        flash_attn=found.get("fa", "auto").lower() not in ("off", "0", "false", "disabled"),
        swa_full=_truthy(found.get("swa_full", "0")),
        cpu_moe_layers=_int(found.get("ncmoe"), 0),
    )


def estimate(facts: Facts, run: Launch, gpus: Mapping[str, float]) -> Footprint:
    """Bytes per device for ``facts`` run as ``run``; ``gpus`` maps each GPU to its share.

    With no GPU every byte is on the CPU. Otherwise the last ``gpu_layers`` layers (all by
    default) and their KV cache go to the GPUs, split by share, as llama.cpp's layer split
    does; the token embeddings and the output buffer always stay in host memory.
    """
    n_layer = facts.block_count
    offloaded = 0 if not gpus else n_layer + 1 if run.gpu_layers is None else run.gpu_layers
    first_gpu_layer = max(n_layer + 1 - offloaded, 0)
    on_gpu = [il >= first_gpu_layer for il in range(n_layer + 1)]  # index n_layer: output

    weights = {True: 0, False: 0}
    for name, size in facts.tensors:
        weights[_tensor_on_gpu(name, on_gpu, run, n_layer)] += size
    if on_gpu[n_layer] and not any(name.startswith("output.") for name, _ in facts.tensors):
        # Tied embeddings: llama.cpp loads a second copy of token_embd as the output layer.
        weights[True] += sum(s for n, s in facts.tensors if n.startswith("token_embd."))

    kv = {True: 0, False: 0}
    base_cells, swa_cells = kv_cells(facts, run)
    k_bytes = CACHE_TYPE_BYTES.get(run.cache_type_k, 2)
    v_bytes = CACHE_TYPE_BYTES.get(run.cache_type_v, 2)
    for il in range(n_layer):
        heads = facts.head_count_kv[il] if il < len(facts.head_count_kv) else 0
        cells = swa_cells if il < len(facts.swa_layers) and facts.swa_layers[il] else base_cells
        per_cell = heads * (facts.key_length * k_bytes + facts.value_length * v_bytes)
        kv[on_gpu[il]] += int(cells * per_cell)

    output = run.parallel * facts.vocab_size * 4  # f32 logits for one token per slot
    compute = compute_buffer(facts, run, base_cells, swa_cells)
    gpu_total = weights[True] + kv[True] + (compute if offloaded else 0)
    cpu_total = weights[False] + kv[False] + output + (0 if offloaded else compute)
    by_device = {CPU: cpu_total} if cpu_total else {}
    share_sum = sum(gpus.values()) or 1.0
    for name, share in gpus.items():
        by_device[name] = by_device.get(name, 0) + int(gpu_total * share / share_sum)
    parts = {
        "weights": weights[True] + weights[False],
        "kv": kv[True] + kv[False],
        "output": output,
        "compute": compute,
    }
    return Footprint(by_device=by_device, source=Source.ESTIMATED, parts=parts)


def kv_cells(facts: Facts, run: Launch) -> tuple[int, int]:
    """KV cells in all (full-attention layers, sliding-window layers), over every slot.

    llama.cpp's iSWA cache: a windowed layer keeps ``window * seqs + ubatch`` cells (padded
    to 256), where seqs is every slot for a unified cache and 1 per stream otherwise.
    """
    streams = 1 if run.kv_unified else run.parallel
    per_stream = max(run.context_size // streams, 1)
    seqs = run.parallel if run.kv_unified else 1
    swa = _pad(facts.sliding_window * seqs + run.ubatch, SWA_PAD)
    swa_per_stream = per_stream if run.swa_full else min(per_stream, swa)
    return per_stream * streams, swa_per_stream * streams


def compute_buffer(facts: Facts, run: Launch, base_cells: int, swa_cells: int) -> int:
    """The scratch memory of one ubatch's forward pass, at its peak.

    An approximation of what llama.cpp's graph allocator reserves: f32 activations for the
    FFN (the active experts' for MoE), the attention projections and the residual stream,
    plus the f16 attention masks; without flash attention, the KQ matrix as well.
    """
    ffn = (
        facts.expert_used_count * facts.expert_feed_forward_length
        if facts.expert_count and facts.expert_feed_forward_length
        else facts.feed_forward_length
    )
    kv_heads = max(facts.head_count_kv, default=0)
    width = (
        2 * ffn
        + 3 * facts.embedding_length
        + facts.head_count * facts.key_length
        + kv_heads * (facts.key_length + facts.value_length)
    )
    streams = 1 if run.kv_unified else run.parallel
    masks = run.ubatch * (base_cells + (swa_cells if any(facts.swa_layers) else 0)) // streams
    total = run.ubatch * width * 4 + masks * 2
    if not run.flash_attn:
        total += run.ubatch * facts.head_count * (base_cells // streams) * 4
    return total


def choose(
    declared: int | None,
    measured: Mapping[str, int] | None,
    estimated: Footprint | None,
    devices: Sequence[str] = (CPU,),
) -> Footprint | None:
    """The figure to trust: declared, else measured, else estimated; None when none is known.

    A declared ``memory`` has no device of its own: it lands on the model's first device
    (its GPU when it has one).
    """
    if declared is not None:
        return Footprint(by_device={devices[0]: declared}, source=Source.DECLARED)
    if measured:
        return Footprint(by_device=dict(measured), source=Source.MEASURED)
    return estimated


def _tensor_on_gpu(name: str, on_gpu: Sequence[bool], run: Launch, n_layer: int) -> bool:
    if name.startswith("token_embd."):
        return False  # the input layer always stays in host memory
    if name.startswith("blk."):
        layer = int(name.split(".", 2)[1])
        if "_exps" in name and layer < run.cpu_moe_layers:
            return False
        return on_gpu[min(layer, n_layer)]
    return on_gpu[n_layer]


def _from_args(args: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    items = [part for arg in args for part in arg.split("=", 1)] if args else []
    for i, item in enumerate(items):
        if item in _SWITCHES:
            key, value = _SWITCHES[item]
            found[key] = value
        elif item in _FLAGS and i + 1 < len(items):
            found[_FLAGS[item]] = items[i + 1]
    return found


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _truthy(value: str) -> bool:
    return value.lower() in ("1", "true", "on", "yes", "enabled")


def _pad(value: int, to: int) -> int:
    return (value + to - 1) // to * to
