"""Measured memory: llama-server's buffer-size lines, and the file that keeps them."""

from __future__ import annotations

import json
from pathlib import Path

from corral.supervisor.runtime.memory import learned

MIB = 1024**2

# Lines as this build's llama-server printed them loading the demo model on the CPU
# (-c 4096, --log-verbosity 4), with their timestamps and padding.
CPU_LOG = """\
0.02.337.499 I load_tensors:   CPU_Mapped model buffer size =   235.16 MiB
0.02.337.519 I load_tensors:   CPU_REPACK model buffer size =    12.66 MiB
0.02.375.320 I llama_context:        CPU  output buffer size =     4.00 MiB
0.02.375.463 I llama_kv_cache:        CPU KV buffer size =    12.00 MiB
0.02.388.727 I llama_kv_cache: size =   12.00 MiB (  4096 cells,   3 layers,  4/1 seqs), K (f16):    6.00 MiB, V (f16):    6.00 MiB
0.02.388.891 I llama_kv_cache:        CPU KV buffer size =    37.50 MiB
0.02.459.674 I sched_reserve:        CPU compute buffer size =    24.78 MiB
0.09.189.809 I srv  llama_server: listening on http://127.0.0.1:18555
""".splitlines()  # noqa: E501

# A CUDA load as llama.cpp logs it (src/llama-model.cpp, llama-kv-cache.cpp, llama-context.cpp).
CUDA_LOG = """\
load_tensors: offloaded 29/29 layers to GPU
load_tensors:        CUDA0 model buffer size =  3047.87 MiB
load_tensors:   CPU_Mapped model buffer size =   315.30 MiB
llama_context:  CUDA_Host  output buffer size =     0.58 MiB
llama_kv_cache:      CUDA0 KV buffer size =   448.00 MiB
sched_reserve:      CUDA0 compute buffer size =   300.75 MiB
sched_reserve:  CUDA_Host compute buffer size =    15.01 MiB
""".splitlines()


def test_cpu_buffers_sum_without_the_repacked_copy() -> None:
    found = learned.buffers(CPU_LOG)
    assert found == {
        "CPU_Mapped": int(235.16 * MIB),
        "CPU_REPACK": int(12.66 * MIB),
        "CPU": int(4 * MIB) + int(12 * MIB) + int(37.5 * MIB) + int(24.78 * MIB),
    }
    # Mapped pages of repacked tensors are page cache: the copy is not counted twice.
    assert learned.by_device(found) == {"cpu": found["CPU_Mapped"] + found["CPU"]}


def test_gpu_buffers_land_on_the_gpu_the_child_sees() -> None:
    found = learned.buffers(CUDA_LOG)
    host = int(315.30 * MIB) + int(0.58 * MIB) + int(15.01 * MIB)
    gpu = int(3047.87 * MIB) + int(448 * MIB) + int(300.75 * MIB)
    assert learned.by_device(found) == {"gpu0": gpu, "cpu": host}
    # CUDA_VISIBLE_DEVICES=1: the child's CUDA0 is corral's gpu1.
    assert learned.by_device(found, ["gpu1"]) == {"gpu1": gpu, "cpu": host}


def test_a_log_without_buffer_lines_measures_nothing() -> None:
    assert learned.buffers(["srv  llama_server: listening on http://127.0.0.1:1"]) == {}


def test_measurements_survive_a_restart(tmp_path: Path) -> None:
    key = learned.launch_id("gemma", ("llama-server", "g.gguf", 4096), 253_000_000)
    learned.Measurements(tmp_path).put(key, {"cpu": 300 * MIB})
    assert learned.Measurements(tmp_path).get(key) == {"cpu": 300 * MIB}
    data = json.loads((tmp_path / learned.FILE_NAME).read_text(encoding="utf-8"))
    assert data["models"][key] == {"cpu": 300 * MIB}


def test_another_launch_of_the_same_model_is_measured_apart() -> None:
    a = learned.launch_id("gemma", ("llama-server", "g.gguf", 4096), 1)
    assert a != learned.launch_id("gemma", ("llama-server", "g.gguf", 8192), 1)
    assert a != learned.launch_id("gemma", ("llama-server", "g.gguf", 4096), 2)
    assert a.startswith("gemma@")


def test_a_damaged_file_is_ignored_and_replaced(tmp_path: Path) -> None:
    (tmp_path / learned.FILE_NAME).write_text("{not json", encoding="utf-8")
    store = learned.Measurements(tmp_path)
    assert store.get("x") is None
    store.put("x", {"cpu": 1})
    assert learned.Measurements(tmp_path).get("x") == {"cpu": 1}


def test_a_state_dir_that_cannot_be_written_loses_only_the_figure(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    store = learned.Measurements(blocker / "state")  # a folder under a file: mkdir fails
    store.put("x", {"cpu": 1})
    assert store.get("x") == {"cpu": 1}


def test_state_dir_from_config_then_systemd_then_xdg() -> None:
    assert learned.state_dir(Path("/etc/x"), {"STATE_DIRECTORY": "/var/lib/c"}) == Path("/etc/x")
    env = {"STATE_DIRECTORY": "/var/lib/corral:/var/lib/other", "HOME": "/home/u"}
    assert learned.state_dir(None, env) == Path("/var/lib/corral")
    assert learned.state_dir(None, {"HOME": "/home/u"}) == Path("/home/u/.local/state/corral")
    assert learned.state_dir(None, {"XDG_STATE_HOME": "/s"}) == Path("/s/corral")


def test_out_of_memory_is_recognised_in_a_failed_childs_log() -> None:
    assert learned.out_of_memory(
        [
            "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 9000.00 MiB on device 0: "
            "cudaMalloc failed: out of memory",
            "llama_model_load: error loading model: unable to allocate CUDA0 buffer",
        ]
    )
    assert learned.out_of_memory(["llama_init_from_model: failed to allocate KV cache"])
    assert not learned.out_of_memory(["error loading model: tensor 'x' not found"])
