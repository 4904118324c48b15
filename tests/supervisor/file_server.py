"""A small real HTTP file server for ``corral pull`` tests, on 127.0.0.1 in a thread.

It serves bytes by path, honours ``Range: bytes=N-`` (206, or 416 past the end), records each
request's headers, and plays the faults a download must survive: dropping the connection part
way through a body, ignoring Range (answering 200 with the whole file), and redirecting.
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

_RANGE = re.compile(r"^bytes=(\d+)-$")


@dataclass
class Served:
    """One file: its bytes and the faults it plays."""

    body: bytes
    #: Send this many body bytes, then drop the connection; once, then serve normally.
    break_after: int | None = None
    #: Answer every request with 200 and the whole body, as servers without Range support do.
    ignore_range: bool = False
    #: Answer 302 to this URL instead.
    redirect: str | None = None
    #: No Content-Length: send the body over and over until the client hangs up.
    endless: bool = False
    #: Claim this Content-Length, then close without a byte.
    claims: int | None = None


class FileServer:
    """``with FileServer() as server:`` serves ``server.files`` at ``server.url(path)``."""

    def __init__(self) -> None:
        self.files: dict[str, Served] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        # A short poll interval: shutdown() waits for the loop to look, 0.5 s by default.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"

    def ranges(self) -> list[str | None]:
        """The Range header of each request so far (None where there was none)."""
        return [headers.get("range") for _, headers in self.requests]

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            served = server.files.get(self.path)
            if served is None:
                self.send_error(404, "Not Found")
                return
            if served.redirect is not None:
                self.send_response(302)
                self.send_header("Location", served.redirect)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if served.endless or served.claims is not None:
                self.send_response(200)
                if served.claims is not None:
                    self.send_header("Content-Length", str(served.claims))
                self.end_headers()
                self.close_connection = True
                with contextlib.suppress(ConnectionError):
                    while served.endless:
                        self.wfile.write(served.body)
                return
            body, start = served.body, 0
            wanted = _RANGE.match(self.headers.get("Range", ""))
            if wanted and not served.ignore_range:
                start = int(wanted[1])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            end = len(body)
            if served.break_after is not None:
                # Headers promised the whole body; closing early is a dropped connection.
                end = start + served.break_after
                served.break_after = None
                self.close_connection = True
            # The client may give up (a test's full disk): then there is no one left to tell.
            with contextlib.suppress(ConnectionError):
                self.wfile.write(body[start:end])

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep pytest's captured stderr for the code under test

    return Handler
