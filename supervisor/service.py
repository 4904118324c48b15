"""The running service's shared parts, and the one way a request reaches a child.

Owns what every route needs: the pool, the upstream client, the config (and how to load it
again on SIGHUP), and ``exchange``: lease the model, forward, give the lease back when the
answer has been sent or the client has gone. Routes look it up with ``Service.of(request)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from corral.generator.problems import ConfigError
from corral.generator.settings import Config
from corral.supervisor.http.auth import Keys
from corral.supervisor.http.proxy import Upstream, until_disconnect
from corral.supervisor.runtime.pool import Pool

log = logging.getLogger("corral")


class Service:
    def __init__(self, config: Config, reload_config: Callable[[], Config], owner: str) -> None:
        self.config = config
        self.reload_config = reload_config
        self.pool = Pool(config, owner)
        self.upstream = Upstream()
        self.keys = Keys.from_config(config)
        self.started_at = time.time()

    @staticmethod
    def of(request: Request) -> Service:
        service: Service = request.app.state.service
        return service

    async def exchange(
        self,
        request: Request,
        model: str,
        path: str,
        body: bytes,
        *,
        stream: bool,
        on_lease: Callable[[], None] | None = None,
    ) -> Response:
        """Send one request to ``model``'s child (starting it if needed) and relay the answer.

        ``on_lease`` runs once the model is ready and the request holds its place on it. A
        client that hangs up before the answer starts (while the model loads, while it waits
        in the queue, or while a hung child says nothing) gives its place back at once:
        otherwise a swap would wait forever for a request nobody waits for.
        """
        work = asyncio.ensure_future(
            self._exchange(request, model, path, body, stream=stream, on_lease=on_lease)
        )
        gone = asyncio.ensure_future(until_disconnect(request.receive))
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            gone.cancel()
            return work.result()
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
        log.info("request cancelled: model %s: client hung up before the answer", model)
        return Response(status_code=499)  # nobody reads it; nginx's "client closed request"

    async def _exchange(
        self,
        request: Request,
        model: str,
        path: str,
        body: bytes,
        *,
        stream: bool,
        on_lease: Callable[[], None] | None,
    ) -> Response:
        stack = contextlib.AsyncExitStack()
        lease = await stack.enter_async_context(self.pool.lease(model))
        if on_lease is not None:
            on_lease()
        url = lease.base_url + path
        if not stream:
            async with stack:
                return await self.upstream.fetch(
                    request.method, url, request.headers, body, model=model
                )
        try:
            # The lease is given back by the relay, once the last chunk is sent.
            return await self.upstream.stream(
                request.method, url, request.headers, body, model=model, on_done=stack.aclose
            )
        except BaseException:
            await stack.aclose()
            raise

    async def reload(self) -> None:
        """Load the config again and apply it; a bad config is logged and the old one kept."""
        try:
            config = self.reload_config()
            keys = Keys.from_config(config)
        except ConfigError as exc:
            log.error("reload failed, keeping the running config: %s", exc)
            return
        self.keys = keys
        await self.pool.reload(config)
        self.config = config
