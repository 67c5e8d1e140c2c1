"""vcam.capture: clips, folders and stills read back in full; a webcam that survives an unplug."""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from clips import number_of, numbered, portrait, write_clip

from vcam.capture import POLL_S, ClipSource, Frame, Webcam, open_source
from vcam.errors import VcamError


def read_all(source: ClipSource, limit: int = 100) -> list[Frame]:
    frames = []
    while len(frames) < limit and (frame := source.read()) is not None:
        frames.append(frame)
    return frames


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".y4m"])
def test_clip_source_reads_every_frame_in_order(tmp_path: Path, suffix: str) -> None:
    path = write_clip(tmp_path / f"clip{suffix}", numbered(12), fps=25.0)
    with ClipSource(path) as source:
        assert source.fps == 25.0
        assert not source.finished
        frames = read_all(source)
        assert source.finished
        assert source.read() is None
    assert [number_of(f.image) for f in frames] == list(range(12))
    assert [f.index for f in frames] == list(range(12))
    assert all(f.image.shape == (480, 640, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(frames))
    assert source.description == f"clip clip{suffix}"


def test_image_folder_is_read_in_name_order_skipping_other_files(tmp_path: Path) -> None:
    for i, frame in enumerate(numbered(5)):
        cv2.imwrite(str(tmp_path / f"frame_{4 - i:02d}.png"), frame)  # names sort in reverse
    (tmp_path / "notes.txt").write_text("not an image")
    with ClipSource(tmp_path) as source:
        frames = read_all(source)
        assert source.finished
    assert [number_of(f.image) for f in frames] == [4, 3, 2, 1, 0]


def test_looping_clip_restarts_and_keeps_counting(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.mp4", numbered(4))
    with ClipSource(path, loop=True) as source:
        frames = read_all(source, limit=11)
        assert not source.finished
    assert [number_of(f.image) for f in frames] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2]
    assert [f.index for f in frames] == list(range(11))


def test_still_image_gives_one_frame_or_loops_forever(tmp_path: Path) -> None:
    path = tmp_path / "still.jpg"
    cv2.imwrite(str(path), portrait())
    expected = cv2.imread(str(path))
    with ClipSource(path) as once:
        assert len(read_all(once)) == 1
        assert once.finished
    with ClipSource(path, loop=True) as forever:
        frames = read_all(forever, limit=5)
        frames[0].image[:] = 0  # a consumer scribbling on one frame must not change the next
    assert len(frames) == 5
    assert all(np.array_equal(f.image, expected) for f in frames[1:])


def test_realtime_paces_reads_to_the_clip_rate(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.y4m", numbered(6), fps=50.0)
    with ClipSource(path, realtime=True) as source:
        frames = read_all(source)
    start = frames[0].timestamp
    assert all(f.timestamp - start >= f.index / 50.0 - 1e-3 for f in frames)


def test_missing_or_unreadable_clips_raise_vcam_error(tmp_path: Path) -> None:
    with pytest.raises(VcamError, match="does not exist"):
        ClipSource(tmp_path / "missing.mp4")
    with pytest.raises(VcamError, match="holds no images"):
        ClipSource(tmp_path)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VcamError, match="Cannot read video"):
        ClipSource(garbage)
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png")
    with ClipSource(folder) as source, pytest.raises(VcamError, match="Cannot read image"):
        source.read()


def test_open_source_picks_camera_or_clip(tmp_path: Path) -> None:
    camera = open_source("2", 640, 480, 15.0)
    assert isinstance(camera, Webcam)
    assert (camera.device, camera.width, camera.height, camera.fps) == (2, 640, 480, 15.0)
    device = open_source("/dev/video4", 1280, 720, 30.0)
    assert isinstance(device, Webcam) and device.device == "/dev/video4"
    clip = open_source(str(write_clip(tmp_path / "c.y4m", numbered(2))), 1280, 720, 30.0, loop=True)
    assert isinstance(clip, ClipSource) and clip.loop and clip.realtime


def test_camera_that_does_not_exist_names_the_fix() -> None:
    with pytest.raises(VcamError, match=r"Camera 9 .*vcam doctor.*--source N"), Webcam(9):
        pass


class FakeClock:
    """time.monotonic and time.sleep for code under test: sleeping just moves the time on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeDevice:
    """A USB camera at the hardware edge: delivers `frames_before_unplug` frames, is then unplugged
    (reads fail, and the next `failed_opens` opens find nothing), then is plugged back in for good."""

    def __init__(self, clock: FakeClock, frames_before_unplug: int, failed_opens: int) -> None:
        self.clock = clock
        self.frames_left: float = frames_before_unplug
        self.failed_opens = failed_opens
        self.open_times: list[float] = []
        self.settings: dict[int, float] = {}

    def open(self, device: int | str) -> FakeCapture:
        self.open_times.append(self.clock.now)
        if self.frames_left == 0:
            if self.failed_opens:
                self.failed_opens -= 1
                return FakeCapture(self, opened=False)
            self.frames_left = math.inf
        return FakeCapture(self, opened=True)


class FakeCapture:
    def __init__(self, device: FakeDevice, opened: bool) -> None:
        self.device = device
        self.opened = opened

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def set(self, prop: int, value: float) -> bool:
        self.device.settings[prop] = value
        return True

    def get(self, prop: int) -> float:
        return self.device.settings.get(prop, 0.0)

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.opened or self.device.frames_left == 0:
            return False, None
        self.device.frames_left -= 1
        return True, np.zeros((4, 6, 3), np.uint8)

    def release(self) -> None:
        self.opened = False


def test_webcam_reconnects_with_backoff_after_unplug(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    device = FakeDevice(clock, frames_before_unplug=3, failed_opens=4)
    caplog.set_level(logging.INFO, logger="vcam.capture")
    with Webcam(0, 640, 480, 15.0, open_capture=device.open, clock=clock, sleep=clock.sleep) as camera:
        assert device.settings[cv2.CAP_PROP_FRAME_WIDTH] == 640
        assert device.settings[cv2.CAP_PROP_FRAME_HEIGHT] == 480
        assert device.settings[cv2.CAP_PROP_FPS] == 15.0
        assert camera.description == "camera 0 (640x480@15)"
        before = [camera.read() for _ in range(3)]
        unplugged_at = clock.now
        during = []
        while (frame := camera.read()) is None and len(during) < 1000:
            during.append(frame)
        assert not camera.finished

    assert [f.index for f in before] == [0, 1, 2]
    assert frame is not None and frame.index == 3 and frame.timestamp == clock.now
    retries = [t - unplugged_at for t in device.open_times[1:]]
    assert retries == pytest.approx([0.5, 1.5, 3.5, 7.5, 12.5])  # waits 0.5, 1, 2, 4, then capped at 5
    assert max(clock.sleeps) <= POLL_S  # a capture thread polling read() notices a stop request quickly
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and "stopped delivering frames" in warnings[0].getMessage()
    assert len(infos) == 1 and "reconnected" in infos[0].getMessage()
