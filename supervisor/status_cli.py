"""``corral status`` and ``corral logs``: a running corral, seen from a terminal.

Owns their options and what a person reads: the status table (``GET /status``, redrawn on
every event of ``GET /events`` with ``--watch``) and a model's log (``GET /logs/<model>``,
then ``/logs/<model>/stream`` with ``-f``). They speak only HTTP, to the URL given (default:
env CORRAL_URL, else http://127.0.0.1:11434), with env CORRAL_API_KEY as the key.
``cli`` imports this module so that the commands join its group.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import click
import httpx

from corral.generator.cli import cli

DEFAULT_URL = "http://127.0.0.1:11434"
COLUMNS = ("MODEL", "STATE", "MEMORY", "UNLOADS IN", "IN FLIGHT", "QUEUED", "LAST LOAD", "TOK/S")

url_option = click.option(
    "--url",
    default=lambda: os.environ.get("CORRAL_URL", DEFAULT_URL),
    show_default="env CORRAL_URL, else " + DEFAULT_URL,
    help="The corral to ask.",
)


def _client(url: str) -> httpx.Client:
    key = os.environ.get("CORRAL_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(10.0, read=None))


def _get(client: httpx.Client, path: str) -> httpx.Response:
    try:
        answer = client.get(path)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach corral at {client.base_url}: {exc}") from exc
    if answer.status_code != 200:
        raise click.ClickException(f"GET {path}: {answer.status_code} {_message(answer)}")
    return answer


def _message(answer: httpx.Response) -> str:
    try:
        error = answer.json().get("error")
    except ValueError:
        return answer.text.strip()
    return str(error.get("message") if isinstance(error, dict) else error)


def table(models: list[dict[str, Any]], now: float) -> str:
    """The status table, one row per model, columns aligned."""
    rows = [COLUMNS]
    for m in models:
        memory = m.get("memory")
        expires = m.get("expires_at")
        left = None if expires is None else max(0, round(expires - now))
        rows.append(
            (
                m["model"],
                m["state"],
                "-" if not memory else f"{memory['bytes'] / 2**30:.2f} GiB",
                "-" if left is None else f"{left // 60}:{left % 60:02d}",
                str(m["in_flight"]),
                str(m["queued"]),
                "-" if m.get("load_seconds") is None else f"{m['load_seconds']:.1f} s",
                "-" if m.get("tokens_per_second") is None else f"{m['tokens_per_second']:.1f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    # Where a model runs otherwise than its config asked (the CPU for the GPU), said below.
    lines += [f"warning: {m['warning']}" for m in models if m.get("warning")]
    return "\n".join(lines)


#: C0 controls but tab and newline, DEL, and C1 controls (0x9b is a one-byte CSI).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``): a model's log holds what
    clients sent (llama-server echoes prompts and grammars), and an escape sequence printed
    raw would drive the reader's terminal (retitle it, clear it, move the cursor)."""
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode(), text)


def _sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The ``data:`` of each server-sent event (comments and other fields skipped)."""
    for line in lines:
        if line.startswith("data:"):
            yield line[5:].removeprefix(" ")


@cli.command("status")
@url_option
@click.option("--watch", is_flag=True, help="Redraw on every event and each second, until ^C.")
def status_command(url: str, watch: bool) -> None:
    """Every model of a running corral: state, memory, TTL, requests, load time, tokens/s."""
    with _client(url) as client:
        if not watch:
            click.echo(table(_get(client, "/status").json()["models"], time.time()))
            return
        changed = threading.Event()
        changed.set()
        threading.Thread(target=_follow_events, args=(url, changed), daemon=True).start()
        models: list[dict[str, Any]] = []
        try:
            while True:
                if changed.is_set():
                    changed.clear()
                    models = _get(client, "/status").json()["models"]
                # Home and clear: one screen, redrawn in place.
                click.echo("\x1b[H\x1b[2J" + table(models, time.time()), nl=True)
                changed.wait(1.0)
        except KeyboardInterrupt:
            return


def _follow_events(url: str, changed: threading.Event) -> None:
    """Set ``changed`` on every event; reconnect when the stream drops."""
    while True:
        try:
            with _client(url) as client, client.stream("GET", "/events") as answer:
                for _ in _sse_data(answer.iter_lines()):
                    changed.set()
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
        changed.set()


@cli.command("logs")
@click.argument("model")
@url_option
@click.option("-f", "--follow", is_flag=True, help="Go on printing lines as they are written.")
@click.option("-n", "--lines", default=200, show_default=True, help="Lines to print first.")
def logs_command(model: str, url: str, follow: bool, lines: int) -> None:
    """A model's llama-server log (its last lines; with -f, then every new one)."""
    path = f"/logs/{quote(model, safe='')}"
    with _client(url) as client:
        if not follow:
            click.echo(printable(_get(client, f"{path}?lines={lines}").text), nl=False)
            return
        try:
            with client.stream("GET", f"{path}/stream") as answer:
                if answer.status_code != 200:
                    answer.read()
                    raise click.ClickException(f"{path}/stream: {_message(answer)}")
                for line in _sse_data(answer.iter_lines()):
                    click.echo(printable(line))
                    sys.stdout.flush()
        except httpx.HTTPError as exc:
            raise click.ClickException(f"lost corral at {url}: {exc}") from exc
        except KeyboardInterrupt:
            return
