"""A real browser: headless Chromium runs a page served from another port, and that page uses
corral with fetch(): the model list, a chat, and two streams (OpenAI SSE, Ollama NDJSON). Each
call with a JSON body or an Authorization header makes Chromium send a CORS preflight first.

The same page served from 127.0.0.2 (an origin not allowed by default) must get nothing,
and its <img> must load no model.
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import CorralServer, fake_cmd, wait_until

CONFIG = {"models": [{"name": "m", "cmd": fake_cmd("m", "--tokens", "4")}]}

PAGE = """<!doctype html><html><body><img src="CORRAL/upstream/m/health">
<script>
const base = "CORRAL";
const post = (path, body) => fetch(base + path, {
  method: "POST", headers: {"Content-Type": "application/json", "Authorization": "Bearer x"},
  body: JSON.stringify(body)});
const chat = {model: "m", messages: [{role: "user", content: "hi"}]};
async function text(answer) {
  const reader = answer.body.getReader(), parts = [];
  for (;;) { const {done, value} = await reader.read(); if (done) break;
             parts.push(new TextDecoder().decode(value)); }
  return parts.join("");
}
async function run() {
  const out = {};
  try {
    const list = await fetch(base + "/v1/models", {headers: {"Authorization": "Bearer x"}});
    out.list = [list.status, (await list.json()).data.map(m => m.id)];
    const whole = await post("/v1/chat/completions", chat);
    out.chat = [whole.status, (await whole.json()).choices[0].message.content];
    const sse = await post("/v1/chat/completions", {...chat, stream: true});
    const events = (await text(sse)).split("\\n\\n");
    out.sse = [sse.status, events.filter(e => e.startsWith("data:")).map(e => e.slice(6))];
    const nd = await post("/api/chat", {...chat, stream: true});
    out.ndjson = [nd.status, (await text(nd)).trim().split("\\n").map(l => JSON.parse(l).done)];
  } catch (e) { out.error = String(e); }
  // To the page's own server (same origin): the test waits for this.
  await fetch("/result", {method: "POST", body: JSON.stringify(out)});
}
run();
</script></body></html>
"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("no Chromium: install Debian's chromium (apt-get install -y chromium)")
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    with CorralServer(CONFIG, tmp_path_factory.mktemp("browser")) as running:
        yield running


class PageServer(http.server.ThreadingHTTPServer):
    """Serves the page from a folder and keeps what the page POSTs to /result."""

    def __init__(self, address: str, folder: Path) -> None:
        self.results: list[dict[str, Any]] = []
        self.folder = folder
        super().__init__((address, 0), PageHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/index.html"


class PageHandler(http.server.SimpleHTTPRequestHandler):
    server: PageServer

    def __init__(self, request: Any, client: Any, server: PageServer) -> None:
        super().__init__(request, client, server, directory=str(server.folder))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.results.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def page(
    request: pytest.FixtureRequest, server: CorralServer, tmp_path: Path
) -> Iterator[PageServer]:
    """The page, served by a plain HTTP server on ``request.param`` (an address), any port."""
    (tmp_path / "index.html").write_text(PAGE.replace("CORRAL", server.url), encoding="utf-8")
    httpd = PageServer(request.param, tmp_path)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def run_page(page: PageServer, profile: Path) -> dict[str, Any]:
    """What the page reported, once its fetches are done; Chromium is stopped either way."""
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu"]
    argv += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    argv += ["--no-first-run", f"--user-data-dir={profile}", page.url]
    browser = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: page.results or browser.poll() is not None, 90, "the page's report")
    finally:
        browser.terminate()
        try:
            _, stderr = browser.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            browser.kill()
            _, stderr = browser.communicate()
    assert page.results, f"Chromium ended without a report:\n{stderr.decode()[-2000:]}"
    return page.results[0]


@pytest.mark.parametrize("page", ["127.0.0.1"], indirect=True)
def test_a_page_on_an_allowed_origin_lists_chats_and_streams(
    server: CorralServer, page: PageServer, tmp_path: Path
) -> None:
    out = run_page(page, tmp_path / "profile")
    assert "error" not in out, out
    assert out["list"] == [200, ["m"]]
    assert out["chat"][0] == 200 and out["chat"][1].startswith("m:")
    status, events = out["sse"]
    assert status == 200 and len(events) >= 5 and events[-1] == "[DONE]", out["sse"]
    assert out["ndjson"][0] == 200 and out["ndjson"][1][-1] is True
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("page", ["127.0.0.2"], indirect=True)
def test_a_page_on_another_origin_gets_nothing_and_loads_nothing(
    server: CorralServer, page: PageServer, tmp_path: Path
) -> None:
    httpx.post(f"{server.url}/unload", timeout=30).raise_for_status()
    out = run_page(page, tmp_path / "profile")
    assert out.get("error", "").startswith("TypeError"), out  # fetch() refused by CORS
    assert "list" not in out
    assert server.running() == [], "the page's <img> or fetch loaded a model"
