"""Following a running corral's server-sent events from a test: a thread that keeps every
event it reads, and the parser for Prometheus' text the tests check figures with."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import wait_until


class Follower:
    """Reads ``path`` (an SSE stream) in a thread; ``events`` holds what came, parsed."""

    def __init__(self, url: str, path: str = "/events", headers: dict[str, str] | None = None):
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self._url, self._path, self._headers = url, path, headers or {}
        self._open = threading.Event()
        self._done = threading.Event()
        self._answer: httpx.Response | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> Follower:
        self._thread.start()
        wait_until(self._open.is_set, 10, f"{self._path} to open")
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._answer is not None:
            self._answer.close()  # wakes the read in the thread, which then closes the rest
        self._thread.join(10)

    def _read(self) -> None:
        url, headers = self._url + self._path, self._headers
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(5, read=None)) as client,
                client.stream("GET", url, headers=headers) as answer,
            ):
                assert answer.status_code == 200, answer.status_code
                self._answer = answer
                self._open.set()
                for line in answer.iter_lines():
                    if line.startswith("data: "):
                        data = line[6:]
                        self.lines.append(data)
                        if data.startswith("{"):
                            self.events.append(json.loads(data))
        except (httpx.HTTPError, httpx.StreamError, OSError, RuntimeError):
            if not self._done.is_set():
                raise

    def kinds(self, model: str) -> list[str]:
        """``model``'s events, but queue changes and progress (one a second of a load)."""
        skipped = ("queue", "progress")
        return [
            e["kind"] for e in self.events if e.get("model") == model and e["kind"] not in skipped
        ]


def metrics(
    url: str, headers: dict[str, str] | None = None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics``, by name and labels."""
    answer = httpx.get(f"{url}/metrics", headers=headers or {}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def sample(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return found.get((name, frozenset(labels.items())))
