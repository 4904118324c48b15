"""The status page in a real browser (headless Chromium from Debian, driven by Playwright):
a load seen without a reload, the unload button, and a screenshot kept for the README. And
the same page without JavaScript: a plain table, and a form that unloads."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import CorralServer, fake_cmd, wait_until

CONFIG = {
    "models": [
        {"name": "slow", "cmd": fake_cmd("slow", "--load-seconds", "3", "--stderr-lines", "5")},
        {"name": "other", "cmd": fake_cmd("other")},
    ]
}
#: Where the screenshot is kept: env CORRAL_SCREENSHOT, else the test's own folder.
SCREENSHOT = "status-page.png"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorralServer]:
    with CorralServer(CONFIG, tmp_path_factory.mktemp("page")) as running:
        yield running


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("no Chromium: install Debian's chromium (apt-get install -y chromium)")
    return found


def state_of(model: str) -> str:
    return f"document.querySelector('tr[data-model=\"{model}\"] [data-field=state]').textContent"


def test_the_page_follows_a_load_and_unloads(server: CorralServer, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is a dev extra")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            page.goto(f"{server.url}/ui")
            assert page.evaluate(state_of("slow")) == "unloaded"
            page.wait_for_function("document.getElementById('live').textContent === 'live'")
            body = {"model": "slow", "messages": [{"role": "user", "content": "hi"}]}
            url = f"{server.url}/v1/chat/completions"
            chat = threading.Thread(target=lambda: httpx.post(url, json=body, timeout=60))
            chat.start()
            page.wait_for_function(f"{state_of('slow')} === 'loading'", timeout=10_000)
            page.wait_for_function(f"{state_of('slow')} === 'ready'", timeout=30_000)
            assert page.inner_text("#loaded") == "1"
            chat.join(30)
            page.click("details[data-log=slow] summary")  # follows the model's live log
            page.wait_for_function(
                "document.querySelector('details[data-log=slow] pre').textContent"
                ".includes('log line 5 of 5')"
            )
            events = page.inner_text("#events")
            assert "loading slow" in events and "ready slow" in events
            keep = Path(os.environ.get("CORRAL_SCREENSHOT", tmp_path / SCREENSHOT))
            page.screenshot(path=str(keep), full_page=True)
            assert keep.stat().st_size > 10_000
            pid = next(m["pid"] for m in server.running() if m["model"] == "slow")
            page.click("tr[data-model=slow] button")
            page.wait_for_function(f"{state_of('slow')} === 'unloaded'", timeout=30_000)
        finally:
            browser.close()
    wait_until(lambda: server.running() == [], 10, "the model to unload")
    assert pid not in [c.pid for c in server.children()], "the child is still running"


def test_without_javascript_the_page_is_a_table_and_a_form(server: CorralServer) -> None:
    body = {"model": "other", "messages": [{"role": "user", "content": "hi"}]}
    httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30).raise_for_status()
    page = httpx.get(f"{server.url}/", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    row = page.text.split('<tr data-model="other">')[1].split("</tr>")[0]
    assert ">ready<" in row and 'action="ui/unload/other"' in row
    form = httpx.post(f"{server.url}/ui/unload/other", timeout=30)
    assert form.status_code == 303 and form.headers["location"] == "/ui"
    assert server.running() == []


def test_other_clients_still_read_ollama_is_running(server: CorralServer) -> None:
    for accept in ("*/*", "application/json"):
        answer = httpx.get(f"{server.url}/", headers={"Accept": accept}, timeout=10)
        assert answer.text == "Ollama is running"
    assert httpx.head(f"{server.url}/", timeout=10).status_code == 200
