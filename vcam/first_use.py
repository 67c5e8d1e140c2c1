"""Weights on first use: when ``vcam run`` or ``vcam tray`` would start on the demo model, offer
the real one — a terminal prompt, ``--yes`` for scripts, or the tray's "Download avatar weights".

Without a terminal to ask and without ``--yes`` nothing blocks: the run starts on the labelled
demo model and its warning says how to get the weights. Weights already in the Hugging Face cache
(fetched for LivePortrait itself, say) are converted without asking, since nothing is downloaded.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from .download import offline, terminal_progress
from .errors import VcamError
from .settings import Settings

log = logging.getLogger("vcam")


def weights_missing(settings: Settings) -> bool:
    """The chosen model has an official download and is not installed yet."""
    from .weights import HUB_FILES, MANIFEST

    return settings.model in HUB_FILES and not (settings.weights_dir / settings.model / MANIFEST).is_file()


def offer_weights(
    settings: Settings,
    assume_yes: bool,
    ask: Callable[[str], str] | None = None,
    stream: TextIO | None = None,
) -> Path | None:
    """Install the missing official weights when the user agrees; the weights folder, or None when the
    run goes on with the demo model. ``ask`` prompts and returns the answer (default: a question on
    the terminal when stdin and stderr are one, else none is asked)."""
    from . import weights

    if not weights_missing(settings):
        return None
    stream = stream or sys.stderr
    dest = settings.weights_dir / settings.model
    size = weights.download_size(settings.model)
    if size == 0:
        stream.write(f"vcam: converting the {settings.model} weights found in the Hugging Face cache\n")
    elif offline() and not assume_yes:
        return None
    elif not assume_yes:
        ask = ask or _terminal_prompt()
        if ask is None:
            return None
        answer = ask(f"vcam: no {settings.model} weights yet. Download them from Hugging Face now ({size / 1e6:.0f} MB)? [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            return None
    weights.fetch(settings.model, dest, progress=lambda name: terminal_progress(f"  {name}", stream))
    stream.write(f"vcam: installed {settings.model} weights in {dest}\n")
    return dest


def _terminal_prompt() -> Callable[[str], str] | None:
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None

    def ask(question: str) -> str:
        sys.stderr.write(question)
        sys.stderr.flush()
        try:
            return sys.stdin.readline()
        except KeyboardInterrupt:
            return ""

    return ask


class WeightsDownload:
    """The tray's "Download avatar weights": fetch and install in a background thread, with the
    progress in words for the menu. ``on_change`` is called (from that thread) on every visible change;
    ``on_installed`` with the weights folder once installed."""

    def __init__(
        self,
        settings: Settings,
        on_change: Callable[[], None] = lambda: None,
        on_installed: Callable[[Path], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_change = on_change
        self.on_installed = on_installed
        self._lock = threading.Lock()
        self._text = "Download avatar weights"
        self._running = False
        self._done = False
        self._percent = -1
        self._thread: threading.Thread | None = None

    @property
    def text(self) -> str:
        """What the menu shows: the offer, the progress, the result or the error."""
        with self._lock:
            return self._text

    @property
    def available(self) -> bool:
        """The entry can be clicked: nothing running and nothing installed yet."""
        with self._lock:
            return not self._running and not self._done

    def start(self) -> None:
        """Begin the download in the background (nothing happens while one runs or after success)."""
        with self._lock:
            if self._running or self._done:
                return
            self._running = True
            self._thread = threading.Thread(target=self._run, name="vcam-weights-download", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the download (and the switch to the installed model) to end; False on timeout."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _run(self) -> None:
        from . import weights

        files = weights.HUB_FILES[self.settings.model]
        dest = self.settings.weights_dir / self.settings.model
        total = sum(file.size for file in files)
        before = {file.name: sum(f.size for f in files[:i]) for i, file in enumerate(files)}

        def progress(name: str) -> Callable[[int, int | None], None]:
            return lambda done, _: self._progress(before[name] + done, total)

        try:
            weights.fetch(self.settings.model, dest, progress=progress)
        except VcamError as exc:
            log.warning("%s", exc)
            reason = str(exc) if len(str(exc)) <= 90 else str(exc)[:89] + "…"
            self._set(f"Download avatar weights again (failed: {reason})", running=False)
            return
        if self.on_installed is not None:
            try:
                self.on_installed(dest)
            except VcamError as exc:
                log.warning("%s", exc)
                self._set(f"Avatar weights installed in {dest}; restart vcam to use them", running=False, done=True)
                return
        self._set("Avatar weights installed", running=False, done=True)

    def _progress(self, done: int, total: int) -> None:
        """Progress over all files, redrawn when the percentage changes."""
        percent = 100 * done // total
        if percent == self._percent:
            return
        self._percent = percent
        self._set(f"Downloading avatar weights: {percent} % of {total / 1e6:.0f} MB", running=True)

    def _set(self, text: str, running: bool, done: bool = False) -> None:
        with self._lock:
            self._text, self._running, self._done = text, running, done
        self.on_change()
