"""Fixtures shared by several test modules."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

TIMEOUT = 10.0
ARTIFACTS = Path(__file__).parent / "artifacts"
"""Screenshots the desktop tests take, for a person to look at (git-ignored)."""
saved_artifacts: list[Path] = []


@pytest.fixture(scope="session", autouse=True)
def landmark_models_dir(pytestconfig: pytest.Config) -> Path:
    """One folder per checkout for the MediaPipe models (the ``landmarks_dir`` setting), fetched from
    PyPI by the first test that tracks a face and reused by every later session and subprocess."""
    folder = Path(pytestconfig.cache.mkdir("vcam-landmarks"))
    os.environ["VCAM_LANDMARKS_DIR"] = str(folder)
    return folder


def save_artifact(image: Image.Image, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    image.save(path)
    saved_artifacts.append(path)
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if saved_artifacts:
        terminalreporter.write_sep("-", "screenshots")
        for path in saved_artifacts:
            terminalreporter.write_line(str(path))


@contextlib.contextmanager
def xvfb() -> Iterator[str]:
    """A private Xvfb server on a free display number (Xvfb picks it and reports it when ready)."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb): no X server for windows and tray icons")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        # -noreset: the server would otherwise reset whenever its last client leaves, between
        # tests, and refuse whoever connects meanwhile
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "640x480x24", "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_end,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        assert select.select([read_end], [], [], TIMEOUT)[0], "Xvfb did not start"
        number = os.read(read_end, 64).decode().strip()
        yield f":{number}"
    finally:
        os.close(read_end)
        server.terminate()
        server.wait(TIMEOUT)


@pytest.fixture(scope="session")
def x_display() -> Iterator[str]:
    """An X server shared by the tests that only need one."""
    with xvfb() as display:
        yield display


@pytest.fixture
def fresh_x_display() -> Iterator[str]:
    """An X server of the test's own: nothing earlier tests did to keyboard focus or grabs."""
    with xvfb() as display:
        yield display


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, landmark_models_dir: Path) -> Path:
    """A user with no settings file, no weights and the default profile (the landmark models shared)."""
    for key in [k for k in os.environ if k.startswith("VCAM_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("VCAM_SETTINGS_FILE", str(tmp_path / "config" / "settings.toml"))
    monkeypatch.setenv("VCAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VCAM_PROFILES_DIR", str(tmp_path / "profiles"))
    monkeypatch.setenv("VCAM_AUDIO", "false")
    monkeypatch.setenv("VCAM_LANDMARKS_DIR", str(landmark_models_dir))
    shutil.copytree(Path(__file__).resolve().parents[1] / "profiles" / "default", tmp_path / "profiles" / "default")
    return tmp_path
