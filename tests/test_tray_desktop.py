"""`vcam tray` as a Linux user runs it: the real command with the real pipeline, docked into a real
system tray (trayer, an XEmbed tray) on Xvfb under a D-Bus session; its menu opened with a click,
an avatar chosen, the preview shown and closed, and Quit chosen, as a person would. Screenshots
are saved."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import cv2
import pytest
from conftest import save_artifact
from test_first_run import TITLE, wait_for_picture, window_geometry
from test_sinks import CLOSE_WINDOW
import waiting
from PIL import Image, ImageChops, ImageGrab, ImageStat

REPO = Path(__file__).resolve().parents[1]
STARTUP_S = 120.0  # the model is built and the avatars prepared on a slow CPU first
TIMEOUT = 20.0
TRAY = (0, 0, 96, 32)  # where trayer sits: the top left corner
MENU = (0, 40, 300, 280)  # where the menu drops down


def needs(*programs: str) -> None:
    for program in programs:
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (see README's system packages)")
    try:
        import gi

        gi.require_version("Gtk", "3.0")
    except (ImportError, ValueError):
        pytest.skip("PyGObject with GTK 3 is not installed (see README's system packages)")


def grab(display: str, box: tuple[int, int, int, int]) -> Image.Image:
    return ImageGrab.grab(bbox=box, xdisplay=display).convert("RGB")


def changed(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


MENU_ENTRIES = ("Download avatar weights", "Avatar", "Frontalize", "Frontalize strength", "Expression-friendly motion",
        "Pause", "Recalibrate neutral", "Show preview")
"""The menu's entries from the top, as shown while the demo model runs (the status line takes no focus)."""


def down_to(entry: str) -> list[str]:
    """The keys that move the focus of a freshly opened menu to ``entry``."""
    return ["Down"] * (MENU_ENTRIES.index(entry) + 1)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    waiting.wait_until(condition, what, timeout, poll_s=0.2)


def settled(display: str, box: tuple[int, int, int, int]) -> Image.Image:
    """The picture in `box` once it stays the same for half a second."""
    picture = grab(display, box)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        time.sleep(0.5)
        again = grab(display, box)
        if changed(picture, again) == 0:
            break
        picture = again
    return picture


class Lines:
    """A process's stderr, read as it comes."""

    def __init__(self, child: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(child.stderr), daemon=True)
        self._thread.start()

    def text(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def desktop(fresh_x_display: str) -> dict[str, str]:
    """The environment of a fresh desktop session whose panel has a system tray (trayer)."""
    needs("trayer", "xdotool", "dbus-run-session")
    x_display = fresh_x_display
    env = {**os.environ, "DISPLAY": x_display}
    x, y, width, height = TRAY
    panel = subprocess.Popen(
        ["trayer", "--edge", "top", "--align", "left", "--widthtype", "pixel", "--width", str(width),
         "--heighttype", "pixel", "--height", str(height)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    empty = grab(x_display, TRAY)
    wait_until(lambda: changed(grab(x_display, TRAY), empty) > 1 or panel.poll() is not None, "the panel")
    settled(x_display, TRAY)
    yield env
    panel.terminate()
    panel.wait(TIMEOUT)


def user_profiles(root: Path) -> Path:
    """The default avatar and "alice", a tinted copy of it."""
    profiles = root / "profiles"
    shutil.copytree(REPO / "profiles" / "default", profiles / "default")
    shutil.copytree(REPO / "profiles" / "default", profiles / "alice")
    keyframe = cv2.imread(str(profiles / "alice" / "keyframe.jpg"))
    keyframe[..., 0] = 255 - keyframe[..., 0]
    cv2.imwrite(str(profiles / "alice" / "keyframe.jpg"), keyframe)
    return profiles


def test_the_tray_menu_switches_the_avatar_and_quits(desktop: dict[str, str], tmp_path: Path) -> None:
    display = desktop["DISPLAY"]
    env = {key: value for key, value in desktop.items() if not key.startswith("VCAM_") and key != "PYSTRAY_BACKEND"}
    env |= {
        "VCAM_SETTINGS_FILE": str(tmp_path / "settings.toml"), "VCAM_DATA_DIR": str(tmp_path / "data"),
        "VCAM_PROFILES_DIR": str(user_profiles(tmp_path)), "VCAM_AUDIO": "false",
        "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
    }
    recording = tmp_path / "out.y4m"
    before = grab(display, TRAY)
    child = subprocess.Popen(
        ["dbus-run-session", "--", sys.executable, "-m", "vcam.cli", "tray", "--camera-off",
         "--sink", f"file:{recording}", "--width", "160", "--height", "120"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    log = Lines(child)

    def press(*keys: str) -> None:
        subprocess.run(["xdotool", *keys], env=desktop, check=True, timeout=TIMEOUT)

    def open_menu() -> Image.Image:
        closed = grab(display, MENU)
        for _ in range(3):  # as a person would, click again when a busy desktop missed it
            press("mousemove", "16", "16", "click", "3")
            try:
                wait_until(lambda: changed(grab(display, MENU), closed) > 20, "the menu to open", TIMEOUT / 2)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError("the menu does not open")
        return settled(display, (0, 0, 520, 300))

    try:
        wait_until(lambda: changed(grab(display, TRAY), before) > 5 or child.poll() is not None, "the icon to dock", STARTUP_S)
        assert child.poll() is None, log.text()
        time.sleep(3)  # a few frames: the status shows the live rate
        save_artifact(settled(display, (0, 0, 200, 60)), "tray-docked.png")

        menu = open_menu()
        save_artifact(menu, "tray-menu.png")
        press("key", *down_to("Avatar"), "Right")  # into its submenu: alice
        time.sleep(0.5)
        save_artifact(grab(display, (0, 0, 520, 300)), "tray-menu-avatars.png")
        press("key", "Return")
        wait_until(lambda: "avatar 'alice'" in log.text(), "the pipeline to show alice", STARTUP_S)

        open_menu()
        press("key", *down_to("Show preview"), "Return")
        save_artifact(wait_for_picture(display, child, (160, 120)), "tray-preview.png")
        subprocess.run([sys.executable, "-c", CLOSE_WINDOW, TITLE], env=desktop, check=True, timeout=TIMEOUT)
        wait_until(lambda: window_geometry(display, TITLE) is None, "the preview to close")

        open_menu()
        press("key", "Up", "Return")  # the last entry: Quit
        child.wait(STARTUP_S)
    finally:
        child.kill()
        child.wait(TIMEOUT)
    assert child.returncode == 0, log.text()
    assert "Traceback" not in log.text(), log.text()
    assert recording.read_bytes().count(b"FRAME\n") > 0
    assert changed(grab(display, TRAY), before) < 1, "the icon is still in the tray"


def test_without_a_tray_vcam_tray_says_what_to_install(x_display: str, tmp_path: Path) -> None:
    needs("dbus-run-session")
    env = {key: value for key, value in os.environ.items() if not key.startswith("VCAM_") and key != "PYSTRAY_BACKEND"}
    env |= {"DISPLAY": x_display, "VCAM_SETTINGS_FILE": str(tmp_path / "settings.toml"),
            "VCAM_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO), "VCAM_PROFILES_DIR": str(user_profiles(tmp_path))}
    result = subprocess.run(
        ["dbus-run-session", "--", sys.executable, "-m", "vcam.cli", "tray", "--camera-off"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=STARTUP_S,
    )
    assert result.returncode == 2
    [line] = [line for line in result.stderr.splitlines() if line.startswith("vcam")]
    assert line.startswith("vcam: error: No system tray is running on this desktop")
    assert "AppIndicator" in line and "`vcam run`" in line
    assert "Traceback" not in result.stderr and "dock" not in result.stderr
