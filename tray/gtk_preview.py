"""The preview window drawn by GTK, for the tray's GTK backends.

OpenCV's HighGUI (Qt) and GTK in one process crash as soon as HighGUI opens a window, so when the
tray runs GTK's loop the preview is a GTK window on that loop's thread, with the same interface
as :class:`vcam.preview.PreviewWindow`.
"""

from __future__ import annotations

import cv2
import gi
import numpy as np

gi.require_version("Gtk", "3.0")
gi.require_version("GdkPixbuf", "2.0")
from gi.repository import GdkPixbuf, GLib, Gtk  # noqa: E402

from vcam.preview import TITLE  # noqa: E402

QUIT_KEYS = frozenset({"q", "Q", "Escape"})


class GtkPreviewWindow:
    """One GTK window showing frames; call it from the GTK loop's thread only."""

    def __init__(self, title: str = TITLE) -> None:
        self.title = title
        self.is_open = False
        self.closed_by_user = False
        self._window: Gtk.Window | None = None
        self._image: Gtk.Image | None = None

    def show(self, frame: np.ndarray) -> None:
        if self._window is None:
            self._open()
        rgb = np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        height, width = rgb.shape[:2]
        pixbuf = GdkPixbuf.Pixbuf.new_from_bytes(
            GLib.Bytes.new(rgb.tobytes()), GdkPixbuf.Colorspace.RGB, False, 8, width, height, width * 3
        )
        self._image.set_from_pixbuf(pixbuf)

    def pump(self) -> None:
        """Nothing to do: the GTK loop that calls this handles the window's events."""

    def close(self) -> None:
        if self._window is not None:
            window, self._window = self._window, None
            window.destroy()
        self.is_open = False

    def _open(self) -> None:
        self._window = Gtk.Window(title=self.title)
        self._image = Gtk.Image()
        self._window.add(self._image)
        self._window.connect("delete-event", self._closed_by_user)
        self._window.connect("key-press-event", self._key)
        self._window.show_all()
        self.is_open, self.closed_by_user = True, False

    def _closed_by_user(self, *_args: object) -> bool:
        self.closed_by_user = True
        self.close()
        return True  # the window is destroyed above

    def _key(self, _window: Gtk.Window, event: object) -> bool:
        from gi.repository import Gdk

        if Gdk.keyval_name(event.keyval) in QUIT_KEYS:
            return self._closed_by_user()
        return False
