"""The preview window: OpenCV HighGUI, created, drawn, pumped and closed by one thread.

HighGUI (Qt in opencv-python) belongs to the thread that first uses it, so the window never sees
the pipeline's threads: the output thread only hands frames over (:class:`vcam.sinks.PreviewSink`),
and the thread that owns the window (the main thread of ``vcam run``, the tray's GUI loop) calls
:meth:`PreviewView.update` every few milliseconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .errors import VcamError
from .sinks import check_display

if TYPE_CHECKING:
    from .pipeline import Controller

log = logging.getLogger("vcam.preview")

TITLE = "vcam preview"
QUIT_KEYS = frozenset({ord("q"), ord("Q"), 27})  # 27 = Esc
PUMP_S = 0.015
"""Longest the window goes without handling its events while it is open."""


SYSTEM_FONTS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))


def point_qt_at_system_fonts() -> None:
    """Give OpenCV's Qt a folder of fonts before its first window. opencv-python points
    ``QT_QPA_FONTDIR`` at its own ``cv2/qt/fonts`` when imported but ships no fonts there, and Qt
    then prints a warning to the terminal on every start. Qt reads the folder without descending
    into subfolders, so this is the first system folder holding TrueType fonts (DejaVu's when
    installed); a folder that exists is left alone."""
    current = os.environ.get("QT_QPA_FONTDIR")
    if current and Path(current).is_dir():
        return
    for root in SYSTEM_FONTS:
        folders = sorted({font.parent for font in root.rglob("*.ttf")}, key=lambda folder: ("dejavu" not in str(folder).lower(), str(folder)))
        if folders:
            os.environ["QT_QPA_FONTDIR"] = str(folders[0])
            return


class PreviewWindow:
    """One OpenCV window; ``show`` opens it on the first frame. ``closed_by_user`` turns True
    when the user closes it or presses q or Esc."""

    def __init__(self, title: str = TITLE) -> None:
        self.title = title
        self.is_open = False
        self.closed_by_user = False

    def show(self, frame: np.ndarray) -> None:
        if not self.is_open:
            check_display()
            point_qt_at_system_fonts()
            cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE)
            self.is_open, self.closed_by_user = True, False
        cv2.imshow(self.title, frame)

    def pump(self) -> None:
        """Handle the window's events (drawing, keys, the close button)."""
        if not self.is_open:
            return
        key = cv2.waitKey(1)
        if key in QUIT_KEYS or not self._visible():
            self.closed_by_user = True
            self.close()

    def close(self) -> None:
        if self.is_open:
            with contextlib.suppress(cv2.error):  # already gone
                cv2.destroyWindow(self.title)  # a window the user closed is only hidden until then
            cv2.waitKey(1)  # lets HighGUI take the window down
        self.is_open = False

    def _visible(self) -> bool:
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:  # the window is gone
            return False


class PreviewView:
    """The pipeline's preview on the calling thread: shows the newest frame while the preview is
    on, closes the window when it is turned off, and tells the pipeline when the user closed it."""

    def __init__(self, pipeline: Controller, window: PreviewWindow | None = None) -> None:
        self.pipeline = pipeline
        self.window = window or PreviewWindow()

    def update(self, wait_s: float) -> None:
        """Show what the pipeline sent since the last call, waiting for a frame at most ``wait_s``
        (at most PUMP_S while the window is open, so it stays responsive)."""
        self._handle_user_close()  # a window whose events its own toolkit loop handles closes in between
        if not self.pipeline.preview:
            self.window.close()
            self.pipeline.finished.wait(wait_s)
            return
        frame = self.pipeline.preview_feed.take(min(wait_s, PUMP_S) if self.window.is_open else wait_s)
        try:
            if frame is not None:
                self.window.show(frame)
        except VcamError as exc:  # no display: keep running without the preview
            log.warning("%s", exc)
            self.pipeline.preview_closed()
            return
        self.window.pump()
        self._handle_user_close()

    def _handle_user_close(self) -> None:
        if self.window.closed_by_user:
            self.window.closed_by_user = False
            self.pipeline.preview_closed()

    def close(self) -> None:
        self.window.close()
