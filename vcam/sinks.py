"""Frame sinks: the system virtual camera, video files, a preview window and a null sink for benchmarks.

Each sink takes frames in its own :class:`~vcam.pixel_formats.PixelFormat` (``pixel_format``), the
one its device or file stores, so the frame is converted once, where it is composed, and never in
the sink.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import cv2
import numpy as np
import pyvirtualcam

from .errors import VcamError
from .pixel_formats import PixelFormat, buffer_shape, from_bgr

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
"""Containers written through cv2.VideoWriter, with their codec; .y4m is written directly."""


class FrameSink(Protocol):
    description: str
    pixel_format: PixelFormat

    def __enter__(self) -> FrameSink: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def send(self, frame: np.ndarray) -> None:
        """Output one uint8 frame of the sink's size in its ``pixel_format``; a BGR image of any
        size is resized and converted here."""


def virtual_camera_help(platform: str = sys.platform) -> str:
    """How to make a virtual camera device available on this OS."""
    if platform.startswith("linux"):
        return (
            'Load the v4l2loopback module: sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="vcam" '
            "(packaging/linux has a set-up that keeps it loaded after reboots)."
        )
    if platform in ("win32", "darwin"):
        return "Install OBS Studio (obsproject.com), start its Virtual Camera once, then close OBS."
    return "Virtual cameras need Linux (v4l2loopback), Windows or macOS (OBS Studio virtual camera)."


def native_format(backend: str, platform: str = sys.platform) -> PixelFormat:
    """The pixel format a pyvirtualcam backend stores, which it then takes without converting:
    I420 for v4l2loopback, NV12 for OBS on Windows, UYVY for OBS on macOS (BGR for any other)."""
    if backend == "v4l2loopback":
        return PixelFormat.I420
    if backend == "obs":
        return PixelFormat.NV12 if platform == "win32" else PixelFormat.UYVY
    return PixelFormat.BGR


class VirtualCameraSink:
    """The system virtual camera through pyvirtualcam (v4l2loopback on Linux, OBS on Windows/macOS).

    It takes frames in the native format of the backend (without ``backend``, of the first one
    pyvirtualcam tries), so pyvirtualcam passes them on as they are. With pace set, send() waits
    until the next frame is due, holding the output at `fps`.
    """

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        backend: str | None = None,
        device: str | None = None,
        pace: bool = True,
        camera_factory: Callable[..., Any] = pyvirtualcam.Camera,
    ) -> None:
        known = pyvirtualcam.camera.BACKENDS
        if backend is not None and backend not in known:
            raise VcamError(
                f"Unknown virtual camera backend {backend!r}; this system has: {', '.join(known)} "
                "(or leave it unset to pick one)."
            )
        self.width = width
        self.height = height
        self.fps = fps
        self.backend = backend
        self.device = device
        self.pace = pace
        self.pixel_format = native_format(backend or next(iter(known), ""))
        buffer_shape(self.pixel_format, width, height)
        self.description = f"virtual camera ({width}x{height}@{fps:g})"
        self._camera_factory = camera_factory
        self._camera: Any = None

    def __enter__(self) -> VirtualCameraSink:
        try:
            self._camera = self._camera_factory(
                self.width,
                self.height,
                self.fps,
                fmt=pyvirtualcam.PixelFormat[self.pixel_format.name],
                device=self.device,
                backend=self.backend,
            )
        except (RuntimeError, OSError, ValueError) as error:
            reason = "; ".join(str(error).splitlines())
            raise VcamError(f"Cannot open the virtual camera ({reason}). {virtual_camera_help()}") from error
        self.description = f"virtual camera {self._camera.device} ({self.width}x{self.height}@{self.fps:g})"
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._camera is not None:
            self._camera.close()
            self._camera = None

    def send(self, frame: np.ndarray) -> None:
        self._camera.send(_fit(frame, self.pixel_format, self.width, self.height))
        if self.pace:
            self._camera.sleep_until_next_frame()


class FileSink:
    """A video file: .mp4 (mp4v) or .avi (MJPG) through OpenCV from BGR frames, or uncompressed
    4:2:0 .y4m, written straight from I420 frames."""

    def __init__(self, path: Path, width: int, height: int, fps: float) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in (*VIDEO_CODECS, ".y4m"):
            raise VcamError(f"Cannot record to {self.path.name}; name the file .mp4, .avi or .y4m.")
        if width % 2 or height % 2:
            raise VcamError(f"Video files need an even width and height, got {width}x{height}.")
        self.width = width
        self.height = height
        self.fps = fps
        self.pixel_format = PixelFormat.I420 if self.path.suffix.lower() == ".y4m" else PixelFormat.BGR
        self.frames_written = 0
        self.description = f"file {self.path}"
        self._writer: cv2.VideoWriter | _Y4mWriter | None = None

    def __enter__(self) -> FileSink:
        if not self.path.parent.is_dir():
            raise VcamError(f"Cannot write {self.path}: folder {self.path.parent} does not exist.")
        suffix = self.path.suffix.lower()
        if suffix == ".y4m":
            self._writer = _Y4mWriter(self.path, self.width, self.height, self.fps)
        else:
            fourcc = cv2.VideoWriter.fourcc(*VIDEO_CODECS[suffix])
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (self.width, self.height))
            if not self._writer.isOpened():
                raise VcamError(f"Cannot write {self.path}; check that its folder is writable.")
        self.frames_written = 0
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def send(self, frame: np.ndarray) -> None:
        self._writer.write(_fit(frame, self.pixel_format, self.width, self.height))
        self.frames_written += 1


class _Y4mWriter:
    """YUV4MPEG2: a text header, then each I420 frame as "FRAME" and its planes."""

    def __init__(self, path: Path, width: int, height: int, fps: float) -> None:
        rate = Fraction(fps).limit_denominator(1001)
        try:
            self._file = open(path, "wb")  # noqa: SIM115 (closed by release())
        except OSError as error:
            raise VcamError(f"Cannot write {path}: {error.strerror}.") from error
        header = f"YUV4MPEG2 W{width} H{height} F{rate.numerator}:{rate.denominator} Ip A1:1 C420jpeg\n"
        self._file.write(header.encode("ascii"))

    def write(self, frame: np.ndarray) -> None:
        self._file.write(b"FRAME\n")
        self._file.write(frame.tobytes())

    def release(self) -> None:
        self._file.close()


class PreviewSink:
    """The hand-over to the preview window: ``send`` (any thread) keeps only the newest frame,
    ``take`` gives it to the window's thread. OpenCV's HighGUI is used from one thread alone, so the
    window itself lives in :mod:`vcam.preview`, drawn and pumped by the main thread."""

    pixel_format = PixelFormat.BGR

    def __init__(self) -> None:
        self.description = "preview window"
        self._frame: np.ndarray | None = None
        self._ready = threading.Condition()

    def __enter__(self) -> PreviewSink:
        check_display()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._ready:
            self._frame = None

    def send(self, frame: np.ndarray) -> None:
        with self._ready:
            self._frame = frame
            self._ready.notify_all()

    def take(self, timeout: float = 0.0) -> np.ndarray | None:
        """The newest frame not taken yet, waiting at most ``timeout`` seconds; None if none came."""
        with self._ready:
            if self._frame is None and timeout > 0:
                self._ready.wait(timeout)
            frame, self._frame = self._frame, None
            return frame


class NullSink:
    """Discards the frames, counting them: the output of a benchmark. It takes I420, as the Linux
    virtual camera does, so a run into it does the same work."""

    pixel_format = PixelFormat.I420

    def __init__(self, width: int, height: int) -> None:
        buffer_shape(self.pixel_format, width, height)
        self.width = width
        self.height = height
        self.frames_received = 0
        self.description = f"null ({width}x{height}, frames discarded)"

    def __enter__(self) -> NullSink:
        self.frames_received = 0
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass

    def send(self, frame: np.ndarray) -> None:
        _fit(frame, self.pixel_format, self.width, self.height)
        self.frames_received += 1


def check_display() -> None:
    """Fail with the fix when there is no desktop to show windows on."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise VcamError("No display for the preview window; run vcam in a desktop session or use another output.")


def _fit(frame: np.ndarray, fmt: PixelFormat, width: int, height: int) -> np.ndarray:
    """The frame as a contiguous width x height buffer in ``fmt``: as it is when it is one, else a
    BGR image of any size resized and converted."""
    if frame.shape == buffer_shape(fmt, width, height):
        return np.ascontiguousarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected a {width}x{height} {fmt.name} frame or a BGR image, got shape {frame.shape}")
    if frame.shape[:2] != (height, width):
        interpolation = cv2.INTER_AREA if frame.shape[1] > width else cv2.INTER_LINEAR
        frame = cv2.resize(frame, (width, height), interpolation=interpolation)
    return np.ascontiguousarray(from_bgr(frame, fmt))


def open_sink(spec: str, width: int, height: int, fps: float, backend: str | None = None) -> FrameSink:
    """The output a spec names: virtual, virtual:DEVICE, file:PATH, preview or null."""
    kind, _, argument = spec.partition(":")
    if kind == "virtual":
        return VirtualCameraSink(width, height, fps, backend=backend, device=argument or None)
    if kind == "file" and argument:
        return FileSink(Path(argument).expanduser(), width, height, fps)
    if spec == "preview":
        return PreviewSink()
    if spec == "null":
        return NullSink(width, height)
    raise VcamError(f"Unknown output {spec!r}; use virtual, virtual:DEVICE, file:PATH (.mp4, .avi or .y4m), preview or null.")
