"""What a new user meets first, with the real `vcam` command in its own process: the preview
window under Xvfb, Ctrl-C, SIGTERM and closing the window, no webcam, and interrupted profiles."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import save_artifact
from PIL import Image, ImageGrab

REPO = Path(__file__).resolve().parents[1]
STARTUP_S = 120.0  # the model is built and the avatar prepared on a slow CPU first
TITLE = "vcam preview"
MOVE_S = 30.0  # idle motion is slow, and so is a busy CPU
EXIT_S = 60.0


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two pictures' grey levels."""
    return float(np.abs(np.asarray(a.convert("L"), np.float32) - np.asarray(b.convert("L"), np.float32)).mean())


@pytest.fixture
def user(tmp_path: Path) -> dict[str, str]:
    """The environment of a user with no settings, no weights, no microphone and the default profile."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("VCAM_") and key != "PYSTRAY_BACKEND"}
    env |= {
        "VCAM_SETTINGS_FILE": str(tmp_path / "config" / "settings.toml"),
        "VCAM_DATA_DIR": str(tmp_path / "data"),
        "VCAM_PROFILES_DIR": str(tmp_path / "profiles"),
        "VCAM_AUDIO": "false",
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    }
    shutil.copytree(REPO / "profiles" / "default", tmp_path / "profiles" / "default")
    return env


def start_vcam(env: dict[str, str], *args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vcam.cli", *args], env=env, cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def window_geometry(display: str, title: str) -> tuple[int, int, int, int] | None:
    """x, y, width, height of the window with this title, or None while there is none."""
    env = {**os.environ, "DISPLAY": display}
    found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", title], env=env, capture_output=True, text=True)
    if found.returncode != 0:
        return None
    window = found.stdout.split()[0]
    shape = subprocess.run(["xdotool", "getwindowgeometry", "--shell", window], env=env, capture_output=True, text=True)
    values = dict(line.split("=", 1) for line in shape.stdout.split())
    if shape.returncode != 0 or "X" not in values:  # gone in between
        return None
    return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])


def wait_for_picture(display: str, child: subprocess.Popen[str], size: tuple[int, int]) -> Image.Image:
    """The preview window's content once it shows a picture of `size` (not a blank window)."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        assert child.poll() is None, child.communicate()[1]
        geometry = window_geometry(display, TITLE)
        if geometry is not None:
            x, y, width, height = geometry
            picture = ImageGrab.grab(bbox=(x, y, x + width, y + height), xdisplay=display)
            pixels = np.asarray(picture.convert("RGB"), dtype=np.float32)
            # the image area of the window is as large as the output, and shows a photo
            if width >= size[0] and height >= size[1] and pixels.std() > 20:
                return picture
        time.sleep(0.5)
    raise AssertionError("the preview window never showed a picture")


def needs_desktop_tools() -> None:
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed (apt-get install xdotool)")


def test_the_preview_output_shows_the_avatar_moving_and_ctrl_c_ends_it(fresh_x_display: str, user: dict[str, str], tmp_path: Path) -> None:
    x_display = fresh_x_display  # an X server of its own: no window of an earlier test can answer
    needs_desktop_tools()
    child = start_vcam({**user, "DISPLAY": x_display}, "run", "--sink", "preview", "--camera-off",
                       "--width", "320", "--height", "240", cwd=tmp_path)
    try:
        first = wait_for_picture(x_display, child, (320, 240))
        save_artifact(first, "preview-window.png")
        deadline = time.monotonic() + MOVE_S
        while difference(first, wait_for_picture(x_display, child, (320, 240))) < 0.05:
            assert time.monotonic() < deadline, "the avatar does not move (idle motion)"
            time.sleep(0.5)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=EXIT_S)
    finally:
        child.kill()
    assert child.returncode == 128 + signal.SIGINT, err
    assert "QObject" not in err and "terminate called" not in err, err
    assert window_geometry(x_display, TITLE) is None


def test_closing_the_preview_window_ends_the_run(fresh_x_display: str, user: dict[str, str], tmp_path: Path) -> None:
    x_display = fresh_x_display  # an X server of its own: no window of an earlier test can answer
    needs_desktop_tools()
    from test_sinks import CLOSE_WINDOW

    env = {**user, "DISPLAY": x_display}
    child = start_vcam(env, "run", "--sink", "preview", "--camera-off", "--width", "320", "--height", "240", cwd=tmp_path)
    try:
        wait_for_picture(x_display, child, (320, 240))
        subprocess.run([sys.executable, "-c", CLOSE_WINDOW, TITLE], env=env, check=True, timeout=10)
        out, err = child.communicate(timeout=EXIT_S)
    finally:
        child.kill()
    assert child.returncode == 0, err
    assert "QObject" not in err, err


def probe(path: Path) -> dict:
    """ffprobe's view of a video file (fails on an unplayable one)."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["streams"][0]


def test_a_preview_beside_a_recording_closes_alone_and_sigterm_finishes_the_file(fresh_x_display: str, user: dict[str, str], tmp_path: Path) -> None:
    x_display = fresh_x_display  # an X server of its own: no window of an earlier test can answer
    needs_desktop_tools()
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not installed (apt-get install ffmpeg)")
    from test_sinks import CLOSE_WINDOW

    recording = tmp_path / "x.mp4"
    env = {**user, "DISPLAY": x_display}
    child = start_vcam(env, "run", "--sink", f"file:{recording}", "--preview", "--camera-off",
                       "--width", "320", "--height", "240", cwd=tmp_path)
    try:
        wait_for_picture(x_display, child, (320, 240))
        # closing the preview beside another output closes only the preview
        subprocess.run([sys.executable, "-c", CLOSE_WINDOW, TITLE], env=env, check=True, timeout=10)
        time.sleep(1.0)
        assert window_geometry(x_display, TITLE) is None and child.poll() is None
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=EXIT_S)
    finally:
        child.kill()
    assert child.returncode == 128 + signal.SIGTERM, err
    assert "QObject" not in err and "Traceback" not in err, err
    stream = probe(recording)
    assert (stream["width"], stream["height"]) == (320, 240)
    assert int(stream["nb_read_frames"]) > 0


def test_without_a_webcam_the_avatar_runs_on_voice_and_idle_motion(user: dict[str, str], tmp_path: Path) -> None:
    if Path("/dev/video7").exists():
        pytest.skip("this machine has a /dev/video7")
    result = subprocess.run(
        [sys.executable, "-m", "vcam.cli", "run", "--source", "7", "--sink", "file:out.y4m", "--frames", "3",
         "--width", "160", "--height", "120"],
        env=user, cwd=tmp_path, capture_output=True, text=True, timeout=STARTUP_S,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    [line] = [line for line in lines if "camera" in line.lower() and "→" not in line and "frames out" not in line]
    assert "no camera 7" in line and "--source N" in line and "--source FILE" in line
    assert "WARN" not in result.stderr and "ERROR" not in result.stderr, result.stderr
    assert (tmp_path / "out.y4m").read_bytes().count(b"FRAME\n") == 3
    assert lines[-1].startswith("vcam: 3 frames out (camera off), ")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_an_interrupted_profile_create_leaves_nothing_behind(sig: signal.Signals, user: dict[str, str], tmp_path: Path) -> None:
    staging = tmp_path / "profiles" / ".bob.creating"
    photo = REPO / "profiles" / "default" / "keyframe.jpg"
    child = start_vcam(user, "profile", "create", "bob", str(photo), cwd=tmp_path)
    try:
        deadline = time.monotonic() + STARTUP_S
        while not staging.is_dir():
            assert child.poll() is None and time.monotonic() < deadline, "the profile was never being written"
            time.sleep(0.002)
        child.send_signal(sig)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    if sig == signal.SIGTERM:  # stopped like Ctrl-C: it cleans up itself
        assert child.returncode == 128 + signal.SIGTERM, err
        assert not staging.exists()
        return
    assert staging.is_dir(), "SIGKILL gives no chance to clean up"
    listed = subprocess.run([sys.executable, "-m", "vcam.cli", "profile", "list"], env=user, cwd=tmp_path,
                            capture_output=True, text=True, timeout=STARTUP_S)
    assert listed.returncode == 0, listed.stderr
    assert not staging.exists()
    [line] = listed.stderr.splitlines()
    assert "removed the unfinished profile(s) bob" in line
    assert listed.stdout.split() == ["*", "default"]


def test_doctor_lists_the_cameras(user: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "vcam.cli", "doctor"], env=user, cwd=tmp_path,
                            capture_output=True, text=True, timeout=STARTUP_S)
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if "cameras:" in line]
    if any(Path("/dev").glob("video*")) and "none found" not in line:
        assert line.startswith("[ok] cameras: 0 (/dev/video0, ") or "/dev/video" in line
    else:
        assert line == "[!!] cameras: none found"
    assert "WARN" not in result.stderr + result.stdout and "ERROR" not in result.stderr
