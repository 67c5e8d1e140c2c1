"""`vcam tray`: the running pipeline behind a system tray icon (pystray).

A thin view: the menu comes from `tray.menu.build_menu`, every click calls the controller, and
the icon, tooltip and menu follow the controller's status through its listener.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from vcam.errors import VcamError
from vcam.pipeline import PipelineState, PipelineStatus
from vcam.preview import PUMP_S, PreviewView, PreviewWindow

from .backends import GTK_BACKENDS, choose_backend
from .icons import icon_for
from .menu import SEPARATOR, MenuEntry, build_menu, status_text

if TYPE_CHECKING:
    import pystray

    from vcam.pipeline import Controller

    from .gtk_preview import GtkPreviewWindow

_log = logging.getLogger(__name__)

_TOOLTIP_LIMIT = 127  # a Windows tooltip holds 127 characters; pystray fails on longer ones
_WORKER_TIMEOUT_S = 5.0
_X11_FLUSH_INTERVAL_S = 0.2
_STATUS_REFRESH_S = 1.0


def run_tray(controller: Controller) -> None:
    """Show the tray icon for an already started pipeline until Quit, Ctrl+C or the pipeline
    stopping by other means; the pipeline is asked to stop in every case.

    Call it on the main thread: macOS runs GUI event loops only there, and pystray's loop runs here.
    """
    app = TrayApp(controller)
    # Ctrl+C and SIGTERM quit like the menu (pystray's X11 loop would swallow KeyboardInterrupt, logging a traceback)
    previous = {sig: signal.signal(sig, lambda _signum, _frame: app.quit()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        app.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def open_with_os(path: Path) -> None:
    """Open a file or folder with the desktop's default application."""
    try:
        if sys.platform == "win32":
            os.startfile(path)
        else:
            opener = "open" if sys.platform == "darwin" else "xdg-open"
            subprocess.Popen([opener, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as exc:
        _log.warning("Could not open %s (%s); open it from your file manager.", path, exc)


class TrayApp:
    """The pystray icon over a controller.

    Threads: pystray's event loop runs in `run`'s thread and calls menu actions there; the
    controller's listener only sets an event; one worker (pystray's setup thread, `_serve`) is
    the only code that changes the icon, so pipeline threads never wait on the GUI; on X11 a
    small thread keeps pystray's connection flowing (see `_unstick_x11`).
    """

    def __init__(self, controller: Controller) -> None:
        status = controller.status()
        self.backend = choose_backend()
        try:
            import pystray

            self.icon = pystray.Icon(
                "vcam", icon_for(status.state), title="vcam", menu=pystray.Menu(self._menu_items)
            )
        # pystray picks its backend and connects to the display on import, failing with
        # backend-specific errors (ImportError, Xlib display errors, ...)
        except Exception as exc:
            raise VcamError(
                f"Cannot show a tray icon here ({exc}); start vcam from a desktop session, "
                "or use `vcam run` without the tray."
            ) from exc
        self._controller = controller
        self._shown_state = status.state
        self._wake = threading.Event()
        self._quit = threading.Event()
        self._loop_ended = threading.Event()
        self._served = threading.Event()
        self._preview = PreviewView(controller, self._preview_window())

    def run(self) -> None:
        """Run the tray until Quit or until the pipeline stops; the pipeline is asked to stop."""
        self._controller.add_listener(self._wake.set)
        self._wake.set()  # catch up with changes since __init__
        threading.Thread(target=_unstick_x11, args=(self.icon, self._loop_ended), daemon=True).start()
        preview = self._start_preview()
        try:
            self.icon.run(setup=self._serve)
        except self._teardown_errors() as exc:
            # pystray's GTK icons close their desktop notification on the way out, which fails
            # on desktops without a notification service; the tray itself has ended cleanly
            if not self._quit.is_set():
                raise
            _log.debug("tray teardown: %s", exc)
        finally:
            self._loop_ended.set()
            if preview is None:
                self._preview.close()
            else:
                preview.join(_WORKER_TIMEOUT_S)
            self.quit()
            self._served.wait(_WORKER_TIMEOUT_S)
            # After Quit a no-op. If the loop ended on its own (its window destroyed, an X error),
            # this marks the icon stopped, which on the loop's own thread needs no loop; pystray's
            # X11 icon would otherwise wait for its dead loop forever when garbage collected.
            self.icon.stop()

    def _teardown_errors(self) -> tuple[type[Exception], ...]:
        if self.backend not in GTK_BACKENDS:
            return ()
        from gi.repository import GLib

        return (GLib.Error,)

    def _preview_window(self) -> PreviewWindow | GtkPreviewWindow:
        """HighGUI's Qt and GTK crash together in one process: with a GTK backend GTK draws it."""
        if self.backend in GTK_BACKENDS:
            from .gtk_preview import GtkPreviewWindow

            return GtkPreviewWindow()
        return PreviewWindow()

    def _start_preview(self) -> threading.Thread | None:
        """Keep the preview window going on one thread: in the GTK loop (this thread) with a GTK
        backend, else on a thread of its own (None when it runs here)."""
        if self.backend in GTK_BACKENDS:
            from gi.repository import GLib

            def tick() -> bool:
                self._preview.update(wait_s=0)
                return not self._loop_ended.is_set()

            GLib.timeout_add(round(PUMP_S * 1000), tick)
            return None

        def pump() -> None:
            while not self._loop_ended.is_set():
                self._preview.update(wait_s=0.2)
            self._preview.close()

        thread = threading.Thread(target=pump, name="vcam-preview", daemon=True)
        thread.start()
        return thread

    def quit(self) -> None:
        """Stop the pipeline and remove the icon (from any thread; the Quit entry calls it)."""
        self._quit.set()
        self._wake.set()

    def _menu_items(self) -> tuple[pystray.MenuItem, ...]:
        """Called by pystray whenever it (re)builds the native menu."""
        return _to_pystray(build_menu(self._controller, open_with_os, self.quit))

    def _serve(self, icon: pystray.Icon) -> None:
        try:
            icon.visible = True
            while True:
                self._wake.wait(_STATUS_REFRESH_S)  # the fps and latency change without a state change
                self._wake.clear()
                status = self._controller.status()
                if self._quit.is_set() or status.state is PipelineState.STOPPED:
                    return
                self._show(status)
        finally:
            self._controller.stop()
            if not self._loop_ended.is_set():  # stopping the icon goes through its loop
                icon.stop()
            self._served.set()

    def _show(self, status: PipelineStatus) -> None:
        if status.state is not self._shown_state:
            self.icon.icon = icon_for(status.state)
            self._shown_state = status.state
        tooltip = f"vcam: {status_text(status)}"[:_TOOLTIP_LIMIT]
        try:
            self.icon.title = tooltip
        except UnicodeEncodeError:  # pystray's plain X11 backend stores it as a Latin-1 window name
            self.icon.title = tooltip.encode("latin-1", "replace").decode("latin-1")
        if self.backend == "gtk":  # pystray's GTK icon shows its title nowhere; the tooltip is what users see
            from gi.repository import GLib

            GLib.idle_add(self.icon._status_icon.set_tooltip_text, tooltip)
        self.icon.update_menu()


def _unstick_x11(icon: pystray.Icon, until: threading.Event) -> None:
    """Flush pystray's X11 connection every so often until `until` is set.

    pystray's X11 backend shares one python-xlib connection between its event thread and the
    threads that change the icon. When two of them flush at once, python-xlib (0.33) can leave
    requests unsent, or a thread waiting for a reply that nobody reads: the icon would not update,
    and Quit would hang. Any later flush from another thread sets it going again. Other backends
    have no `_display` and need none of this.
    """
    display = getattr(icon, "_display", None)
    while display is not None and not until.wait(_X11_FLUSH_INTERVAL_S):
        display.flush()


def _to_pystray(entries: tuple[MenuEntry, ...]) -> tuple[pystray.MenuItem, ...]:
    import pystray

    def item(entry: MenuEntry) -> pystray.MenuItem:
        if entry is SEPARATOR:
            return pystray.Menu.SEPARATOR
        action: pystray.Menu | Callable[[pystray.Icon, pystray.MenuItem], None] | None = None
        if entry.submenu:
            action = pystray.Menu(*_to_pystray(entry.submenu))
        elif entry.action is not None:
            action = _clicked(entry.action)
        checked = None if entry.checked is None else lambda _item: entry.checked
        return pystray.MenuItem(
            entry.text, action, checked=checked, radio=entry.radio, enabled=entry.enabled
        )

    return tuple(item(entry) for entry in entries)


def _clicked(action: Callable[[], None]) -> Callable[[pystray.Icon, pystray.MenuItem], None]:
    """pystray guesses what to pass from an action's parameter count; this form it calls as-is."""

    def on_click(_icon: pystray.Icon, _item: pystray.MenuItem) -> None:
        action()

    return on_click
