"""The children's kept-alive connections, by port: which connection a request goes out on.

Owns the idle connections to each child's port (a list per port, the most recent reused
first, none older than ``IDLE_S``), opening fresh ones, and the one retry on a fresh
connection when a reused one closes unanswered. It does not speak HTTP on a connection
(``client.Answer`` does) and knows nothing of models (``proxy``).
"""

from __future__ import annotations

import asyncio
import math
import time

from corral.supervisor.http.client import Answer, Broken, Silent

#: Idle kept-alive connections are not reused after this: llama-server (cpp-httplib) closes
#: them after 5 s, and reusing one as it closes would lose the request.
IDLE_S = 4.0
CONNECT_TIMEOUT_S = 5.0


class Pool:
    """Kept-alive connections to the children, by port."""

    def __init__(self) -> None:
        self._idle: dict[int, list[Answer]] = {}
        self.opened = 0  # connections made, for the tests of reuse

    async def request(
        self, method: str, port: int, head: bytes, body: bytes, silence: float = math.inf
    ) -> Answer:
        """Send a request to ``127.0.0.1:port``; the answer with its status and headers in.

        A reused connection that the child closed before any byte of an answer is tried once
        more on a fresh one, whatever the method: llama-server closes a kept-alive connection
        after each streamed answer, a moment after its last chunk, and a request sent in that
        moment was never read. (A fresh connection closed unanswered is a crash: no retry;
        nor is a child silent for ``silence`` seconds: it got the request.)
        """
        answer = self._take(port)
        if answer is not None:
            try:
                await answer.start(method, head, body, silence)
                return answer
            except Broken as exc:
                answer.close()
                if answer.got_bytes or isinstance(exc, Silent):
                    raise
                try:
                    return await self._fresh(port, method, head, body, silence)
                except OSError:
                    raise exc from None  # what happened first: it closed, it may have crashed
            except BaseException:
                answer.close()  # cancelled (the client hung up): the child must see it too
                raise
        return await self._fresh(port, method, head, body, silence)

    async def _fresh(
        self, port: int, method: str, head: bytes, body: bytes, silence: float
    ) -> Answer:
        answer = await self._connect(port)
        try:
            await answer.start(method, head, body, silence)
        except BaseException:
            answer.close()
            raise
        return answer

    def put(self, answer: Answer) -> None:
        answer.idle_since = time.monotonic()
        self._idle.setdefault(answer.port, []).append(answer)

    def forget(self, answer: Answer) -> None:
        idle = self._idle.get(answer.port)
        if idle and answer in idle:
            idle.remove(answer)
        if idle == []:
            del self._idle[answer.port]  # a stopped child's port: nothing kept for it

    def idle_ports(self) -> list[int]:
        """Ports with a kept-alive connection waiting."""
        return list(self._idle)

    def close(self) -> None:
        for idle in list(self._idle.values()):
            for answer in list(idle):
                answer.close()
        self._idle.clear()

    def _take(self, port: int) -> Answer | None:
        idle = self._idle.get(port)
        now = time.monotonic()
        while idle:
            answer = idle.pop()  # the most recent: the least likely to be closing
            transport = answer.transport
            fresh = now - answer.idle_since < IDLE_S
            if transport is not None and not transport.is_closing() and fresh:
                return answer
            answer.close()
        self._idle.pop(port, None)
        return None

    async def _connect(self, port: int) -> Answer:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, answer = await loop.create_connection(
                    lambda: Answer(self, port), "127.0.0.1", port
                )
        except TimeoutError as exc:
            raise Broken(f"no connection within {CONNECT_TIMEOUT_S:g} s") from exc
        self.opened += 1
        return answer
