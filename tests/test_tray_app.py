"""tray.app and tray.icons: the real pystray icon on a real X server (Xvfb), docked into a
minimal system tray that the test runs; plus the icons and opening files with the OS."""

from __future__ import annotations

import gc
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from PIL import Image, ImageChops, ImageGrab, ImageStat
from Xlib import X, Xatom
from Xlib.display import Display
from Xlib.protocol.event import AnyEvent
from Xlib.xobject.drawable import Window
from tray_fakes import FakeController

from tray.app import TrayApp, open_with_os
from tray.icons import SIZE, icon_for
from tray.menu import status_text
from vcam.pipeline import PipelineState

TIMEOUT = 10.0
ICON_PX = 32  # the size the test's system tray gives the icon
CHILD_STARTUP_S = 60.0  # a new process imports torch first


# --- icons ------------------------------------------------------------------------------------


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two images' RGB channels (0..255)."""
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


def test_each_state_has_its_own_icon() -> None:
    icons = {state: icon_for(state) for state in PipelineState}
    assert all(icon.size == (SIZE, SIZE) and icon.mode == "RGBA" for icon in icons.values())
    states = list(icons)
    for i, a in enumerate(states):
        for b in states[i + 1 :]:
            assert difference(icons[a], icons[b]) > 0.5, f"{a} and {b} look alike"


def test_icons_are_drawn_once_per_state() -> None:
    assert icon_for(PipelineState.PAUSED) is icon_for(PipelineState.PAUSED)


# --- opening files with the OS -------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="xdg-open is the Linux opener")
def test_open_with_os_hands_the_path_to_xdg_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    received = tmp_path / "received"
    os.mkfifo(received)
    opener = bin_dir / "xdg-open"  # the desktop's opener, replaced by one that reports its argument
    opener.write_text(f'#!/bin/sh\nprintf "%s" "$1" > "{received}"\n')
    opener.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    reader = os.open(received, os.O_RDONLY | os.O_NONBLOCK)
    try:
        open_with_os(tmp_path / "settings.toml")
        assert select.select([reader], [], [], TIMEOUT)[0], "xdg-open was not run"
        assert os.read(reader, 4096).decode() == str(tmp_path / "settings.toml")
    finally:
        os.close(reader)


def test_open_with_os_without_an_opener_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no xdg-open / open here
    monkeypatch.setattr(sys, "platform", "linux")
    with caplog.at_level(logging.WARNING, logger="tray.app"):
        open_with_os(tmp_path / "profiles")
    [record] = caplog.records
    assert str(tmp_path / "profiles") in record.getMessage()


# --- the tray on a real X server ---------------------------------------------------------------


class SystemTray:
    """A minimal freedesktop.org system tray, like a desktop panel: owns the tray selection and
    embeds (reparents and maps) every icon window that asks to dock."""

    def __init__(self, display_name: str) -> None:
        self.display_name = display_name
        self.display = Display(display_name)
        screen = self.display.screen()
        self.window = screen.root.create_window(0, 0, 200, ICON_PX, 0, screen.root_depth)
        self.window.map()
        tray_atom = self.display.intern_atom(f"_NET_SYSTEM_TRAY_S{self.display.get_default_screen()}")
        self.window.set_selection_owner(tray_atom, X.CurrentTime)
        self._opcode = self.display.intern_atom("_NET_SYSTEM_TRAY_OPCODE")
        self.display.sync()

    def close(self) -> None:
        self.display.close()

    def wait_for(self, matches: Callable[[AnyEvent], bool], what: str, timeout: float = TIMEOUT) -> AnyEvent:
        """The next X event that `matches`, waiting at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            while self.display.pending_events():
                event = self.display.next_event()
                if matches(event):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.display], [], [], remaining)[0]:
                raise AssertionError(f"timed out waiting for {what}")

    def wait_for_dock(self, timeout: float = TIMEOUT) -> Window:
        request = self.wait_for(
            lambda e: e.type == X.ClientMessage
            and e.client_type == self._opcode
            and e.data[1][1] == 0,  # SYSTEM_TRAY_REQUEST_DOCK
            "an icon to ask for docking",
            timeout,
        )
        icon = self.display.create_resource_object("window", request.data[1][2])
        icon.change_attributes(event_mask=X.PropertyChangeMask | X.StructureNotifyMask)
        icon.reparent(self.window, 0, 0)
        icon.configure(width=ICON_PX, height=ICON_PX)
        icon.map()
        self.display.sync()
        return icon

    def wait_for_title(self, icon: Window, title: str) -> None:
        if window_name(icon) != title:
            self.wait_for(
                lambda e: e.type == X.PropertyNotify and window_name(icon) == title,
                f"the tooltip {title!r}",
            )

    def wait_for_destroy(self, icon: Window) -> None:
        self.wait_for(
            lambda e: e.type == X.DestroyNotify and e.window.id == icon.id, "the icon window to go"
        )

    def picture(self) -> Image.Image:
        """What the docked icon shows on screen (the tray sits in the top left corner)."""
        return ImageGrab.grab(bbox=(0, 0, ICON_PX, ICON_PX), xdisplay=self.display_name)


def window_name(window: Window) -> str:
    """The window's title (WM_NAME, Latin-1), read in one request: python-xlib's get_wm_name reads
    long names in two, which fails when the name changes in between."""
    name = window.get_property(Xatom.WM_NAME, Xatom.STRING, 0, 1024)
    return "" if name is None else bytes(name.value).decode("latin-1")


@pytest.fixture
def system_tray(x_display: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[SystemTray]:
    monkeypatch.setenv("DISPLAY", x_display)
    monkeypatch.setenv("PYSTRAY_BACKEND", "xorg")
    threads_before = set(threading.enumerate())
    tray = SystemTray(x_display)
    yield tray
    for thread in set(threading.enumerate()) - threads_before:
        thread.join(TIMEOUT)
        assert not thread.is_alive(), f"the tray left {thread.name} running"
    tray.close()
    gc.collect()  # pystray icons close their X connection when collected: while the server still runs


def shown_as(picture: Image.Image, state: PipelineState) -> bool:
    """Whether the docked icon shows this state's icon rather than any other state's."""
    expected = icon_for(state).resize(picture.size)
    others = [icon_for(s).resize(picture.size) for s in PipelineState if s is not state]
    return difference(picture, expected) < min(difference(picture, other) for other in others)


def tooltip(controller: FakeController) -> str:
    return f"vcam: {status_text(controller.status())}"


def start(app: TrayApp) -> threading.Thread:
    """Run the tray in a thread, as the main thread would (fine for X; macOS needs the main one)."""
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    return thread


def test_tray_docks_follows_the_pipeline_and_quits(system_tray: SystemTray, tmp_path: Path) -> None:
    controller = FakeController(tmp_path)
    app = TrayApp(controller)
    thread = start(app)
    try:
        icon = system_tray.wait_for_dock()
        system_tray.wait_for_title(icon, tooltip(controller))
        assert icon.get_wm_class() == ("vcamSystemTrayIcon", "vcam")

        # the pipeline loses the face: tooltip and icon follow
        controller.set_status(state=PipelineState.FACE_LOST, fps=28.0)
        system_tray.wait_for_title(icon, tooltip(controller))
        assert shown_as(system_tray.picture(), PipelineState.FACE_LOST)

        # the real pystray menu mirrors the menu model
        items = {item.text: item for item in app.icon.menu}
        assert items["Frontalize"].checked is False
        avatars = {item.text: item.checked for item in items["Avatar"].submenu}
        assert avatars == {"default": True, "alice": False, "bob": False}
        items["Pause"](app.icon)  # what the desktop does when the entry is clicked
        system_tray.wait_for_title(icon, tooltip(controller))
        assert shown_as(system_tray.picture(), PipelineState.PAUSED)
        assert "Resume" in [item.text for item in app.icon.menu]

        # X11 window names are Latin-1: other characters degrade instead of breaking the tray
        controller.set_status(state=PipelineState.ERROR, message="Kamera „C920“ getrennt")
        system_tray.wait_for_title(icon, "vcam: Error: Kamera ?C920? getrennt")
        assert shown_as(system_tray.picture(), PipelineState.ERROR)

        items["Quit"](app.icon)
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "run_tray did not return after Quit"
        system_tray.wait_for_destroy(icon)
        assert controller.calls == [("pause",), ("stop",)]
    finally:
        app.quit()
        thread.join(TIMEOUT)


def test_tray_exits_when_the_pipeline_stops(system_tray: SystemTray, tmp_path: Path) -> None:
    controller = FakeController(tmp_path)
    thread = start(TrayApp(controller))
    icon = system_tray.wait_for_dock()
    controller.stop()  # e.g. the pipeline failed for good, or `vcam` was told to stop
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "run_tray did not return when the pipeline stopped"
    system_tray.wait_for_destroy(icon)
    assert controller.calls[0] == ("stop",)


def test_tray_stops_the_pipeline_when_its_event_loop_ends(system_tray: SystemTray, tmp_path: Path) -> None:
    controller = FakeController(tmp_path)
    thread = start(TrayApp(controller))
    icon = system_tray.wait_for_dock()
    system_tray.wait_for_title(icon, tooltip(controller))
    icon.destroy()  # the icon's window is gone: pystray's loop ends by itself, as it does on Ctrl+C
    system_tray.display.sync()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "run_tray did not return when its event loop ended"
    assert controller.calls == [("stop",)]


RUN_TRAY = """
import pathlib, sys, tray_fakes
from tray.app import run_tray
from vcam.errors import VcamError
controller = tray_fakes.FakeController(pathlib.Path("."))
try:
    run_tray(controller)
except VcamError as error:
    sys.exit(str(error))
print(controller.calls)
"""


def run_tray_in_a_process(environment: dict[str, str]) -> subprocess.Popen[str]:
    """`run_tray` on the main thread of its own process, as `vcam tray` runs it."""
    tests_dir = Path(__file__).parent
    python_path = os.pathsep.join([str(tests_dir), str(tests_dir.parent)])
    return subprocess.Popen(
        [sys.executable, "-c", RUN_TRAY],
        env={**environment, "PYTHONPATH": python_path, "PYSTRAY_BACKEND": "xorg"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ctrl_c_quits_like_the_menu(system_tray: SystemTray) -> None:
    child = run_tray_in_a_process(dict(os.environ))
    try:
        icon = system_tray.wait_for_dock(timeout=CHILD_STARTUP_S)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=TIMEOUT)
    finally:
        child.kill()
    assert (child.returncode, err) == (0, "")
    assert out == "[('stop',)]\n"
    system_tray.wait_for_destroy(icon)


def test_tray_without_a_display_is_one_clear_line() -> None:
    environment = {name: value for name, value in os.environ.items() if name != "DISPLAY"}
    child = run_tray_in_a_process(environment)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 1
    assert err.startswith("Cannot show a tray icon here")
    assert "`vcam run`" in err
    assert len(err.splitlines()) == 1, "no traceback, nothing else"
