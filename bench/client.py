"""The benchmark's HTTP clients: one kept-alive connection for timed sequential requests, and
many concurrent clients for throughput.

Owns sending a completion and timing it (whole answer, or first and last streamed token) and
the concurrent load generator. The sequential client is ``http.client``: the cheapest client
in the standard library, so that what is timed is the server, not the client. It does not
know which contender it talks to (see ``contenders``).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

PROMPT = "The capital of France is"
STORY = "Once upon a time, in a small village by the sea,"


def one_token(model: str) -> dict[str, Any]:
    """A one-token completion; ``cache_prompt`` left at llama-server's default."""
    return {"model": model, "prompt": PROMPT, "max_tokens": 1, "temperature": 0}


def long_stream(model: str, tokens: int) -> dict[str, Any]:
    """A streamed completion of exactly ``tokens`` tokens (end-of-text ignored), reproducible."""
    return {
        "model": model,
        "prompt": STORY,
        "max_tokens": tokens,
        "ignore_eos": True,
        "temperature": 0,
        "seed": 42,
        "stream": True,
    }


class RequestFailed(RuntimeError):
    pass


_STALE = (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected)


@dataclass
class Streamed:
    first: float  # seconds from sending to the first token
    total: float  # seconds from sending to the end of the stream
    tokens: int


class Conn:
    """One kept-alive HTTP/1.1 connection to ``base`` (``http://host:port``)."""

    def __init__(self, base: str, timeout: float = 300.0, key: str | None = None) -> None:
        parts = urlsplit(base)
        self.base = base
        self._auth = {"Authorization": f"Bearer {key}"} if key else {}
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._timeout = timeout
        self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        self.retries = 0  # stale kept-alive connections replaced; see ``call``

    def reset(self) -> None:
        """A fresh connection: the server may have closed an idle kept-alive one."""
        self._conn.close()
        self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def close(self) -> None:
        self._conn.close()

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> None:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self._conn.request(method, path, body=data, headers={**headers, **self._auth})

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """Send a request and read the whole answer; (status, body).

        A kept-alive connection the server closed while it sat idle fails at once, before
        the server saw anything; that one case is retried on a fresh connection, as
        browsers and urllib3 do.
        """
        for attempt in (1, 2):
            try:
                self._send(method, path, body)
                response = self._conn.getresponse()
                return response.status, response.read()
            except _STALE:
                self.reset()
                if attempt == 2:
                    raise
                self.retries += 1
            except (OSError, http.client.HTTPException):
                self.reset()
                raise
        raise AssertionError("unreachable")

    def complete(self, body: dict[str, Any], path: str = "/v1/completions") -> float:
        """Seconds from sending ``body`` to the whole answer; raises unless it is a 200."""
        start = time.perf_counter()
        status, data = self.call("POST", path, body)
        elapsed = time.perf_counter() - start
        if status != 200:
            raise RequestFailed(f"POST {self.base}{path}: {status}: {data[:300]!r}")
        return elapsed

    def stream(self, body: dict[str, Any], path: str = "/v1/completions") -> Streamed:
        """Send a streamed completion; time its first token and its end, count its tokens."""
        start = time.perf_counter()
        first = 0.0
        tokens = 0
        try:
            self._send("POST", path, body)
            response = self._conn.getresponse()
            if response.status != 200:
                raise RequestFailed(
                    f"POST {self.base}{path}: {response.status}: {response.read()!r}"
                )
            while line := response.readline():
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                if _token_text(line[6:]):
                    tokens += 1
                    first = first or time.perf_counter() - start
            response.read()
        except (OSError, http.client.HTTPException):
            self.reset()
            raise
        return Streamed(first, time.perf_counter() - start, tokens)


def _token_text(event: bytes) -> str:
    choices = json.loads(event).get("choices") or [{}]
    text = choices[0].get("text") or (choices[0].get("delta") or {}).get("content") or ""
    return str(text)


@dataclass
class Load:
    clients: int
    requests: int  # answered with 200
    errors: int  # anything else, connection failures included
    seconds: float
    first_error: str = ""

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def _client(url: str, body: dict[str, Any], count: int, load: Load) -> None:
    # Its own session and connection, closed when done, as a separate program's would be:
    # a connection left open and idle would hold one of llama-server's few HTTP threads
    # until its keep-alive timeout, starving the other clients.
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for _ in range(count):
            try:
                async with session.post(url, json=body) as response:
                    content = await response.read()
                    if response.status == 200:
                        load.requests += 1
                        continue
                    note = f"{response.status}: {content[:200]!r}"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                note = f"{type(exc).__name__}: {exc}"
            load.errors += 1
            load.first_error = load.first_error or note


async def _hammer(url: str, body: dict[str, Any], clients: int, each: int) -> Load:
    load = Load(clients, 0, 0, 0.0)
    start = time.perf_counter()
    await asyncio.gather(*(_client(url, body, each, load) for _ in range(clients)))
    load.seconds = time.perf_counter() - start
    return load


def hammer(url: str, body: dict[str, Any], clients: int, each: int) -> Load:
    """``clients`` concurrent clients, each sending ``each`` requests back to back."""
    return asyncio.run(_hammer(url, body, clients, each))
