"""``corral pull``: what a user sees, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from click.testing import CliRunner, Result

from corral.generator import loader
from corral.generator.settings import Config
from corral.supervisor.pull import download
from corral.supervisor.pull_cli import pull_command
from tests.supervisor.file_server import FileServer, Served
from tests.support import free_port

# Over one 1 MiB chunk, and not a round number, so chunking and offsets are exercised.
BODY = random.Random(5).randbytes(3 * 1024 * 1024 + 123)
DIGEST = hashlib.sha256(BODY).hexdigest()
HALF = len(BODY) // 2


@pytest.fixture(autouse=True)
def _no_env_config(monkeypatch: pytest.MonkeyPatch) -> None:
    # MODELS_PATH and friends from the developer's shell would change the folder chosen.
    for variable in loader.ENV_OVERRIDES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as running:
        yield running


class Dest(NamedTuple):
    folder: Path
    target: Path
    part: Path


@pytest.fixture
def dest(tmp_path: Path) -> Dest:
    folder = tmp_path / "models"
    return Dest(folder, folder / "m.gguf", folder / "m.gguf.part")


def pull(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(pull_command, list(args), env=env)


def test_downloads_whole_file_and_checks_sha256(server: FileServer, dest: Dest) -> None:
    server.files["/m.gguf"] = Served(BODY)
    result = pull(server.url("/m.gguf"), "--dest", str(dest.folder), "--sha256", DIGEST.upper())
    assert result.exit_code == 0, result.output
    assert dest.target.read_bytes() == BODY
    assert not dest.part.exists()
    assert f"saved {dest.target} (3.0 MiB, sha256 {DIGEST})" in result.stdout
    assert server.ranges() == [None]


def test_interrupted_download_resumes_from_part(server: FileServer, dest: Dest) -> None:
    server.files["/m.gguf"] = Served(BODY, break_after=HALF)
    first = pull(server.url("/m.gguf"), "--dest", str(dest.folder))
    assert first.exit_code == 1
    assert "download interrupted after 1.5 MiB" in first.stderr
    assert f"kept {dest.part}: run the same command again to resume" in first.stderr
    assert dest.part.stat().st_size == HALF
    # Atomicity: only the .part exists, and nothing serves it.
    assert not dest.target.exists()
    assert list(dest.folder.glob("*.gguf")) == []
    assert loader.discover(Config(models_path=dest.folder)).models == []

    second = pull(server.url("/m.gguf"), "--dest", str(dest.folder), "--sha256", DIGEST)
    assert second.exit_code == 0, second.output
    assert server.ranges() == [None, f"bytes={HALF}-"]
    assert "resuming m.gguf.part at 1.5 MiB" in second.stderr
    assert dest.target.read_bytes() == BODY
    assert not dest.part.exists()


def test_server_ignoring_range_restarts_from_zero(server: FileServer, dest: Dest) -> None:
    server.files["/m.gguf"] = Served(BODY, ignore_range=True)
    dest.folder.mkdir()
    dest.part.write_bytes(b"stale" * 20)
    result = pull(server.url("/m.gguf"), "--dest", str(dest.folder), "--sha256", DIGEST)
    assert result.exit_code == 0, result.output
    assert server.ranges() == ["bytes=100-"]
    assert "ignored the Range request; downloading from the start" in result.stderr
    assert dest.target.read_bytes() == BODY


def test_part_that_is_already_whole_is_finished_on_416(server: FileServer, dest: Dest) -> None:
    server.files["/m.gguf"] = Served(BODY)
    dest.folder.mkdir()
    dest.part.write_bytes(BODY)
    result = pull(server.url("/m.gguf"), "--dest", str(dest.folder), "--sha256", DIGEST)
    assert result.exit_code == 0, result.output
    assert server.ranges() == [f"bytes={len(BODY)}-"]
    assert dest.target.read_bytes() == BODY


def test_part_longer_than_the_file_starts_over(server: FileServer, dest: Dest) -> None:
    server.files["/m.gguf"] = Served(BODY)
    dest.folder.mkdir()
    dest.part.write_bytes(BODY + b"junk")
    result = pull(server.url("/m.gguf"), "--dest", str(dest.folder))
    assert result.exit_code == 0, result.output
    assert server.ranges() == [f"bytes={len(BODY) + 4}-", None]
    assert "starting over" in result.stderr
    assert dest.target.read_bytes() == BODY


def test_sha256_mismatch_deletes_the_part(server: FileServer, dest: Dest) -> None:
    server.files["/m.gguf"] = Served(BODY)
    wrong = "ab" * 32
    result = pull(server.url("/m.gguf"), "--dest", str(dest.folder), "--sha256", wrong)
    assert result.exit_code == 1
    assert f"sha256 mismatch: expected {wrong}, got {DIGEST}" in result.stderr
    assert list(dest.folder.iterdir()) == []


def test_http_error_names_status_and_url(server: FileServer, dest: Dest) -> None:
    result = pull(server.url("/nope.gguf"), "--dest", str(dest.folder))
    assert result.exit_code == 1
    assert f"error: {server.url('/nope.gguf')}: HTTP 404 Not Found" in result.stderr
    assert list(dest.folder.iterdir()) == []  # no empty .part left behind


def test_unreachable_server_says_so(dest: Dest) -> None:
    url = f"http://127.0.0.1:{free_port()}/m.gguf"
    result = pull(url, "--dest", str(dest.folder))
    assert result.exit_code == 1
    assert f"{url}: cannot download:" in result.stderr


def test_existing_file_is_kept_unless_forced(server: FileServer, dest: Dest) -> None:
    server.files["/m.gguf"] = Served(BODY)
    dest.folder.mkdir()
    dest.target.write_bytes(b"old")
    kept = pull(server.url("/m.gguf"), "--dest", str(dest.folder))
    assert kept.exit_code == 0
    assert "already there (3 B); pass --force to download it again" in kept.stdout
    assert server.requests == []
    forced = pull(server.url("/m.gguf"), "--dest", str(dest.folder), "--force")
    assert forced.exit_code == 0, forced.output
    assert dest.target.read_bytes() == BODY


def test_existing_file_checked_against_sha256(server: FileServer, dest: Dest) -> None:
    dest.folder.mkdir()
    dest.target.write_bytes(BODY)
    same = pull(server.url("/m.gguf"), "--dest", str(dest.folder), "--sha256", DIGEST)
    assert same.exit_code == 0
    assert f"{dest.target}: already there, sha256 matches" in same.stdout
    other = pull(server.url("/m.gguf"), "--dest", str(dest.folder), "--sha256", "0" * 64)
    assert other.exit_code == 1
    assert f"its sha256 is {DIGEST}, expected {'0' * 64}; pass --force" in other.stderr
    assert server.requests == []


def test_name_chooses_the_saved_file(server: FileServer, dest: Dest) -> None:
    server.files["/download"] = Served(BODY)
    nameless = pull(server.url("/download"), "--dest", str(dest.folder))
    assert nameless.exit_code == 1
    assert "file name 'download' does not end in .gguf; pass --name" in nameless.stderr
    named = pull(server.url("/download"), "--dest", str(dest.folder), "--name", "m.gguf")
    assert named.exit_code == 0, named.output
    assert dest.target.read_bytes() == BODY


@pytest.mark.parametrize("name", ["../m.gguf", "m.bin", ".gguf"])
def test_bad_name_is_refused(name: str, dest: Dest) -> None:
    result = pull("https://example.invalid/m.gguf", "--dest", str(dest.folder), "--name", name)
    assert result.exit_code == 1
    assert f"--name: must be a file name ending in .gguf, got {name!r}" in result.stderr


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("http://example.invalid/m.gguf", "plain http is allowed only for 127.0.0.1"),
        ("ftp://example.invalid/m.gguf", "SOURCE must be an https:// URL or hf:"),
        ("m.gguf", "SOURCE must be an https:// URL or hf:"),
        ("hf:owner/m.gguf", "must be hf:owner/repo/file.gguf"),
    ],
)
def test_bad_source_is_refused(source: str, message: str, dest: Dest) -> None:
    result = pull(source, "--dest", str(dest.folder))
    assert result.exit_code == 1
    assert message in result.stderr


def test_bad_sha256_is_refused(dest: Dest) -> None:
    result = pull("https://example.invalid/m.gguf", "--dest", str(dest.folder), "--sha256", "ab")
    assert result.exit_code == 1
    assert "--sha256: must be 64 hex digits, got 'ab'" in result.stderr


def test_redirect_to_plain_http_is_refused(server: FileServer, dest: Dest) -> None:
    server.files["/m.gguf"] = Served(BODY, redirect="http://example.invalid/m.gguf")
    result = pull(server.url("/m.gguf"), "--dest", str(dest.folder))
    assert result.exit_code == 1
    assert "refused a redirect: http://example.invalid/m.gguf: plain http" in result.stderr


def test_folder_comes_from_config_or_models_path(
    server: FileServer, dest: Dest, tmp_path: Path
) -> None:
    server.files["/m.gguf"] = Served(BODY)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"models_path": str(dest.folder)}), encoding="utf-8")
    assert pull(server.url("/m.gguf"), "--config", str(config)).exit_code == 0
    assert dest.target.read_bytes() == BODY
    other = tmp_path / "env-models"
    result = pull(server.url("/m.gguf"), env={"MODELS_PATH": str(other)})
    assert result.exit_code == 0, result.output
    assert (other / "m.gguf").read_bytes() == BODY


def test_no_folder_is_a_usage_error() -> None:
    result = pull("https://example.invalid/m.gguf")
    assert result.exit_code == 2
    assert "no models folder: pass --dest DIR, or --config FILE" in result.stderr


def test_list_shows_files_partials_and_missing_models(dest: Dest, tmp_path: Path) -> None:
    (dest.folder / "sub").mkdir(parents=True)
    dest.target.write_bytes(b"x" * 2048)
    (dest.folder / "sub" / "b.gguf").write_bytes(b"y" * 10)
    (dest.folder / "c.gguf.part").write_bytes(b"z" * 5)
    config = tmp_path / "config.yaml"
    models = [{"name": "m", "path": "m.gguf"}, {"name": "qwen:3b", "path": "q.gguf"}]
    config.write_text(
        yaml.safe_dump({"models_path": str(dest.folder), "models": models}), encoding="utf-8"
    )
    result = pull("--list", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{dest.folder}:",
        "  m.gguf       2.0 KiB",
        "  sub/b.gguf   10 B",
        "  c.gguf.part  5 B so far, pull again to resume",
        "named in the config but missing:",
        f"  qwen:3b  {dest.folder / 'q.gguf'}",
    ]


def test_list_of_an_empty_folder(dest: Dest) -> None:
    result = pull("--list", "--dest", str(dest.folder))
    assert result.exit_code == 0
    assert result.stdout == f"{dest.folder}: no .gguf files\n"


def test_hf_source_goes_through_huggingface_hub(
    server: FileServer, dest: Dest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No network here: a stand-in module maps the repo file to the local server.
    calls: list[tuple[str, str, str | None]] = []

    def hf_hub_url(repo_id: str, filename: str, revision: str | None = None) -> str:
        calls.append((repo_id, filename, revision))
        return server.url(f"/{repo_id}/resolve/{revision or 'main'}/{filename}")

    hub = types.ModuleType("huggingface_hub")
    hub.hf_hub_url = hf_hub_url  # type: ignore[attr-defined]
    hub.get_token = lambda: "hf_secret"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    server.files["/owner/repo/resolve/abc123/q4/m.gguf"] = Served(BODY)

    result = pull("hf:owner/repo@abc123/q4/m.gguf", "--dest", str(dest.folder))
    assert result.exit_code == 0, result.output
    assert calls == [("owner/repo", "q4/m.gguf", "abc123")]
    assert server.requests[0][1]["authorization"] == "Bearer hf_secret"
    assert dest.target.read_bytes() == BODY


def test_hf_source_without_huggingface_hub(dest: Dest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    result = pull("hf:owner/repo/m.gguf", "--dest", str(dest.folder))
    assert result.exit_code == 1
    assert "hf: sources need huggingface_hub: pip install huggingface_hub" in result.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to fake ENOSPC")
def test_disk_full_while_writing(
    server: FileServer, dest: Dest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every write to /dev/full fails with ENOSPC: a real full disk, without filling one. (A
    # .part symlinked to it is refused: see test_planted_part_symlink_is_never_followed.)
    server.files["/m.gguf"] = Served(BODY)
    dest.folder.mkdir()
    dest.part.touch()
    # A character device is refused as a .part, except here, where it stands in for a disk.
    monkeypatch.setattr(download, "_open_part", lambda part: os.open("/dev/full", os.O_RDWR))
    result = pull(server.url("/m.gguf"), "--dest", str(dest.folder))
    assert result.exit_code == 1
    assert f"disk full: cannot write {dest.part}" in result.stderr
    assert not dest.target.exists()


def test_disk_full_before_starting(
    server: FileServer, dest: Dest, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.files["/m.gguf"] = Served(BODY)
    monkeypatch.setattr(
        "corral.supervisor.pull.download.shutil.disk_usage",
        lambda path: types.SimpleNamespace(free=1000),
    )
    result = pull(server.url("/m.gguf"), "--dest", str(dest.folder))
    assert result.exit_code == 1
    assert f"the server claims {len(BODY)} bytes (3.0 MiB)" in result.stderr
    assert "needs 3.0 MiB more, 1000 B free in" in result.stderr
    assert not dest.target.exists()


def test_one_pull_per_file_at_a_time(server: FileServer, dest: Dest) -> None:
    server.files["/m.gguf"] = Served(BODY)
    dest.folder.mkdir()
    with dest.part.open("ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        result = pull(server.url("/m.gguf"), "--dest", str(dest.folder))
    assert result.exit_code == 1
    assert f"{dest.part}: another corral pull is writing it" in result.stderr
    assert server.requests == []


def test_planted_part_symlink_is_never_followed(server: FileServer, dest: Dest) -> None:
    # Another local user plants m.gguf.part -> a file of the puller's: it must stay untouched.
    server.files["/m.gguf"] = Served(BODY)
    dest.folder.mkdir()
    victim = dest.folder.parent / "victim"
    victim.write_bytes(b"precious")
    dest.part.symlink_to(victim)
    result = pull(server.url("/m.gguf"), "--dest", str(dest.folder))
    assert result.exit_code == 1
    assert f"{dest.part}: is a symlink" in result.stderr
    assert victim.read_bytes() == b"precious"
    assert not dest.target.exists()


def test_part_that_is_not_a_regular_file_is_refused(server: FileServer, dest: Dest) -> None:
    server.files["/m.gguf"] = Served(BODY)
    dest.folder.mkdir()
    os.mkfifo(dest.part)
    result = pull(server.url("/m.gguf"), "--dest", str(dest.folder))
    assert result.exit_code == 1
    assert f"{dest.part}: is not a regular file" in result.stderr


def test_endless_body_stops_at_the_cap(
    server: FileServer, dest: Dest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("corral.supervisor.pull.download.MAX_UNDECLARED", 5 * 1024 * 1024)
    server.files["/m.gguf"] = Served(BODY, endless=True)
    result = pull(server.url("/m.gguf"), "--dest", str(dest.folder))
    assert result.exit_code == 1
    assert "the server sent more than 5.0 MiB without a Content-Length" in result.stderr
    assert not dest.target.exists()
    assert not dest.part.exists()


def test_huge_content_length_is_named_as_the_servers_claim(server: FileServer, dest: Dest) -> None:
    server.files["/m.gguf"] = Served(b"", claims=10**15)
    result = pull(server.url("/m.gguf"), "--dest", str(dest.folder))
    assert result.exit_code == 1
    assert f"the server claims {10**15} bytes" in result.stderr
    assert "disk full" not in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_redirect_loop_is_a_clear_error(server: FileServer, dest: Dest) -> None:
    server.files["/m.gguf"] = Served(BODY, redirect=server.url("/m.gguf"))
    result = pull(server.url("/m.gguf"), "--dest", str(dest.folder))
    assert result.exit_code == 1
    assert "too many redirects" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_nul_in_the_url_file_name_is_a_clear_error(server: FileServer, dest: Dest) -> None:
    result = pull(server.url("/x%00.gguf"), "--dest", str(dest.folder))
    assert result.exit_code == 1
    assert "control characters" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
