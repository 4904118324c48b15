"""Socket activation with the real llama-server: the first request starts corral and the
demo model, and once idle_exit passes nothing is left running."""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil
import pytest

from tests.supervisor.activation import Activated, needs_activate
from tests.support import demo_model, pids_gone

pytestmark = [pytest.mark.e2e, needs_activate]


def test_the_first_request_starts_corral_and_no_llama_server_outlives_it(
    tmp_path: Path, models_dir: Path, llama_server: str
) -> None:
    config = {
        "models_path": str(models_dir),
        "llama_server": llama_server,
        "idle_exit": 1,
        "models": [demo_model(ttl=1)],
    }
    with Activated(config, tmp_path, ("127.0.0.1", "::1")) as corral:
        assert corral.proc.poll() is None
        body = {
            "model": "gemma-3-270m",
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 8,
        }
        answer = httpx.post(f"{corral.url}/v1/chat/completions", json=body, timeout=300)
        assert answer.status_code == 200, corral.log()
        assert answer.json()["choices"][0]["message"]["content"].strip()
        children = [p.pid for p in psutil.Process(corral.proc.pid).children(recursive=True)]
        assert children, "no llama-server ran"
        assert corral.wait_exit(120) == 0, corral.log()
    assert pids_gone(children)
    assert "idle for 1 s: no model loaded, no connection (idle_exit); exiting" in corral.log()
