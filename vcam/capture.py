"""Frame sources: a webcam that survives being unplugged, and clips/images for tests and demos."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

import cv2
import numpy as np

from .errors import VcamError

log = logging.getLogger("vcam.capture")

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0
POLL_S = 0.05
"""Longest a read() blocks while the camera is away, so a capture thread notices stop requests."""

IMAGE_FPS = 30.0
"""Nominal rate of a folder of images or a still."""

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})

# Probing for cameras makes OpenCV log a warning per backend it tries; vcam says what matters itself.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def open_camera(device: int | str) -> cv2.VideoCapture:
    """OpenCV's capture for a camera number or device path. On Linux only V4L2 is asked, and only
    for a device node that exists (other backends and missing nodes would print errors of their own)."""
    if sys.platform.startswith("linux"):
        path = f"/dev/video{device}" if isinstance(device, int) else device
        return cv2.VideoCapture(path, cv2.CAP_V4L2) if Path(path).exists() else cv2.VideoCapture()
    return cv2.VideoCapture(device)


@dataclass(frozen=True)
class CameraInfo:
    index: int
    device: str
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.index} ({self.device}, {self.width}x{self.height})"


def list_cameras(max_index: int = 10) -> list[CameraInfo]:
    """The cameras that deliver frames (on Linux the /dev/videoN nodes, virtual cameras included)."""
    if sys.platform.startswith("linux"):
        indexes = sorted(int(p.name[5:]) for p in Path("/dev").glob("video*") if p.name[5:].isdigit())
    else:
        indexes = list(range(max_index))
    found = []
    for index in indexes:
        capture = open_camera(index)
        try:
            ok, image = capture.read() if capture.isOpened() else (False, None)
        finally:
            capture.release()
        if ok and image is not None:
            device = f"/dev/video{index}" if sys.platform.startswith("linux") else f"camera {index}"
            found.append(CameraInfo(index, device, image.shape[1], image.shape[0]))
    return found


@dataclass(frozen=True)
class Frame:
    image: np.ndarray
    """BGR uint8, H x W x 3."""
    timestamp: float
    """time.monotonic() when the frame was captured; a clip's frame carries the moment it shows,
    counted from the clip's first read, so a clip gives the same motion however fast it is rendered."""
    index: int


class FrameSource(Protocol):
    fps: float
    description: str

    @property
    def finished(self) -> bool:
        """True only when a non-looping clip has ended for good."""

    def __enter__(self) -> FrameSource: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def read(self) -> Frame | None:
        """The next frame, or None when none is available right now."""


class VideoCaptureLike(Protocol):
    """The part of cv2.VideoCapture a Webcam uses."""

    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV's name)

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def set(self, prop: int, value: float, /) -> bool: ...

    def get(self, prop: int, /) -> float: ...

    def release(self) -> None: ...


class Webcam:
    """A camera through OpenCV that reconnects with exponential back-off when unplugged.

    read() never raises for a disconnection: it returns None while the camera is away,
    blocking at most POLL_S per call, and retries opening it after 0.5 s, 1 s, 2 s, 4 s, 5 s, 5 s...
    """

    def __init__(
        self,
        device: int | str = 0,
        width: int = 1280,
        height: int = 720,
        fps: float = 30.0,
        open_capture: Callable[[int | str], VideoCaptureLike] = open_camera,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.device = device
        self.width = width
        self.height = height
        self.fps = fps
        self.description = f"camera {device} ({width}x{height}@{fps:g})"
        self._open_capture = open_capture
        self._clock = clock
        self._sleep = sleep
        self._capture: VideoCaptureLike | None = None
        self._retry_delay = RETRY_FIRST_S
        self._retry_at = 0.0
        self._index = 0

    @property
    def finished(self) -> bool:
        return False

    def __enter__(self) -> Webcam:
        self._capture = self._open()
        if self._capture is None:
            raise VcamError(
                f"Camera {self.device} could not be opened; `vcam doctor` lists the cameras, "
                "pick one with --source N (or play a clip with --source FILE)."
            )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    def read(self) -> Frame | None:
        if self._capture is None:
            return self._reconnect()
        frame = self._grab()
        if frame is None:
            log.warning("%s stopped delivering frames; reconnecting in the background", self.description)
            self._release()
            self._retry_delay = RETRY_FIRST_S
            self._retry_at = self._clock() + self._retry_delay
        return frame

    def _open(self) -> VideoCaptureLike | None:
        """Open and configure the device, or None when it is not there."""
        capture = self._open_capture(self.device)
        if not capture.isOpened():
            capture.release()
            return None
        # MJPG lets USB cameras deliver 720p at 30 fps; one buffered frame keeps latency low.
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        capture.set(cv2.CAP_PROP_FPS, self.fps)
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) or self.width
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) or self.height
        self.fps = capture.get(cv2.CAP_PROP_FPS) or self.fps
        self.description = f"camera {self.device} ({width}x{height}@{self.fps:g})"
        return capture

    def _grab(self) -> Frame | None:
        ok, image = self._capture.read()
        if not ok or image is None:
            return None
        self._index += 1
        return Frame(image, self._clock(), self._index - 1)

    def _reconnect(self) -> Frame | None:
        """Reopen the camera if a retry is due (it counts as back once it delivers a frame);
        otherwise wait a little, at most POLL_S."""
        now = self._clock()
        if now < self._retry_at:
            self._sleep(min(self._retry_at - now, POLL_S))
            return None
        self._capture = self._open()
        frame = None if self._capture is None else self._grab()
        if frame is None:
            self._release()
            self._retry_delay = min(2 * self._retry_delay, RETRY_MAX_S)
            self._retry_at = now + self._retry_delay
            return None
        log.info("%s reconnected", self.description)
        return frame

    def _release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class ClipSource:
    """Frames from a video file OpenCV reads, a folder of images (sorted by name) or one image.

    A still gives one frame, or the same frame forever when loop is set. With realtime set,
    reads are paced to the clip's frame rate; otherwise frames come as fast as they are read.
    """

    def __init__(self, path: Path, loop: bool = False, realtime: bool = False) -> None:
        self.path = Path(path)
        self.loop = loop
        self.realtime = realtime
        self.description = f"clip {self.path.name}"
        self._images = _image_paths(self.path)
        if self._images:
            self.fps = IMAGE_FPS
        else:
            probe = _open_video(self.path)
            self.fps = probe.get(cv2.CAP_PROP_FPS) or IMAGE_FPS
            probe.release()
        self._video: cv2.VideoCapture | None = None
        self._position = 0
        self._index = 0
        self._finished = False
        self._started_at = 0.0
        self._cached: tuple[Path, np.ndarray] | None = None

    @property
    def finished(self) -> bool:
        return self._finished

    def __enter__(self) -> ClipSource:
        if not self._images:
            self._video = _open_video(self.path)
        self._position = 0
        self._index = 0
        self._finished = False
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None

    def read(self) -> Frame | None:
        if self._finished:
            return None
        image = self._next_image()
        if image is None and self.loop and self._index > 0:
            self._rewind()
            image = self._next_image()
        if image is None:
            self._finished = True
            return None
        if self._index == 0:
            self._started_at = time.monotonic()
        if self.realtime:
            self._pace()
        self._index += 1
        return Frame(image, self._started_at + (self._index - 1) / self.fps, self._index - 1)

    def _next_image(self) -> np.ndarray | None:
        if self._video is not None:
            ok, image = self._video.read()
            return image if ok else None
        if self._position == len(self._images):
            return None
        self._position += 1
        return self._load(self._images[self._position - 1])

    def _load(self, path: Path) -> np.ndarray:
        """Decode an image, reusing the last one so a looping still is decoded once."""
        if self._cached is None or self._cached[0] != path:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise VcamError(f"Cannot read image {path}; is it a valid picture file?")
            self._cached = (path, image)
        return self._cached[1].copy()

    def _rewind(self) -> None:
        if self._video is not None:
            self._video.release()  # reopening is the one rewind every container supports
            self._video = _open_video(self.path)
        self._position = 0

    def _pace(self) -> None:
        delay = self._started_at + self._index / self.fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def _image_paths(path: Path) -> list[Path]:
    """The images a path stands for: a folder's pictures, the picture itself, or [] for a video."""
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise VcamError(f"Folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
        return images
    if not path.is_file():
        if path.exists():
            raise VcamError(
                f"{path} is not a video, an image or a folder (it is a device or other special file); "
                "give a clip file, an image, a folder of images, or a webcam number"
            )
        raise VcamError(f"Clip {path} does not exist; give a video file, an image or a folder of images.")
    return [path] if path.suffix.lower() in IMAGE_SUFFIXES else []


def _open_video(path: Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VcamError(f"Cannot read video {path}; use a file OpenCV can decode (mp4, avi, y4m...).")
    return capture


def open_source(
    spec: str, width: int, height: int, fps: float, loop: bool = False, realtime: bool = True
) -> FrameSource:
    """A camera number ("0"), a device path ("/dev/video2") or a clip path."""
    if spec.isdigit():
        return Webcam(int(spec), width, height, fps)
    if spec.startswith("/dev/video"):
        return Webcam(spec, width, height, fps)
    return ClipSource(Path(spec).expanduser(), loop=loop, realtime=realtime)
