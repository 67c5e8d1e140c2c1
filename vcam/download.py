"""Model files from the Hugging Face Hub, checked against the sizes and sha256 that vcam pins.

Files land in the shared Hugging Face cache (``HF_HUB_CACHE``/``HF_HOME``), so weights another
program already fetched from the same repository are found and not downloaded again.
``huggingface_hub`` does the transfer: it resumes a download whose connection drops and writes
the file into the cache only once complete. Before downloading, the hash the Hub advertises
(the Git LFS object id) is compared with the pinned one; after, the file itself is hashed.
``HF_HUB_OFFLINE=1`` means: use the cache, never the network.

The environment (``HF_ENDPOINT``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``) is read on every call,
so a changed environment applies even after ``huggingface_hub`` was imported.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .errors import VcamError

Progress = Callable[[int, int | None], None]
"""Called with (bytes done, total bytes or None); the last call of a finished download has done == total."""

_CHUNK = 1 << 20


@dataclass(frozen=True)
class HubFile:
    """One file of a Hub model repository with its pinned size and sha256."""

    repo_id: str
    path: str
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class _Hub:
    endpoint: str | None
    cache_dir: str | None
    offline: bool

    @classmethod
    def from_environment(cls) -> _Hub:
        from huggingface_hub import constants

        offline_env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
        return cls(
            endpoint=os.environ.get("HF_ENDPOINT") or None,
            cache_dir=os.environ.get("HF_HUB_CACHE") or None,
            offline=offline_env or constants.HF_HUB_OFFLINE,
        )

    @property
    def host(self) -> str:
        return self.endpoint or "huggingface.co"


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids the network."""
    return _Hub.from_environment().offline


def cached(file: HubFile) -> Path | None:
    """The file from the Hugging Face cache when it is there and intact, else None (no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(file.repo_id, file.path, cache_dir=_Hub.from_environment().cache_dir)
    if not isinstance(found, str):
        return None
    path = Path(found)
    if not path.is_file() or path.stat().st_size != file.size or sha256_file(path) != file.sha256:
        return None
    return path


def fetch(file: HubFile, progress: Progress | None = None) -> Path:
    """The verified file in the Hugging Face cache, downloaded first when it is missing or damaged."""
    hub = _Hub.from_environment()
    kept = cached(file)
    if kept is not None:
        return kept
    if hub.offline:
        raise VcamError(
            f"{file.path} is not in the Hugging Face cache and HF_HUB_OFFLINE is set: unset HF_HUB_OFFLINE to download "
            f"it ({file.size / 1e6:.0f} MB from {hub.host}), or keep running the labelled demo model"
        )
    _check_advertised(file, hub)
    path = Path(_download(file, hub, progress or _silent))
    actual = sha256_file(path)
    if actual != file.sha256:
        _evict(path)
        raise VcamError(
            f"{file.path} from {hub.host} does not match its pinned sha256 (got {actual[:12]}…, expected {file.sha256[:12]}…) "
            "and was deleted: run `vcam weights fetch` again; if it persists, the server sends a damaged file"
        )
    return path


def _check_advertised(file: HubFile, hub: _Hub) -> None:
    """Refuse, before downloading, a file whose advertised hash or size differs from the pinned one."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(file.repo_id, file.path, endpoint=hub.endpoint)
    try:
        metadata = get_hf_file_metadata(url, endpoint=hub.endpoint)
    except Exception as exc:  # huggingface_hub raises its HTTP library's own errors for network failures
        raise _unreachable(file, hub, exc) from None
    advertised = (metadata.etag or "").lower()
    if advertised != file.sha256 or (metadata.size is not None and metadata.size != file.size):
        raise VcamError(
            f"{hub.host} now serves a different {file.path} (sha256 {advertised[:12] or '?'}…, {metadata.size} bytes) "
            f"than the one vcam pins (sha256 {file.sha256[:12]}…, {file.size} bytes): the upstream weights changed, "
            "nothing was downloaded — update vcam, or download the files yourself and run `vcam weights import`"
        )


def _download(file: HubFile, hub: _Hub, progress: Progress) -> str:
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(
            file.repo_id, file.path, cache_dir=hub.cache_dir, endpoint=hub.endpoint,
            force_download=_in_cache(file, hub), tqdm_class=progress_bar_class(progress),  # type: ignore[arg-type]
        )
    except Exception as exc:  # network errors, HTTP errors, a full disk: all end this download
        raise _unreachable(file, hub, exc) from None


def _in_cache(file: HubFile, hub: _Hub) -> bool:
    """A (damaged) copy is in the cache: the download must replace it."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(file.repo_id, file.path, cache_dir=hub.cache_dir), str)


def _unreachable(file: HubFile, hub: _Hub, error: Exception) -> VcamError:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return VcamError(
        f"cannot download {file.path} from {hub.host} ({reason}); check the network and run `vcam weights fetch` again, "
        "or keep running the labelled demo model"
    )


def _evict(path: Path) -> None:
    """Remove a bad file from the cache: the snapshot entry and the blob it points to."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def progress_bar_class(report: Progress) -> type[ProgressBar]:
    """A tqdm stand-in class for ``huggingface_hub`` that reports to ``report`` and draws nothing."""
    return type("ReportingProgressBar", (ProgressBar,), {"report": staticmethod(report)})


class ProgressBar:
    """The part of tqdm's interface that ``huggingface_hub`` drives, for both of its transfers (plain
    HTTP, and Xet, which also reports network bytes through ``update_transfer``: only the file's
    bytes count here). Subclasses set ``report``; see :func:`progress_bar_class`."""

    report: Progress

    def __init__(self, *, total: int | None = None, initial: int = 0, **_: Any) -> None:
        self.total, self.n = total, initial
        self.report(initial, total)

    def update(self, n: int | float = 1) -> None:
        self.n += int(n)
        self.report(self.n, self.total)

    def update_transfer(self, n: int | float = 1) -> None:
        """Network bytes (compressed, deduplicated): not the file's progress."""

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        """Speed text for a drawn bar; the report computes its own."""

    set_transfer_postfix_str = set_postfix_str

    def refresh(self) -> None:
        """Nothing is drawn."""

    def close(self) -> None:
        if self.total is None:
            self.report(self.n, self.n)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def terminal_progress(label: str, stream: TextIO | None = None) -> Progress:
    """A single-line progress bar (percent, MB, MB/s, time left) redrawn in place on `stream` (default stderr)."""
    return _TerminalProgress(label, stream or sys.stderr)


@dataclass
class _TerminalProgress:
    label: str
    stream: TextIO
    redraw_every: float = 0.1
    _start: tuple[float, int] | None = field(default=None, init=False)
    _last_draw: float = field(default=float("-inf"), init=False)
    _finished: bool = field(default=False, init=False)

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = (now, done)
        finished = total is not None and done >= total
        if self._finished or (not finished and now - self._last_draw < self.redraw_every):
            return
        self._last_draw, self._finished = now, finished
        started, start_bytes = self._start
        rate = (done - start_bytes) / max(now - started, 1e-6)
        if total:
            width = 24
            filled = width * min(done, total) // total
            bar = f"[{'#' * filled}{'.' * (width - filled)}] {100 * done // total:3d}%"
            amount = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB"
            left = f" {(total - done) / rate:.0f} s left" if rate > 0 and not finished else ""
        else:
            bar, amount, left = "", f"{done / 1e6:.1f} MB", ""
        line = f"\r{self.label} {bar} {amount} {rate / 1e6:.1f} MB/s{left}"
        self.stream.write(line + "\x1b[K" + ("\n" if finished else ""))
        self.stream.flush()


def _silent(done: int, total: int | None) -> None:
    """Progress callback used when the caller passes none."""
