"""Micro-benchmark: what ``http.model_field.ModelField`` costs per relayed chunk.

Run: ``.venv/bin/python -m bench.model_field``. One chunk is one llama-server SSE event of a
streamed chat answer (about 300 bytes, as it flushes one per token), with and without a
``model`` field, against the relay's untouched pass-through. Then what a routed chat answer
passes through (``api.openai.answer_transform``): ``scrub`` alone, as for a client that asks
by the name the child was started with (``--alias``), against ``ModelField`` and ``scrub``
chained, as for an alias.
"""

from __future__ import annotations

import timeit
from pathlib import Path

from corral.supervisor.api.openai import answer_transform
from corral.supervisor.http.model_field import ModelField

PATH = "/var/lib/corral/models/gemma-3-270m-q4_k_m.gguf"
EVENT = (
    'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" word"}}],'
    f'"created":1764576000,"id":"chatcmpl-Xy1","model":"{PATH}",'
    '"system_fingerprint":"b6000-abcdef12","object":"chat.completion.chunk"}\n\n'
).encode()
PLAIN = EVENT.replace(b'"model"', b'"other"')
#: The same event from a child started with ``--alias gemma-3-270m``.
NAMED = EVENT.replace(PATH.encode(), b"gemma-3-270m")
ROUNDS = 200_000


def per_chunk_ns(chunk: bytes) -> float:
    transform = ModelField("gemma-3-270m")
    feed = transform.feed
    best = min(timeit.repeat(lambda: feed(chunk), number=ROUNDS, repeat=5))
    return best / ROUNDS * 1e9


def routed_ns(asked: str) -> float:
    """A chunk of a child started as ``gemma-3-270m`` through what a routed chat answer
    to a client that asked for ``asked`` passes through."""
    transform = answer_transform("/v1/chat/completions", asked, "gemma-3-270m", Path(PATH))
    assert transform is not None
    feed = transform.feed
    best = min(timeit.repeat(lambda: feed(NAMED), number=ROUNDS, repeat=5))
    return best / ROUNDS * 1e9


def main() -> None:
    baseline = min(timeit.repeat(lambda: EVENT, number=ROUNDS, repeat=5)) / ROUNDS * 1e9
    print(f"chunk of {len(EVENT)} bytes")
    print(f"pass-through (a call, nothing done): {baseline:7.0f} ns")
    print(f"ModelField, chunk with model:        {per_chunk_ns(EVENT):7.0f} ns")
    print(f"ModelField, chunk without model:     {per_chunk_ns(PLAIN):7.0f} ns")
    alone, both = routed_ns("gemma-3-270m"), routed_ns("gemma")
    print(f"routed chunk of {len(NAMED)} bytes, as a child with --alias sends it")
    print(f"asked by the name: scrub alone       {alone:7.0f} ns")
    print(f"asked by an alias: ModelField, scrub {both:7.0f} ns")
    print(f"saved per chunk:                     {both - alone:7.0f} ns")


if __name__ == "__main__":
    main()
