"""Micro-benchmark: what ``http.model_field.ModelField`` costs per relayed chunk.

Run: ``.venv/bin/python -m bench.model_field``. One chunk is one llama-server SSE event of a
streamed chat answer (about 300 bytes, as it flushes one per token), with and without a
``model`` field, against the relay's untouched pass-through.
"""

from __future__ import annotations

import timeit

from corral.supervisor.http.model_field import ModelField

PATH = "/var/lib/corral/models/gemma-3-270m-q4_k_m.gguf"
EVENT = (
    'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" word"}}],'
    f'"created":1764576000,"id":"chatcmpl-Xy1","model":"{PATH}",'
    '"system_fingerprint":"b6000-abcdef12","object":"chat.completion.chunk"}\n\n'
).encode()
PLAIN = EVENT.replace(b'"model"', b'"other"')
ROUNDS = 200_000


def per_chunk_ns(chunk: bytes) -> float:
    transform = ModelField("gemma-3-270m")
    feed = transform.feed
    best = min(timeit.repeat(lambda: feed(chunk), number=ROUNDS, repeat=5))
    return best / ROUNDS * 1e9


def main() -> None:
    baseline = min(timeit.repeat(lambda: EVENT, number=ROUNDS, repeat=5)) / ROUNDS * 1e9
    print(f"chunk of {len(EVENT)} bytes")
    print(f"pass-through (a call, nothing done): {baseline:7.0f} ns")
    print(f"ModelField, chunk with model:        {per_chunk_ns(EVENT):7.0f} ns")
    print(f"ModelField, chunk without model:     {per_chunk_ns(PLAIN):7.0f} ns")


if __name__ == "__main__":
    main()
