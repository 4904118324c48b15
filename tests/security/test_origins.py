"""Host and Origin: what a web page can make a loopback corral without keys do, and read.

Before these checks any page could: a rebinding name reached every route, a cross-site
"simple" POST loaded models, and the child's own CORS headers let the page read the answer.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import anthropic
import httpx
import openai
import pytest

from corral.generator.settings import Config
from corral.supervisor.http.origins import BrowserChecks, is_local_host
from tests.support import CorralServer, fake_cmd

CONFIG = {"models": [{"name": "m", "cmd": fake_cmd("m", "--tokens", "4")}]}
EVIL = "https://evil.example"
UI = "http://localhost:3000"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    with CorralServer(CONFIG, tmp_path_factory.mktemp("origins")) as running:
        yield running


def test_local_host_names() -> None:
    local = ["localhost", "localhost:11434", "127.0.0.1:1", "127.1.2.3", "[::1]:11434", "[::1]"]
    local += ["ui.localhost:8080", "LOCALHOST"]
    foreign = ["evil.example", "evil.example:11434", "127.0.0.1.evil.example", "0.0.0.0:11434"]
    foreign += ["192.168.1.2", "[::2]:1", "localhost.evil.example", ":11434", ""]
    assert [h for h in local if not is_local_host(h)] == []
    assert [h for h in foreign if is_local_host(h)] == []


def test_the_default_origins_are_this_machines_pages_and_local_apps() -> None:
    checks = BrowserChecks(app=None, config=Config)  # type: ignore[arg-type]
    config = Config()
    allowed = ["http://localhost:3000", "http://127.0.0.1:8080", "https://[::1]:1", UI]
    allowed += ["http://localhost", "app://obsidian.md", "tauri://localhost"]
    denied = [EVIL, "null", "http://localhost.evil.example", "http://127.0.0.2:3000"]
    denied += ["http://evil.example/http://localhost:1", "chrome-extension://abc"]
    assert [o for o in allowed if not checks.allows(o, config)] == []
    assert [o for o in denied if checks.allows(o, config)] == []
    custom = Config(allowed_origins=["https://chat.example.org", "http://*.lan:*"])
    assert checks.allows("https://chat.example.org", custom)
    assert checks.allows("http://box.lan:8080", custom)
    assert not checks.allows(UI, custom)
    assert checks.allows(EVIL, Config(allowed_origins=["*"]))


@pytest.mark.parametrize("path", ["/v1/models", "/running", "/logs/m", "/upstream/m/health"])
def test_a_foreign_host_is_403_on_every_route(server: CorralServer, path: str) -> None:
    answer = httpx.get(f"{server.url}{path}", headers={"Host": "evil.example"})
    assert answer.status_code == 403
    assert answer.json()["error"]["type"] == "permission_error"
    assert "DNS-rebinding" in answer.json()["error"]["message"]


def test_a_foreign_host_under_api_gets_ollamas_shape(server: CorralServer) -> None:
    answer = httpx.get(f"{server.url}/api/tags", headers={"Host": "evil.example:11434"})
    assert answer.status_code == 403
    assert isinstance(answer.json()["error"], str)


def test_local_hosts_and_no_host_pass(server: CorralServer) -> None:
    for host in ("localhost", f"127.0.0.1:{server.port}", "[::1]:11434", "ui.localhost"):
        assert httpx.get(f"{server.url}/v1/models", headers={"Host": host}).status_code == 200
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    ("path", "kind", "body"),
    [
        ("/v1/chat/completions", "text/plain", '{"model": "m", "messages": []}'),
        ("/api/chat", "application/x-www-form-urlencoded", '{"model": "m"}'),
        ("/unload", "text/plain", ""),
        ("/upstream/m/v1/chat/completions", "text/plain", '{"messages": []}'),
    ],
)
def test_a_cross_site_simple_request_is_refused_and_does_nothing(
    server: CorralServer, path: str, kind: str, body: str
) -> None:
    headers = {"Origin": EVIL, "Content-Type": kind}
    answer = httpx.post(f"{server.url}{path}", content=body, headers=headers, timeout=30)
    assert answer.status_code == 403
    error = answer.json()["error"]
    message = error if path.startswith("/api/") else error["message"]
    assert f"Origin {EVIL!r} is not allowed" in message
    assert "access-control-allow-origin" not in answer.headers
    assert server.running() == [], "a refused request loaded a model"


def test_a_cross_site_image_without_an_origin_loads_nothing(server: CorralServer) -> None:
    image = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
    answer = httpx.get(f"{server.url}/upstream/m/health", headers=image, timeout=30)
    assert answer.status_code == 403
    assert "cross-site request without an Origin" in answer.json()["error"]["message"]
    assert server.running() == [], "an image loaded a model"
    typed = {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}  # typed in the URL bar
    assert httpx.get(f"{server.url}/v1/models", headers=typed).status_code == 200


def test_an_allowed_origin_reads_answers_without_the_childs_cors(server: CorralServer) -> None:
    headers = {"Origin": UI}
    listed = httpx.get(f"{server.url}/v1/models", headers=headers)
    chat = httpx.post(f"{server.url}/v1/chat/completions", json=CHAT, headers=headers, timeout=30)
    passed = httpx.get(f"{server.url}/upstream/m/health", headers=headers, timeout=30)
    for answer in (listed, chat, passed):
        assert answer.status_code == 200
        assert answer.headers.get_list("access-control-allow-origin") == [UI]
        assert "access-control-allow-credentials" not in answer.headers
        assert "Origin" in answer.headers["vary"]


def test_no_origin_gets_no_cors_headers_not_even_the_childs(server: CorralServer) -> None:
    answer = httpx.get(f"{server.url}/upstream/m/health", timeout=30)
    assert answer.status_code == 200
    assert not [h for h in answer.headers if h.lower().startswith("access-control-")]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat", "/upstream/m/v1/models"])
def test_a_preflight_from_an_allowed_origin(server: CorralServer, path: str) -> None:
    headers = {
        "Origin": UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-stainless-os",
    }
    answer = httpx.options(f"{server.url}{path}", headers=headers)
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == UI
    assert "POST" in answer.headers["access-control-allow-methods"]
    allowed = answer.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "x-stainless-os"} <= set(allowed.split(", "))
    assert int(answer.headers["access-control-max-age"]) > 0
    assert "access-control-allow-credentials" not in answer.headers  # not the child's


def test_a_preflight_from_another_origin_is_403(server: CorralServer) -> None:
    headers = {"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    answer = httpx.options(f"{server.url}/v1/chat/completions", headers=headers)
    assert answer.status_code == 403
    assert "access-control-allow-origin" not in answer.headers


def test_an_open_address_skips_the_host_check_but_keeps_the_origin_check(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    config = {**CONFIG, "host": "0.0.0.0", "api_keys": ["k"]}
    auth = {"Authorization": "Bearer k"}
    with CorralServer(config, tmp_path_factory.mktemp("open")) as server:
        named = httpx.get(f"{server.url}/v1/models", headers={**auth, "Host": "box.lan"})
        crossed = httpx.get(f"{server.url}/v1/models", headers={**auth, "Origin": EVIL})
    assert named.status_code == 200
    assert crossed.status_code == 403


def sdk_headers(send: Callable[[str], object]) -> set[str]:
    """The header names an SDK call sends, caught by a local server that answers 400
    (browsers set the connection's own headers themselves: no page asks for those)."""
    seen: list[str] = []

    class Catch(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.extend(name.lower() for name in self.headers)
            self.send_response(400)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    with HTTPServer(("127.0.0.1", 0), Catch) as catcher:
        thread = threading.Thread(target=catcher.handle_request, daemon=True)
        thread.start()
        with contextlib.suppress(anthropic.APIError, openai.APIError):
            send(f"http://127.0.0.1:{catcher.server_port}")
        thread.join(10)
    assert seen, "the SDK sent nothing"
    return set(seen) - {"host", "content-length", "accept-encoding", "connection"}


def test_a_preflight_allows_what_the_anthropic_and_openai_sdks_send(server: CorralServer) -> None:
    def claude(url: str) -> None:
        client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
        client.messages.create(model="m", max_tokens=1, messages=[])

    def gpt(url: str) -> None:
        client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
        client.chat.completions.create(model="m", messages=[])

    # In a browser, Anthropic's JS SDK adds the header that says the page means it; its
    # key goes as x-api-key there (and in older Python SDKs).
    browser = {"anthropic-dangerous-direct-browser-access", "x-api-key"}
    wanted = sdk_headers(claude) | sdk_headers(gpt) | browser
    assert {"anthropic-version", "authorization", "x-stainless-timeout"} <= wanted
    headers = {
        "Origin": UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": ",".join(sorted(wanted)),
    }
    for path in ("/v1/messages", "/v1/chat/completions"):
        answer = httpx.options(f"{server.url}{path}", headers=headers)
        assert answer.status_code == 204
        allowed = set(answer.headers["access-control-allow-headers"].lower().split(", "))
        assert wanted <= allowed, wanted - allowed
