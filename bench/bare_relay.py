"""The floor under corral's relay: uvicorn with a raw ASGI app that forwards every POST to one
port through corral's own child client (``http.client``), and nothing else (no routes,
middleware, lease, transforms or metrics). ``bench.profile`` measures corral against it, so
the cost of corral's own layers is told apart from what any Python relay on uvicorn pays.

Run: ``python -m bench.bare_relay LISTEN_PORT CHILD_PORT``; on granian (the server issue 30
asked to weigh against uvicorn), ``BARE_RELAY_CHILD=CHILD_PORT granian --interface asgi
--loop uvloop --port LISTEN_PORT bench.bare_relay:app`` serves the same app.
"""

from __future__ import annotations

import os
import sys

import uvicorn
from starlette.types import Receive, Scope, Send

from corral.supervisor.http import client_pool
from corral.supervisor.http.headers import request_head

_pool = client_pool.Pool()
_HOP = frozenset({b"content-length", b"transfer-encoding", b"keep-alive", b"connection"})


def app_for(child: int) -> object:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        json = [(b"content-type", b"application/json")]
        head = request_head(scope["method"], scope["path"], child, json, len(body))
        answer = await _pool.request(scope["method"], child, head, body)
        headers = [(k, v) for k, v in answer.headers if k not in _HOP]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        async for piece in answer.iter_any():
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        answer.release()

    return app


#: The app for a server that imports it by name (granian), in front of env BARE_RELAY_CHILD.
app = app_for(int(os.environ.get("BARE_RELAY_CHILD", "0")))

if __name__ == "__main__":
    listen, child = int(sys.argv[1]), int(sys.argv[2])
    uvicorn.run(
        app_for(child),  # type: ignore[arg-type]
        host="127.0.0.1",
        port=listen,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
