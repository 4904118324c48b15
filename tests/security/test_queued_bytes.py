"""Bodies of requests waiting for a busy model are bounded in total (``max_queued_bytes``),
over all models: past it a 503 with Retry-After, in the shape of the path's API (issue 12, #7).
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from tests.support import CorralServer, fake_cmd, post, wait_until

CONFIG = {
    "max_queued_bytes": 1024 * 1024,
    "models": [
        {
            "name": "m",
            "cmd": fake_cmd("m", "--tokens", "20", "--token-delay", "0.2"),
            "concurrency": 1,
        },
    ],
}


def chat(padding: int) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "x" * padding}]}


def test_queued_bodies_past_max_queued_bytes_get_503(tmp_path: Path) -> None:
    with CorralServer(CONFIG, tmp_path) as server:
        answers: list[int] = []

        def send(padding: int) -> None:
            answers.append(post(server, "/v1/chat/completions", chat(padding)).status_code)

        def model() -> dict[str, int]:
            running = server.running()
            return running[0] if running else {"in_flight": 0, "queued": 0}

        busy = threading.Thread(target=send, args=(10,))
        busy.start()
        wait_until(lambda: model()["in_flight"] == 1, 30, "the model to be busy")
        queued = threading.Thread(target=send, args=(600_000,))
        queued.start()
        wait_until(lambda: model()["queued"] == 1, 10, "a request to queue")

        # 600 kB waiting already: another 600 kB would pass 1 MiB.
        refused = post(server, "/v1/chat/completions", chat(600_000))
        assert refused.status_code == 503
        assert "max_queued_bytes" in refused.json()["error"]["message"]
        assert refused.headers["retry-after"] == "1"
        ollama = httpx.post(
            f"{server.url}/api/chat",
            json={**chat(600_000), "stream": False},
            timeout=30,
        )
        assert ollama.status_code == 503
        assert "max_queued_bytes" in ollama.json()["error"]  # Ollama's shape: a string

        busy.join(30)
        queued.join(30)
        assert answers == [200, 200]
        # Given back once leased: a big body is let in again.
        assert post(server, "/v1/chat/completions", chat(600_000)).status_code == 200
