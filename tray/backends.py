"""Which pystray backend shows the icon here, chosen before pystray is imported.

On Linux the menu needs a backend built on GTK (PyGObject): `appindicator` where a
StatusNotifier host runs (KDE, GNOME with the AppIndicator extension, most panels), `gtk` where
an XEmbed system tray runs (XFCE, MATE, LXDE, stalonetray, trayer). pystray's plain X11 backend
has no menu; it is used only without PyGObject, with a warning. Without any tray host vcam says
so instead of running an icon nobody can see. `PYSTRAY_BACKEND` overrides the choice.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from vcam.errors import VcamError

_log = logging.getLogger(__name__)

STATUS_NOTIFIER_WATCHER = "org.kde.StatusNotifierWatcher"
GTK_BACKENDS = frozenset({"appindicator", "gtk"})
INSTALL_HINT = (
    "on GNOME install the AppIndicator extension (Debian/Ubuntu: gnome-shell-extension-appindicator), "
    "elsewhere enable your panel's system tray or notification area, or run a tray such as trayer or stalonetray"
)
GI_HINT = (
    "install the tray packages README lists (Debian/Ubuntu: gir1.2-ayatanaappindicator3-0.1 gir1.2-gtk-3.0) "
    "and `pip install 'PyGObject<3.51'`"
)


def choose_backend() -> str | None:
    """The pystray backend name for this desktop (None: pystray's own choice, as on Windows and
    macOS), also put in PYSTRAY_BACKEND for pystray to read on import."""
    chosen = os.environ.get("PYSTRAY_BACKEND") or None
    if chosen is None and sys.platform.startswith("linux"):
        chosen = _linux_backend()
        os.environ["PYSTRAY_BACKEND"] = chosen
    return chosen


def _linux_backend() -> str:
    gtk = _have_gtk()
    bus = gtk and _session_bus()
    if bus and _have_appindicator() and _status_notifier_host(bus):
        return "appindicator"
    if _xembed_tray():
        if bus:
            return "gtk"
        if gtk:  # pystray's GTK icons need the session bus (for notifications)
            _log.warning("The tray icon has no menu without a D-Bus session bus: start vcam from your desktop session "
                         "(or under dbus-run-session).")
        else:
            _log.warning("The tray icon has no menu without PyGObject: %s.", GI_HINT)
        return "xorg"
    if not gtk and not os.environ.get("DISPLAY"):
        raise VcamError("Cannot show a tray icon here: no desktop session (DISPLAY is not set); "
                        "start vcam from a desktop session, or use `vcam run` without the tray.")
    raise VcamError(f"No system tray is running on this desktop: {INSTALL_HINT}; or use `vcam run` without the tray.")


def _have_gtk() -> bool:
    try:
        import gi

        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk  # noqa: F401
    except (ImportError, ValueError):
        return False
    return True


def _have_appindicator() -> bool:
    import gi

    for name in ("AyatanaAppIndicator3", "AppIndicator3"):
        try:
            gi.require_version(name, "0.1")
            return True
        except ValueError:
            continue
    return False


def _session_bus() -> Any:
    """The desktop session's D-Bus connection, or None."""
    from gi.repository import Gio, GLib

    try:
        return Gio.bus_get_sync(Gio.BusType.SESSION, None)
    except GLib.Error:
        return None


def _status_notifier_host(bus: Any) -> bool:
    """Whether a StatusNotifier watcher (the AppIndicator protocol's registry) is on the session bus."""
    from gi.repository import Gio, GLib

    try:
        reply = bus.call_sync(
            "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner",
            GLib.Variant("(s)", (STATUS_NOTIFIER_WATCHER,)), GLib.VariantType("(b)"), Gio.DBusCallFlags.NONE, 1000, None,
        )
    except GLib.Error:
        return False
    return bool(reply.unpack()[0])


def _xembed_tray() -> bool:
    """Whether an XEmbed system tray owns the tray selection of the default screen."""
    if not os.environ.get("DISPLAY"):
        return False
    try:
        from Xlib import X, display, error
    except ImportError:
        return False
    try:
        screen = display.Display()
    except (error.DisplayError, OSError):
        return False
    try:
        atom = screen.intern_atom(f"_NET_SYSTEM_TRAY_S{screen.get_default_screen()}")
        return screen.get_selection_owner(atom) != X.NONE
    finally:
        screen.close()
