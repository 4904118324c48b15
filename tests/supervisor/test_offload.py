"""Where a loaded model runs, read from llama-server's own lines (``offload.read``): the
three builds the fake plays (tests/fake_llama_server.py, wording copied from llama.cpp), and
the lines this repository's real CPU build logs; when a child logs them (``watched``); and a
pool's load that reads them (fake children)."""

from __future__ import annotations

from typing import Any

import pytest

from corral.generator.loader import validate
from corral.generator.model_settings import ModelConfig
from corral.supervisor.runtime import views
from corral.supervisor.runtime.memory import devices, offload
from tests import fake_llama_server
from tests.supervisor.fake_child import World

NO_GPU = "warning: no usable GPU found, --gpu-layers option will be ignored"
#: The real build's lines for the demo model with -ngl 99 (measured here): a build with RPC
#: counts 19/19 layers "offloaded", then allocates every buffer on the CPU.
REAL_CPU_BUILD = [
    "0.00.862.863 I load_tensors: offloaded 19/19 layers to GPU",
    "0.00.862.869 I load_tensors:   CPU_Mapped model buffer size =   235.16 MiB",
    "0.00.862.870 I load_tensors:   CPU_REPACK model buffer size =    12.66 MiB",
    "0.00.879.433 I llama_context:        CPU  output buffer size =     4.00 MiB",
    "0.00.879.483 I llama_kv_cache:        CPU KV buffer size =     6.00 MiB",
    "0.00.898.086 I sched_reserve:        CPU compute buffer size =    22.28 MiB",
]


def model(**settings: object) -> ModelConfig:
    return ModelConfig.model_validate({"name": "m", "path": "/m.gguf", **settings})


def lines(build: str, ngl: str | None = "99") -> list[str]:
    found = fake_llama_server.load_lines(build, ngl)
    return [NO_GPU, *found] if build == "cpu" and ngl is not None else found


def test_a_cpu_build_asked_for_the_gpu_runs_on_the_cpu_and_says_why() -> None:
    ran = offload.read(model(gpu_layers=99), lines("cpu"), ["gpu0"])
    assert ran is not None
    assert ran.devices == ["cpu"] and ran.layers is None
    assert ran.warning is not None
    assert ran.warning.startswith("m: asked for gpu_layers: 99; it runs on the CPU")
    assert "no usable GPU found" in ran.warning and "llama_server" in ran.warning


def test_a_cuda_build_that_offloads_everything_runs_on_the_gpu_without_a_warning() -> None:
    ran = offload.read(model(gpu_layers=99), lines("cuda"), ["gpu0"])
    assert ran is not None
    assert ran.devices == ["gpu0"] and ran.layers == (19, 19) and ran.warning is None
    assert ran.by_device["gpu0"] > ran.by_device["cpu"] > 0  # token embeddings stay on the CPU


def test_a_partial_offload_runs_on_both_and_names_the_likely_reason() -> None:
    ran = offload.read(model(gpu_layers=99), lines("cuda-partial"), ["gpu0"])
    assert ran is not None
    assert ran.devices == ["gpu0", "cpu"] and ran.layers == (10, 19)
    assert ran.warning is not None and "10/19 layers run on gpu0" in ran.warning
    assert "free GPU memory" in ran.warning


def test_fewer_layers_asked_for_are_no_warning() -> None:
    ran = offload.read(model(gpu_layers=10), lines("cuda", "10"), ["gpu0"])
    assert ran is not None and ran.devices == ["gpu0", "cpu"] and ran.warning is None


def test_a_gpu_the_machine_has_is_asked_for_by_default() -> None:
    ran = offload.read(model(), lines("cpu", None), ["gpu0"])
    assert ran is not None and ran.warning is not None
    assert ran.warning.startswith("m: asked for the GPU (gpu0); it runs on the CPU")


def test_the_cpu_asked_for_is_no_warning() -> None:
    ran = offload.read(model(gpu_layers=0), lines("cpu", "0"), ["gpu0"])
    assert ran is not None and ran.devices == ["cpu"] and ran.warning is None
    ran = offload.read(model(), lines("cpu", None), [])  # no GPU anywhere: nothing asked
    assert ran is not None and ran.warning is None


def test_layers_counted_as_offloaded_but_no_gpu_buffer_is_the_cpu() -> None:
    ran = offload.read(model(gpu_layers=99), REAL_CPU_BUILD, ["gpu0"])
    assert ran is not None and ran.devices == ["cpu"] and ran.layers == (19, 19)
    assert ran.warning is not None and "allocated no GPU buffer" in ran.warning


def test_layers_on_an_rpc_server_are_offloaded_too() -> None:
    measured = [  # this build with one ggml-rpc-server, -ngl 99 (measured here)
        "0.03.292.314 I load_tensors: offloaded 19/19 layers to GPU",
        "0.03.292.333 I load_tensors:   CPU_Mapped model buffer size =   170.00 MiB",
        "0.03.292.347 I load_tensors: RPC0[127.0.0.1:50177] model buffer size =   235.16 MiB",
        "0.04.851.098 I llama_kv_cache: RPC0[127.0.0.1:50177] KV buffer size =     3.00 MiB",
        "0.04.874.117 I sched_reserve:        CPU compute buffer size =     7.03 MiB",
    ]
    ran = offload.read(model(gpu_layers=99, rpc=["127.0.0.1:50177"]), measured, [])
    assert ran is not None and ran.devices == ["rpc:127.0.0.1:50177"] and ran.warning is None


def test_no_lines_say_nothing() -> None:
    assert offload.read(model(gpu_layers=99), [], ["gpu0"]) is None
    cmd = ModelConfig.model_validate({"name": "c", "cmd": ["srv", "{port}"]})
    assert offload.read(cmd, lines("cuda"), ["gpu0"]) is None


def test_where_a_gpu_is_in_play_the_child_logs_where_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(devices, "gpu_here", lambda: False)
    assert offload.watched(model(gpu_layers=99), devices_declared=False)
    assert offload.watched(model(gpu_layers=0), devices_declared=True)  # budgets learn sizes
    assert offload.watched(model(rpc=["10.0.0.2:50052"]), devices_declared=False)
    # Nothing asks for a GPU and there is none: 35 log lines a request instead of 7 for
    # nothing, so the child keeps llama-server's default verbosity.
    assert not offload.watched(model(), devices_declared=False)
    assert not offload.watched(model(gpu_layers=-1), devices_declared=False)
    monkeypatch.setattr(devices, "gpu_here", lambda: True)
    assert offload.watched(model(), devices_declared=False)  # llama-server's default uses it
    assert not offload.watched(model(gpu_layers=0), devices_declared=False)


async def test_a_load_with_no_gpu_in_play_runs_on_the_cpu_and_one_asked_onto_a_gpu_warns(
    make_pool: Any, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devices, "gpu_here", lambda: False)
    models = [{"name": "a", "path": "a.gguf"}, {"name": "b", "path": "b.gguf", "gpu_layers": 99}]
    cfg = validate({"models": models})
    world.buffer_lines["b"] = lines("cpu")
    pool = make_pool(cfg)
    async with pool.lease("a"):
        assert views.running(pool)[0]["runs_on"] == ["cpu"]
        assert views.running(pool)[0]["warning"] is None
    async with pool.lease("b"):
        shown = next(m for m in views.running(pool) if m["model"] == "b")
    assert shown["runs_on"] == ["cpu"] and "no usable GPU found" in shown["warning"]
    warned = [e for e in pool.events.history() if e["kind"] == "warning"]
    assert [(e["model"], e["text"]) for e in warned] == [("b", shown["warning"])]
