"""Memory estimates from GGUF headers: small files with known shapes, and the demo model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from corral.generator.model_settings import ModelConfig
from corral.supervisor.runtime.memory import estimate, gguf_facts
from corral.supervisor.runtime.memory.estimate import Footprint, Source
from tests.supervisor.tiny_gguf import Shape, write
from tests.support import demo_model_file

MIB = 1024**2


def model(**settings: object) -> ModelConfig:
    return ModelConfig.model_validate({"name": "m", "path": "m.gguf", **settings})


def facts_of(tmp_path: Path, shape: Shape) -> gguf_facts.Facts:
    return gguf_facts.read(write(tmp_path / "m.gguf", shape))


def kv_bytes(layers: int, cells: int, shape: Shape, element: float = 2) -> int:
    return int(layers * cells * shape.kv_heads * shape.head_dim * 2 * element)


LLAMA = Shape()
GEMMA = Shape(arch="gemma3", layers=12, window=128, heads=4, kv_heads=1, head_dim=32)


def test_the_header_gives_tensor_bytes_and_attention_shapes(tmp_path: Path) -> None:
    facts = facts_of(tmp_path, LLAMA)
    assert facts.tensor_bytes == LLAMA.tensor_bytes()
    assert (facts.block_count, facts.head_count, facts.key_length) == (4, 4, 16)
    assert facts.head_count_kv == (2, 2, 2, 2)
    assert facts.vocab_size == 256
    assert facts.swa_layers == (False,) * 4


def test_llama_like_on_the_cpu(tmp_path: Path) -> None:
    estimated = estimate.estimate(
        facts_of(tmp_path, LLAMA), estimate.launch(model(context_size=1024)), {}
    )
    assert estimated.parts["weights"] == LLAMA.tensor_bytes()
    # llama-server's default: 4 slots over one unified cache of context_size cells.
    assert estimated.parts["kv"] == kv_bytes(4, 1024, LLAMA)
    assert estimated.parts["output"] == 4 * LLAMA.vocab * 4
    assert set(estimated.by_device) == {"cpu"}
    assert estimated.total == sum(estimated.parts.values())


@pytest.mark.parametrize(
    ("args", "element"),
    [
        ([], 2),
        (["-ctk", "q8_0", "-ctv", "q8_0"], 34 / 32),
        (["--cache-type-k=q4_0", "--cache-type-v=q4_0"], 18 / 32),
        (["-ctk", "f32", "-ctv", "f32"], 4),
    ],
)
def test_cache_types_size_the_kv_cache(tmp_path: Path, args: list[str], element: float) -> None:
    run = estimate.launch(model(context_size=1024, args=args))
    estimated = estimate.estimate(facts_of(tmp_path, LLAMA), run, {})
    assert estimated.parts["kv"] == kv_bytes(4, 1024, LLAMA, element)


def test_parallel_slots_share_the_context_without_growing_a_full_cache(tmp_path: Path) -> None:
    facts = facts_of(tmp_path, LLAMA)
    auto = estimate.estimate(facts, estimate.launch(model(context_size=2048)), {})
    two = estimate.estimate(facts, estimate.launch(model(context_size=2048, args=["-np", "2"])), {})
    assert auto.parts["kv"] == two.parts["kv"] == kv_bytes(4, 2048, LLAMA)
    assert two.parts["output"] == 2 * LLAMA.vocab * 4


def test_gemma_like_keeps_a_window_on_five_layers_of_six(tmp_path: Path) -> None:
    facts = facts_of(tmp_path, GEMMA)
    assert facts.swa_layers.count(False) == 2  # layers 5 and 11 see the whole context
    run = estimate.launch(model(context_size=4096))
    # llama.cpp: window * slots + ubatch, padded to 256 = 128 * 4 + 512 = 1024 cells.
    assert estimate.kv_cells(facts, run) == (4096, 1024)
    estimated = estimate.estimate(facts, run, {})
    assert estimated.parts["kv"] == kv_bytes(2, 4096, GEMMA) + kv_bytes(10, 1024, GEMMA)


def test_swa_full_and_separate_slots_change_the_window_cache(tmp_path: Path) -> None:
    facts = facts_of(tmp_path, GEMMA)
    assert estimate.kv_cells(
        facts, estimate.launch(model(context_size=4096, args=["--swa-full"]))
    ) == (
        4096,
        4096,
    )
    # -np 2 without --kv-unified: two streams of 2048 cells; each window is 128 + 512 -> 768.
    assert estimate.kv_cells(
        facts, estimate.launch(model(context_size=4096, args=["-np", "2"]))
    ) == (
        4096,
        1536,
    )


def test_an_explicit_pattern_marks_the_windowed_layers(tmp_path: Path) -> None:
    shape = Shape(window=64, pattern=[True, False, True, False])
    facts = facts_of(tmp_path, shape)
    assert facts.swa_layers == (True, False, True, False)
    estimated = estimate.estimate(facts, estimate.launch(model(context_size=4096)), {})
    assert estimated.parts["kv"] == kv_bytes(2, 4096, shape) + kv_bytes(2, 768, shape)


def test_a_window_llama_cpp_does_not_apply_is_counted_in_full(tmp_path: Path) -> None:
    facts = facts_of(tmp_path, Shape(arch="llama", window=64))
    assert facts.swa_layers == (False,) * 4


def test_moe_holds_every_expert_but_computes_with_the_active_ones(tmp_path: Path) -> None:
    shape = Shape(experts=8, experts_used=2)
    facts = facts_of(tmp_path, shape)
    assert facts.tensor_bytes == shape.tensor_bytes()
    assert (facts.expert_count, facts.expert_used_count) == (8, 2)
    run = estimate.launch(model(context_size=1024))
    dense = dataclasses.replace(facts, expert_count=0, feed_forward_length=2 * shape.ff)
    cells = estimate.kv_cells(facts, run)
    assert estimate.compute_buffer(facts, run, *cells) == estimate.compute_buffer(
        dense, run, *cells
    )
    assert estimate.estimate(facts, run, {}).parts["weights"] == shape.tensor_bytes()


def test_full_offload_leaves_embeddings_and_logits_in_host_memory(tmp_path: Path) -> None:
    facts = facts_of(tmp_path, LLAMA)
    run = estimate.launch(model(context_size=1024))
    estimated = estimate.estimate(facts, run, {"gpu0": 1.0})
    embeddings = 4 * LLAMA.vocab * LLAMA.embd
    assert estimated.by_device["cpu"] == embeddings + estimated.parts["output"]
    # Tied embeddings: the output layer is a second copy of token_embd, on the GPU.
    assert estimated.by_device["gpu0"] == (
        LLAMA.tensor_bytes() + estimated.parts["kv"] + estimated.parts["compute"]
    )


def test_partial_offload_splits_by_layer(tmp_path: Path) -> None:
    facts = facts_of(tmp_path, Shape(tied=False))
    per_layer = {
        il: sum(s for n, s in facts.tensors if n.startswith(f"blk.{il}.")) for il in range(4)
    }
    output = sum(s for n, s in facts.tensors if n.startswith("output"))
    run = estimate.launch(model(context_size=1024, gpu_layers=2))
    estimated = estimate.estimate(facts, run, {"gpu0": 1.0})
    # -ngl counts the output layer: 2 = the last repeating layer and the output.
    kv_layer = kv_bytes(1, 1024, LLAMA)
    assert (
        estimated.by_device["gpu0"] == per_layer[3] + output + kv_layer + estimated.parts["compute"]
    )
    assert estimated.total == sum(estimated.parts.values())


def test_gpu_part_splits_over_gpus_by_share(tmp_path: Path) -> None:
    facts = facts_of(tmp_path, LLAMA)
    run = estimate.launch(model(context_size=1024))
    one = estimate.estimate(facts, run, {"gpu0": 1.0})
    two = estimate.estimate(facts, run, {"gpu0": 3.0, "gpu1": 1.0})
    assert two.by_device["gpu0"] == pytest.approx(0.75 * one.by_device["gpu0"], abs=1)
    assert two.by_device["gpu1"] == pytest.approx(0.25 * one.by_device["gpu0"], abs=1)


def test_cpu_moe_keeps_experts_in_host_memory(tmp_path: Path) -> None:
    facts = facts_of(tmp_path, Shape(experts=8, experts_used=2))
    experts = sum(s for n, s in facts.tensors if "_exps" in n)
    on_gpu = estimate.estimate(facts, estimate.launch(model(context_size=1024)), {"gpu0": 1.0})
    cpu_moe = estimate.estimate(
        facts, estimate.launch(model(context_size=1024, args=["--cpu-moe"])), {"gpu0": 1.0}
    )
    assert cpu_moe.by_device["cpu"] - on_gpu.by_device["cpu"] == experts
    assert on_gpu.by_device["gpu0"] - cpu_moe.by_device["gpu0"] == experts


def test_launch_reads_args_env_and_settings() -> None:
    run = estimate.launch(
        model(
            context_size=8192,
            gpu_layers=20,
            env={"LLAMA_ARG_N_PARALLEL": "2", "LLAMA_ARG_CACHE_TYPE_K": "q8_0"},
            args=["--parallel=3", "-ub", "256", "--flash-attn", "off", "-kvu"],
        )
    )
    assert (run.context_size, run.gpu_layers, run.parallel) == (8192, 20, 3)
    assert (run.cache_type_k, run.cache_type_v, run.ubatch) == ("q8_0", "f16", 256)
    assert run.kv_unified and not run.flash_attn
    assert estimate.launch(model(args=["-ngl", "all"])).gpu_layers is None


def test_declared_beats_measured_beats_estimated() -> None:
    estimated = Footprint(by_device={"cpu": 300}, source=Source.ESTIMATED)
    measured = {"cpu": 310, "gpu0": 5}
    assert estimate.choose(100, measured, estimated, ("gpu0", "cpu")) == Footprint(
        {"gpu0": 100}, Source.DECLARED
    )
    assert estimate.choose(None, measured, estimated) == Footprint(measured, Source.MEASURED)
    assert estimate.choose(None, None, estimated) is estimated
    assert estimate.choose(None, None, None) is None


def test_the_demo_model_matches_what_llama_server_allocates() -> None:
    # Figures llama-server (this build) logged for the demo at -c 4096 on the CPU:
    # CPU_Mapped model buffer 235.16 MiB, KV 12.00 + 37.50 MiB, output 4.00 MiB.
    facts = gguf_facts.read(demo_model_file())
    assert facts.architecture == "gemma3"
    assert [il for il, swa in enumerate(facts.swa_layers) if not swa] == [5, 11, 17]
    estimated = estimate.estimate(facts, estimate.launch(model(context_size=4096)), {})
    assert round(estimated.parts["weights"] / MIB, 2) == 235.16
    assert estimated.parts["kv"] == int(49.5 * MIB)
    assert estimated.parts["output"] == 4 * MIB


def test_the_header_walk_agrees_with_gguf_reader(tmp_path: Path) -> None:
    from gguf import GGUFReader

    path = write(tmp_path / "moe.gguf", Shape(arch="gemma3", window=64, experts=4, experts_used=2))
    reader = GGUFReader(path)
    assert gguf_facts.read(path).tensors == tuple((t.name, int(t.n_bytes)) for t in reader.tensors)
    assert (
        gguf_facts.read(path).sliding_window
        == reader.fields["gemma3.attention.sliding_window"].contents()
    )


def test_a_file_that_is_not_gguf_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_text("not a model", encoding="utf-8")
    with pytest.raises(gguf_facts.GGUFError, match=r"notes\.gguf: not a readable GGUF file"):
        gguf_facts.read(path)
