"""Budgets per device: declared, or detected (NVML through a fake, /proc/meminfo's text)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from corral.generator.model_settings import ModelConfig
from corral.generator.settings import Config
from corral.supervisor.runtime.memory import devices

GIB = 1024**3
MIB = 1024**2

MEMINFO = """\
MemTotal:       24683800 kB
MemFree:         1234567 kB
MemAvailable:   16777216 kB
Buffers:          123456 kB
"""


@dataclass
class _Memory:
    total: int
    free: int
    used: int


class FakeNvml:
    """The part of pynvml that devices uses; ``fail`` plays a machine without a driver."""

    class NVMLError(Exception):
        pass

    def __init__(self, free: list[int], fail: bool = False) -> None:
        self.free = free
        self.fail = fail
        self.shut = False

    def nvmlInit(self) -> None:
        if self.fail:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.free)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> _Memory:
        return _Memory(total=24 * GIB, free=self.free[handle], used=24 * GIB - self.free[handle])

    def nvmlShutdown(self) -> None:
        self.shut = True


def test_meminfo_gives_the_available_memory() -> None:
    assert devices.available_memory(MEMINFO) == 16777216 * 1024
    assert devices.available_memory("MemTotal: 1000 kB\n") == 1000 * 1024
    assert devices.available_memory("") is None


def test_nvml_gives_each_gpus_free_memory() -> None:
    nvml = FakeNvml([23 * GIB, 11 * GIB])
    assert devices.detect(MEMINFO, nvml) == {
        "cpu": 16777216 * 1024,
        "gpu0": 23 * GIB,
        "gpu1": 11 * GIB,
    }
    assert nvml.shut


def test_without_a_driver_or_pynvml_there_is_no_gpu_budget() -> None:
    assert devices.gpu_memory(FakeNvml([GIB], fail=True)) == {}
    assert devices.gpu_memory(None) == {}


def test_without_pynvml_installed_detection_reads_only_the_cpu() -> None:
    try:
        import pynvml  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        assert set(devices.detect(MEMINFO)) == {"cpu"}
    else:
        pytest.skip("pynvml is installed here; the absent path is covered by gpu_memory(None)")


def test_declared_budgets_win_and_the_margin_comes_off() -> None:
    config = Config.model_validate(
        {"devices": {"gpu0": {"memory": "24GiB"}}, "memory_margin": "1GiB"}
    )
    budgets = devices.budgets(config, {"gpu0": 20 * GIB, "cpu": 16 * GIB})
    assert budgets == {"cpu": 15 * GIB, "gpu0": 23 * GIB}
    tiny = Config.model_validate({"devices": {"cpu": {"memory": "100MiB"}}})
    assert devices.budgets(tiny, {}) == {"cpu": 0}  # the 512 MiB margin exceeds it


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, {"gpu0": 0.5, "gpu1": 0.5}),
        ({"gpu_layers": 0}, {}),
        ({"env": {"CUDA_VISIBLE_DEVICES": "1"}}, {"gpu1": 1.0}),
        ({"env": {"CUDA_VISIBLE_DEVICES": ""}}, {}),
        ({"env": {"CUDA_VISIBLE_DEVICES": "-1"}}, {}),
        ({"env": {"CUDA_VISIBLE_DEVICES": "GPU-5f3c"}}, {"gpu0": 0.5, "gpu1": 0.5}),
        ({"env": {"HIP_VISIBLE_DEVICES": "0"}}, {"gpu0": 1.0}),
    ],
)
def test_which_gpus_a_model_uses(settings: dict[str, object], expected: dict[str, float]) -> None:
    model = ModelConfig.model_validate({"name": "m", "path": "m.gguf", **settings})
    assert devices.gpu_shares(model, {"cpu": GIB, "gpu0": 8 * GIB, "gpu1": 8 * GIB}) == expected


def test_a_split_follows_the_budgets() -> None:
    model = ModelConfig.model_validate({"name": "m", "path": "m.gguf"})
    assert devices.gpu_shares(model, {"gpu0": 24 * GIB, "gpu1": 8 * GIB}) == {
        "gpu0": 0.75,
        "gpu1": 0.25,
    }
    assert devices.gpu_shares(model, {"cpu": GIB}) == {}
