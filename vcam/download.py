"""Resumable, checksum-verified HTTP downloads (stdlib only), used by `vcam weights fetch`.

A download streams into `<dest>.part`; an interrupted one is resumed with an HTTP Range request
on the next call. The finished file is verified against a SHA-256 and only then renamed into place,
so the destination path never holds a partial or unverified file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path, PurePosixPath
from typing import TextIO

from vcam import __version__
from vcam.errors import VcamError

Progress = Callable[[int, int | None], None]
"""Called with (bytes done, total bytes or None); the last call of a finished download has done == total."""

_CHUNK = 1 << 20
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")


@dataclass(frozen=True)
class RemoteFile:
    """A file to download: `path` is relative to the destination folder, with `/` separators."""

    url: str
    path: str
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Fetched:
    """Result of `fetch`: the verified file, its SHA-256 (pinned, server-advertised or computed),
    the byte offset the download resumed from and the bytes transferred by this call
    (0 when an already verified file was kept)."""

    path: Path
    sha256: str
    resumed_from: int
    downloaded: int


def fetch(
    remote: RemoteFile,
    dest_dir: Path,
    progress: Progress | None = None,
    timeout: float = 30.0,
) -> Fetched:
    """Download `remote` into `dest_dir`, resuming a previous partial download, and verify it.

    The expected SHA-256 is `remote.sha256`, else the one the server advertises (Hugging Face
    sends the LFS object's hash as `X-Linked-ETag`/`ETag`); with neither, the computed hash is
    returned. An existing file is kept without downloading when it matches the pinned hash, or,
    with no pinned hash, when its size matches `remote.size` (or no size is known).
    """
    final = _destination(remote, dest_dir)
    if final.is_file():
        kept = _verified_existing(final, remote)
        if kept is not None:
            return kept
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    resumed_from, downloaded, expected, actual = _download(remote, part, progress or _silent, timeout)
    if expected is not None and actual != expected.lower():
        part.unlink()
        raise VcamError(
            f"{remote.path}: checksum mismatch (expected sha256 {expected[:12]}…, got {actual[:12]}…); "
            "run `vcam weights fetch` again; if it persists the file on the server changed"
        )
    os.replace(part, final)
    return Fetched(final, actual, resumed_from, downloaded)


def terminal_progress(label: str, stream: TextIO | None = None) -> Progress:
    """A single-line progress bar (percent, MB, MB/s) redrawn in place on `stream` (default stderr)."""
    return _TerminalProgress(label, stream or sys.stderr)


@dataclass
class _TerminalProgress:
    label: str
    stream: TextIO
    redraw_every: float = 0.1
    _start: tuple[float, int] | None = field(default=None, init=False)
    _last_draw: float = field(default=float("-inf"), init=False)

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = (now, done)
        finished = total is not None and done >= total
        if not finished and now - self._last_draw < self.redraw_every:
            return
        self._last_draw = now
        started, start_bytes = self._start
        speed = (done - start_bytes) / max(now - started, 1e-6) / 1e6
        if total:
            width = 24
            filled = width * min(done, total) // total
            bar = f"[{'#' * filled}{'.' * (width - filled)}] {100 * done // total:3d}%"
            amount = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB"
        else:
            bar, amount = "", f"{done / 1e6:.1f} MB"
        line = f"\r{self.label} {bar} {amount} {speed:.1f} MB/s"
        self.stream.write(line + "\x1b[K" + ("\n" if finished else ""))
        self.stream.flush()


def _destination(remote: RemoteFile, dest_dir: Path) -> Path:
    relative = PurePosixPath(remote.path)
    if relative.is_absolute() or not relative.parts or ".." in relative.parts:
        raise VcamError(f"bad download path {remote.path!r}: it must be relative and stay inside {dest_dir}")
    return dest_dir.joinpath(*relative.parts)


def _verified_existing(final: Path, remote: RemoteFile) -> Fetched | None:
    if remote.size is not None and final.stat().st_size != remote.size:
        return None
    digest = _file_sha256(final).hexdigest()
    if remote.sha256 is not None and digest != remote.sha256.lower():
        return None
    return Fetched(final, digest, 0, 0)


def _download(
    remote: RemoteFile, part: Path, report: Progress, timeout: float
) -> tuple[int, int, str | None, str]:
    """Stream `remote` into `part`; returns (resumed from, bytes transferred, expected sha256, actual sha256)."""
    offset = part.stat().st_size if part.is_file() else 0
    if remote.size is not None and offset > remote.size:
        offset = 0
    spy = _AdvertisedHash()
    try:
        with _open(urllib.request.build_opener(spy), remote.url, offset, timeout) as response:
            offset, total = _resume_point(response, offset, remote.size)
            expected = remote.sha256 or spy.sha256 or _advertised_sha256(response.headers)
            digest = _file_sha256(part, offset)
            done = offset
            with part.open("ab" if offset else "wb") as out:
                report(done, total)
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    report(done, total)
                out.flush()
                os.fsync(out.fileno())
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise _interrupted(remote, part, error) from None
    if total is not None and done < total:
        raise _interrupted(remote, part, f"connection closed after {done} of {total} bytes")
    if total is None:
        report(done, done)
    return offset, done - offset, expected, digest.hexdigest()


def _open(opener: urllib.request.OpenerDirector, url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    """GET `url` from byte `offset`; a 416 (the part is complete, or not a prefix of this file) restarts from zero."""
    request = urllib.request.Request(url, headers={"User-Agent": f"vcam/{__version__}"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if offset and error.code == 416:
            error.close()
            return _open(opener, url, 0, timeout)
        raise


def _resume_point(response: http.client.HTTPResponse, offset: int, size: int | None) -> tuple[int, int | None]:
    """(offset the body starts at, total file size or None); a 200 reply restarts from zero."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match is None or int(match[1]) != offset:
            raise http.client.HTTPException("the server sent a byte range other than the one requested")
        return offset, int(match[2]) if match[2] != "*" else size
    length = response.headers.get("Content-Length")
    return 0, int(length) if length is not None else size


def _interrupted(remote: RemoteFile, part: Path, error: object) -> VcamError:
    if part.is_file() and part.stat().st_size:
        then = f"the partial download is kept in {part} and the next `vcam weights fetch` resumes it"
    else:
        then = "run `vcam weights fetch` again"
    return VcamError(f"download of {remote.path} failed ({_reason(error)}); {then}")


def _reason(error: object) -> object:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    return getattr(error, "reason", None) or error  # URLError wraps the socket error in .reason


def _silent(done: int, total: int | None) -> None:
    """Progress callback used when the caller passes none."""


def _file_sha256(path: Path, length: int | None = None) -> hashlib._Hash:
    """SHA-256 of the first `length` bytes of `path` (all of it when None; nothing when 0)."""
    digest = hashlib.sha256()
    if length == 0:
        return digest
    remaining = length if length is not None else path.stat().st_size
    with path.open("rb") as source:
        while remaining > 0 and (chunk := source.read(min(_CHUNK, remaining))):
            digest.update(chunk)
            remaining -= len(chunk)
    return digest


def _advertised_sha256(headers: Message) -> str | None:
    """The SHA-256 a server advertises for the file (Hugging Face: LFS object id as an ETag)."""
    for name in ("X-Linked-ETag", "ETag"):
        value = (headers.get(name) or "").strip().removeprefix("W/").strip('"').lower()
        if _SHA256_HEX.fullmatch(value):
            return value
    return None


class _AdvertisedHash(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib does, remembering a hash advertised by a redirecting response
    (Hugging Face puts `X-Linked-ETag` on the 302 that points at its CDN)."""

    def __init__(self) -> None:
        super().__init__()
        self.sha256: str | None = None

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        self.sha256 = self.sha256 or _advertised_sha256(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)
