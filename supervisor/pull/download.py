"""Downloading one GGUF into the models folder: resumable, verified, never half-visible.

Owns the transfer: the ``<name>.part`` file beside the target (discovery serves only
``*.gguf``, which a ``.gguf.part`` does not match), the Range request that resumes it and what
200, 206 and 416 then mean, the sha256 check, and the fsync + ``os.replace`` that makes the
file appear whole or not at all. It does not parse SOURCE (see ``sources``), draw progress
(see ``progress``) nor list a models folder (see ``inventory``).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

from corral.supervisor.pull import progress
from corral.supervisor.pull.sources import Source, SourceError, check_url

CHUNK = 1 << 20
# A CDN can take a while to start sending a cold multi-GB object; a read stalled for longer
# than this is a dead connection, and the .part lets the next run carry on.
TIMEOUT = httpx.Timeout(30.0, read=120.0)
PART = ".part"
#: The most a download without a Content-Length may write: an endless body stops here, not
#: at a full disk. Larger than any one GGUF published (Hugging Face caps a file at 50 GB;
#: Ollama's largest blobs are a few hundred GB).
MAX_UNDECLARED = 1024**4

_CONTENT_RANGE = re.compile(r"^bytes (?:(?P<start>\d+)-\d+|\*)/(?P<total>\d+|\*)$")


class PullError(Exception):
    """A download that failed; the message names the URL or file and what to do next."""


@dataclass(frozen=True)
class Pulled:
    """The outcome: the file, its size and digest, and whether it was already there."""

    path: Path
    size: int
    sha256: str | None
    already_there: bool = False
    resumed_from: int = 0

    def summary(self) -> str:
        size = progress.human(self.size)
        if not self.already_there:
            return f"saved {self.path} ({size}, sha256 {self.sha256})"
        if self.sha256 is not None:
            return f"{self.path}: already there, sha256 matches ({size})"
        return f"{self.path}: already there ({size}); pass --force to download it again"


def part_path(target: Path) -> Path:
    return target.with_name(target.name + PART)


def pull(
    source: Source,
    target: Path,
    *,
    sha256: str | None = None,
    force: bool = False,
    make_progress: progress.ProgressFactory = progress.make,
    say: Callable[[str], None] = lambda message: None,
) -> Pulled:
    """Download ``source`` to ``target`` unless it is there already (or ``force``)."""
    part = part_path(target)
    try:
        if target.exists() and not force:
            return _already_there(target, sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        with _locked(part) as fh:
            resumed_from, digest = _Download(source, fh, part, make_progress, say).run()
            if sha256 is not None and digest != sha256:
                part.unlink()
                raise PullError(
                    f"{source.url}: sha256 mismatch: expected {sha256}, got {digest}; "
                    f"deleted {part}"
                )
            fh.flush()
            os.fsync(fh.fileno())
            size = fh.seek(0, os.SEEK_END)
            os.replace(part, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        raise _disk_error(exc, part) from exc
    return Pulled(target, size, digest, resumed_from=resumed_from)


def _already_there(target: Path, sha256: str | None) -> Pulled:
    size = target.stat().st_size
    if sha256 is None:
        return Pulled(target, size, None, already_there=True)
    with target.open("rb") as fh:
        digest = _hash_prefix(fh, size).hexdigest()
    if digest != sha256:
        raise PullError(
            f"{target} exists but its sha256 is {digest}, expected {sha256}; "
            "pass --force to download it again"
        )
    return Pulled(target, size, digest, already_there=True)


class _Download:
    """One run of filling the .part (opened for append) from the server, to the end."""

    def __init__(
        self,
        source: Source,
        fh: BinaryIO,
        part: Path,
        make_progress: progress.ProgressFactory,
        say: Callable[[str], None],
    ) -> None:
        self.source = source
        self.fh = fh
        self.part = part
        self.make_progress = make_progress
        self.say = say

    def run(self) -> tuple[int, str]:
        """(bytes the .part held before, sha256 of the whole file)."""
        hooks = {"request": [_refuse_insecure_redirect]}
        with httpx.Client(follow_redirects=True, timeout=TIMEOUT, event_hooks=hooks) as client:
            # A second pass only when the server could not serve the range the .part asked for.
            for _ in range(2):
                offset = self.fh.seek(0, os.SEEK_END)
                hasher = _hash_prefix(self.fh, offset)
                try:
                    return offset, self._transfer(client, offset, hasher)
                except _StartOver as why:
                    self.say(f"{self.part.name}: {why}; starting over")
                    self.fh.truncate(0)
                except httpx.TooManyRedirects:
                    raise PullError(
                        f"{self.source.url}: too many redirects (a loop?); check the URL"
                    ) from None
                except httpx.TransportError as exc:
                    raise self._interrupted(exc) from exc
        raise PullError(f"{self.source.url}: the server could not serve a whole download")

    def _transfer(self, client: httpx.Client, offset: int, hasher: hashlib._Hash) -> str:
        # identity: with gzip the byte counts and Range offsets would not be the file's.
        headers = {**self.source.headers, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with client.stream("GET", self.source.url, headers=headers) as response:
            code = response.status_code
            content_range = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
            if offset and code == 416:
                if content_range and content_range["total"] == str(offset):
                    return hasher.hexdigest()  # the .part already holds the whole file
                raise _StartOver(f"the server has no bytes from {offset} on")
            if offset and code == 200:
                self.say(f"{response.url} ignored the Range request; downloading from the start")
                self.fh.truncate(0)
                offset, hasher = 0, hashlib.sha256()
            elif offset and code == 206:
                if not content_range or content_range["start"] != str(offset):
                    raise _StartOver(f"asked for bytes {offset}-, the server sent another range")
                self.say(f"resuming {self.part.name} at {progress.human(offset)}")
            elif code != 200:
                raise PullError(f"{response.url}: HTTP {code} {response.reason_phrase}")
            length = response.headers.get("content-length")
            total = offset + int(length) if length and length.isdigit() else None
            if total is not None:
                _check_space(str(response.url), self.part.parent, total, offset)
            bar = self.make_progress(self.source.filename, total, offset)
            try:
                # No chunk size: a buffered chunk would be lost with a dropped connection.
                for chunk in response.iter_raw():
                    offset += len(chunk)
                    if total is None and offset > MAX_UNDECLARED:
                        self.fh.truncate(0)  # an endless body is no model: nothing to resume
                        raise PullError(
                            f"{response.url}: the server sent more than "
                            f"{progress.human(MAX_UNDECLARED)} without a Content-Length; stopped"
                        )
                    self.fh.write(chunk)
                    hasher.update(chunk)
                    bar.update(len(chunk))
            finally:
                bar.close()
        return hasher.hexdigest()

    def _interrupted(self, exc: httpx.TransportError) -> PullError:
        got = self.fh.seek(0, os.SEEK_END)
        reason = str(exc) or type(exc).__name__
        if got == 0:
            return PullError(f"{self.source.url}: cannot download: {reason}")
        return PullError(
            f"{self.source.url}: download interrupted after {progress.human(got)} ({reason}); "
            f"kept {self.part}: run the same command again to resume"
        )


class _StartOver(Exception):
    """The .part cannot be continued: the server answered a different range."""


def _hash_prefix(fh: BinaryIO, size: int) -> hashlib._Hash:
    # Hashing what is already there, once, spares a second read of a whole multi-GB file.
    hasher = hashlib.sha256()
    fh.seek(0)
    remaining = size
    while remaining > 0:
        block = fh.read(min(CHUNK, remaining))
        if not block:
            break
        hasher.update(block)
        remaining -= len(block)
    return hasher


def _check_space(url: str, folder: Path, total: int, offset: int) -> None:
    # Failing before the first byte beats failing at 90% of a 20 GB file. What the server
    # claims is only a claim (10^15 bytes is no disk's fault), so it is named as one.
    needed, free = total - offset, shutil.disk_usage(folder).free
    if needed > free:
        raise PullError(
            f"{url}: the server claims {total} bytes ({progress.human(total)}); that needs "
            f"{progress.human(needed)} more, {progress.human(free)} free in {folder}"
        )


def _refuse_insecure_redirect(request: httpx.Request) -> None:
    # follow_redirects would otherwise take an https download to plain http without a word.
    try:
        check_url(str(request.url))
    except SourceError as exc:
        raise PullError(f"refused a redirect: {exc}") from None


@contextmanager
def _locked(part: Path) -> Iterator[BinaryIO]:
    """The .part opened for appending, held exclusively; removed again if left empty."""
    fd = _open_part(part)
    with os.fdopen(fd, "a+b") as fh:
        try:
            # Two pulls of one file would interleave their bytes in the same .part.
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PullError(f"{part}: another corral pull is writing it; let it finish") from None
        try:
            yield fh
        finally:
            if part.exists() and fh.seek(0, os.SEEK_END) == 0:
                part.unlink()


def _open_part(part: Path) -> int:
    """The .part's descriptor, for appending; only ever a regular file of corral's own."""
    # O_NOFOLLOW: a .part planted as a symlink (to ~/.bashrc, say) would be overwritten.
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(part, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            message = f"{part}: is a symlink; corral pull writes only a file of its own"
            raise PullError(message) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PullError(f"{part}: is not a regular file; remove it and pull again")
    return fd


def _disk_error(exc: OSError, part: Path) -> PullError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return PullError(
            f"disk full: cannot write {part} ({exc.strerror}); "
            "free some space and run the same command again to resume"
        )
    where = exc.filename or part
    return PullError(f"{where}: {exc.strerror or exc}")


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry itself reaches the disk.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
