"""The running service's shared parts, and the one way a request reaches a child.

Owns what every route needs: the pool, the upstream client, the config (and how to load it
again on SIGHUP), and ``exchange``, the one path from a route to a child: lease the model,
watch for the client hanging up, talk to the child, give the lease back when the answer has
been sent or the client has gone. It counts what each exchange did (``metrics``: its status,
and llama-server's timings read as the answer passes). Routes look the service up with
``Service.of(request)``.
It does not read requests (``api``) or decide who runs (``runtime.scheduler``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response

from corral.generator.problems import ConfigError
from corral.generator.settings import Config
from corral.supervisor.errors import ClientGone, QueueBytesFull, ServeError
from corral.supervisor.http import proxy, timings
from corral.supervisor.http.auth import Keys
from corral.supervisor.http.peers import forward
from corral.supervisor.http.peers.table import PeerTable, Route
from corral.supervisor.http.timings import Timings, WatchTimings
from corral.supervisor.http.transform import Transform, chain
from corral.supervisor.runtime import scheduler
from corral.supervisor.runtime.entries import Lease
from corral.supervisor.runtime.metrics import Metrics
from corral.supervisor.runtime.pool import Pool

log = logging.getLogger("corral")


class Exchange:
    """What a route holds while it talks to a model: the upstream, and the model's child
    (its lease) or the peer that runs it (``peer``; no lease: the peer schedules its own).

    ``model`` is the name the other end knows the model by: the entry's, or the peer's.
    """

    def __init__(
        self,
        upstream: proxy.Upstream,
        stack: contextlib.AsyncExitStack,
        lease: Lease | None = None,
        peer: Route | None = None,
        on_timings: Callable[[Timings], None] | None = None,
    ) -> None:
        assert (lease is None) != (peer is None)
        self.lease = lease
        self.peer = peer
        self.status: int | None = None  # the answer's, once it is in
        self._upstream = upstream
        self._stack = stack
        self._on_timings = on_timings

    @property
    def model(self) -> str:
        return self.peer.model if self.peer is not None else self._leased().model.name

    def _leased(self) -> Lease:
        assert self.lease is not None
        return self.lease

    async def open(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> proxy.Answer:
        """Send the request to the child or peer; the answer's status and headers are in."""
        upstream = await self._open(method, path, headers, body)
        self.status = upstream.status
        return upstream

    async def _open(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> proxy.Answer:
        if self.peer is None:
            lease = self._leased()
            # The child demands its own key, which only corral knows: it replaces the client's.
            return await self._upstream.to_child(
                method,
                lease.port,
                path,
                headers,
                body,
                model=self.model,
                auth=None if lease.api_key is None else f"Bearer {lease.api_key}",
            )
        # The client's key was for this corral: the peer gets its own.
        return await forward.send(self._upstream, self.peer, method, path, headers, body)

    async def read(self, upstream: proxy.Answer) -> bytes:
        content = await proxy.read(upstream, self.model)
        if self._on_timings is not None:
            found = timings.parse(content[-timings.TAIL :])  # a whole answer: its end
            if found is not None:
                self._on_timings(found)
        return content

    async def fetch(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        transform: Transform | None = None,
    ) -> Response:
        """The child's whole answer (read before the lease goes back)."""
        return await self.whole(await self.open(method, path, headers, body), transform)

    async def whole(self, upstream: proxy.Answer, transform: Transform | None = None) -> Response:
        """``upstream``'s whole answer, read before the lease goes back."""
        return await proxy.whole(upstream, self.model, self._watched(transform))

    async def stream(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        transform: Transform | None = None,
    ) -> proxy.Relay:
        """The child's answer relayed as it comes (see ``relay``)."""
        return self.relay(await self.open(method, path, headers, body), transform)

    def relay(self, upstream: proxy.Answer, transform: Transform | None = None) -> proxy.Relay:
        """A response that relays ``upstream`` as it comes. The lease passes to it: it goes
        back when the relay ends, not when the route returns."""
        transform = self._watched(transform)
        return proxy.Relay(upstream, self.model, self._stack.pop_all().aclose, transform)

    def _watched(self, transform: Transform | None) -> Transform | None:
        """``transform``, after a watch for the child's timings (the answer as it came)."""
        if self._on_timings is None:
            return transform
        return chain(WatchTimings(self._on_timings), transform)


class Service:
    def __init__(self, config: Config, reload_config: Callable[[], Config], owner: str) -> None:
        self.config = config
        self.reload_config = reload_config
        self.pool = Pool(config, owner)
        self.upstream = proxy.Upstream(config.upstream_timeout)
        self.keys = Keys.from_config(config)
        self.peers = PeerTable.from_config(config)
        self.started_at = time.time()
        self.metrics = Metrics(self.pool)
        self.pool.events.listen(self.metrics.on_event)
        self.queued_bytes = 0  # bodies of requests waiting for a lease, over all models

    @staticmethod
    def of(request: Request) -> Service:
        service: Service = request.app.state.service
        return service

    @contextlib.asynccontextmanager
    async def exchange(
        self,
        request: Request,
        model: str,
        *,
        on_lease: Callable[[], None] | None = None,
        size: int = 0,
    ) -> AsyncIterator[Exchange]:
        """Hold a place on ``model``'s child (starting it if needed) while the block talks to it.

        Every route that reaches a child comes through here, and so do the routes that reach
        a peer's model (``model`` one of its names): no lease then, and ``on_lease`` never
        runs. ``on_lease`` runs once the model is ready and the request holds its place. A
        client that hangs up before its answer starts (while the model loads, while it
        queues, or while a hung child says nothing) cancels the block and gives its place
        back at once, as ``ClientGone``: otherwise a swap would wait forever for a request
        nobody waits for. The request's body must have been read: after it, ``receive`` only
        reports the hang-up. ``size``, the body's bytes, counts towards ``max_queued_bytes``
        while the request waits for a child.
        """
        task = asyncio.current_task()
        assert task is not None
        hung_up = False

        def on_disconnect(watcher: asyncio.Future[None]) -> None:
            nonlocal hung_up
            if not watcher.cancelled() and watcher.exception() is None:
                hung_up = True
                task.cancel()

        watcher = asyncio.ensure_future(proxy.until_disconnect(request.receive))
        watcher.add_done_callback(on_disconnect)
        stack = contextlib.AsyncExitStack()
        exchange: Exchange | None = None
        status = 500
        try:
            try:
                route = self.peers.route(model)
                if route is not None:
                    if route.peer.key_error is not None:
                        raise forward.PeerFailed(route, route.peer.key_error)
                    exchange = Exchange(self.upstream, stack, peer=route)
                    yield exchange
                    status = 200  # the block ended well; an answer from the other end wins
                else:
                    limit = self.config.max_queued_bytes
                    if not scheduler.admits_bytes(self.queued_bytes, size, limit):
                        raise QueueBytesFull(limit)
                    self.queued_bytes += size  # until leased: then the body goes to the child
                    try:
                        lease = await stack.enter_async_context(self.pool.lease(model))
                    finally:
                        self.queued_bytes -= size
                    if on_lease is not None:
                        on_lease()
                    on_timings = self._timings_of(lease.model.name)
                    exchange = Exchange(self.upstream, stack, lease=lease, on_timings=on_timings)
                    yield exchange
                    # A block that asked the child nothing (a load alone) ended well: the
                    # route's own 200, not the 500 kept for a block that raised.
                    status = 200
            finally:
                watcher.remove_done_callback(on_disconnect)
                watcher.cancel()
        except asyncio.CancelledError:
            if not hung_up:
                raise
            task.uncancel()
            log.info("request cancelled: model %s: client hung up before the answer", model)
            status = ClientGone.status
            raise ClientGone(model) from None
        except ServeError as exc:
            status = exc.status
            raise
        finally:
            if exchange is not None and exchange.status is not None:
                status = exchange.status
            self._count(request, model, status)
            await stack.aclose()  # a no-op once a relay took the lease over

    async def unload(self, request: Request, model: str) -> list[str]:
        """Unload ``model`` for a route (once its requests finish), counted as its answer."""
        stopped = await self.pool.unload(model)
        self._count(request, self.pool.resolve(model).name, 200)
        return stopped

    def _count(self, request: Request, model: str, status: int) -> None:
        """One answered request in ``/metrics``; only a configured model's (bounded labels)."""
        entry = self.pool.entries.get(model)
        if entry is None:
            return
        route = request.scope.get("route")
        template = getattr(route, "path", None) or "other"
        self.metrics.answered(entry.name, template, status)

    def _timings_of(self, model: str) -> Callable[[Timings], None]:
        def on_timings(found: Timings) -> None:
            entry = self.pool.entries.get(model)
            if entry is not None:
                entry.tokens_per_second = round(found.predicted_per_second, 2)
            per_second = found.predicted_per_second
            self.metrics.timed(model, found.prompt_tokens, found.predicted_tokens, per_second)

        return on_timings

    async def reload(self) -> None:
        """Load the config again and apply it; a bad config is logged and the old one kept."""
        try:
            config = self.reload_config()
            keys = Keys.from_config(config)
            peers = PeerTable.from_config(config)
        except ConfigError as exc:
            log.error("reload failed, keeping the running config: %s", exc)
            return
        plan = scheduler.plan_reload(self.config, config)
        if plan.restart:
            log.warning(
                "reload: %s changed, which only a restart applies: restart corral for it",
                ", ".join(plan.restart),
            )
        # Limits and keys apply to the next request at once; the pool's old children stop
        # once their requests finish, and pool.reload returns then.
        self.config, self.keys, self.peers = config, keys, peers
        self.upstream.silence = config.upstream_timeout
        # Said before the pool's drains: a follower whose key this revoked stops now.
        self.pool.events.publish("reloaded", "")
        await self.pool.reload(config, plan)
