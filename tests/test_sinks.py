"""vcam.sinks: files OpenCV reads back, the real pyvirtualcam's failure advice, a paced virtual
camera behind a device double, and the preview window under Xvfb."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import pyvirtualcam
from clips import number_of, numbered, portrait

from vcam import preview
from vcam.errors import VcamError
from vcam.pixel_formats import PixelFormat, buffer_shape, from_bgr, to_bgr
from vcam.sinks import FileSink, NullSink, PreviewSink, VirtualCameraSink, native_format, open_sink, virtual_camera_help

REPO = Path(__file__).resolve().parents[1]


def read_back(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (result := capture.read())[0]:
        frames.append(result[1])
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return frames, fps


@pytest.mark.parametrize("suffix, tolerance", [(".mp4", 12.0), (".avi", 6.0), (".y4m", 3.0)])
def test_file_sink_writes_a_clip_opencv_reads_back(tmp_path: Path, suffix: str, tolerance: float) -> None:
    picture = cv2.resize(portrait(), (640, 480))
    frames = [*numbered(9), picture]
    with FileSink(tmp_path / f"out{suffix}", 640, 480, 25.0) as sink:
        for frame in frames:
            sink.send(frame)
        assert sink.frames_written == 10
    written, fps = read_back(tmp_path / f"out{suffix}")
    assert len(written) == 10 and fps == pytest.approx(25.0)
    assert all(frame.shape == (480, 640, 3) for frame in written)
    assert [number_of(frame) for frame in written[:9]] == list(range(9))
    assert np.abs(written[9].astype(float) - picture).mean() < tolerance


def test_y4m_header_keeps_fractional_rates(tmp_path: Path) -> None:
    with FileSink(tmp_path / "ntsc.y4m", 64, 48, 30000 / 1001) as sink:
        sink.send(np.zeros((48, 64, 3), np.uint8))
    header = (tmp_path / "ntsc.y4m").read_bytes().split(b"\n")[0]
    assert header == b"YUV4MPEG2 W64 H48 F30000:1001 Ip A1:1 C420jpeg"
    assert (tmp_path / "ntsc.y4m").stat().st_size == len(header) + 1 + len(b"FRAME\n") + 64 * 48 * 3 // 2


def test_y4m_is_written_straight_from_i420_frames_as_from_bgr_ones(tmp_path: Path) -> None:
    frames = [*numbered(3), cv2.resize(portrait(), (640, 480))]
    with FileSink(tmp_path / "bgr.y4m", 640, 480, 30.0) as sink:
        assert sink.pixel_format is PixelFormat.I420
        for frame in frames:
            sink.send(frame)
    with FileSink(tmp_path / "i420.y4m", 640, 480, 30.0) as sink:
        for frame in frames:
            sink.send(from_bgr(frame, PixelFormat.I420))
    header = b"YUV4MPEG2 W640 H480 F30:1 Ip A1:1 C420jpeg\n"
    expected = header + b"".join(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes() for frame in frames)
    assert (tmp_path / "i420.y4m").read_bytes() == (tmp_path / "bgr.y4m").read_bytes() == expected
    assert FileSink(tmp_path / "x.mp4", 640, 480, 30.0).pixel_format is PixelFormat.BGR


def test_file_sink_resizes_frames_of_another_size(tmp_path: Path) -> None:
    with FileSink(tmp_path / "out.y4m", 320, 240, 30.0) as sink:
        sink.send(portrait())
    written, _ = read_back(tmp_path / "out.y4m")
    assert written[0].shape == (240, 320, 3)
    expected = cv2.resize(portrait(), (320, 240), interpolation=cv2.INTER_AREA)
    assert np.abs(written[0].astype(float) - expected).mean() < 3


def test_file_sink_rejects_bad_paths_and_sizes(tmp_path: Path) -> None:
    with pytest.raises(VcamError, match=r"\.mp4, \.avi or \.y4m"):
        FileSink(tmp_path / "out.mov", 640, 480, 30.0)
    with pytest.raises(VcamError, match="even"):
        FileSink(tmp_path / "out.mp4", 641, 480, 30.0)
    for name in ("out.mp4", "out.y4m"):
        with pytest.raises(VcamError, match="does not exist"), FileSink(tmp_path / "missing" / name, 640, 480, 30.0):
            pass


def test_virtual_camera_help_names_the_fix_for_each_os() -> None:
    linux = virtual_camera_help("linux")
    assert 'sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="vcam"' in linux
    assert "packaging/linux" in linux
    assert "OBS Studio" in virtual_camera_help("win32")
    assert "Virtual Camera" in virtual_camera_help("darwin")
    assert "Linux" in virtual_camera_help("freebsd")


def test_real_pyvirtualcam_without_a_device_gives_the_fix(tmp_path: Path) -> None:
    sink = VirtualCameraSink(640, 480, 30.0, device=str(tmp_path / "video0"))
    with pytest.raises(VcamError) as raised, sink:
        pass
    message = str(raised.value)
    assert "Cannot open the virtual camera" in message and "\n" not in message
    assert virtual_camera_help() in message


def test_unknown_backend_lists_the_available_ones() -> None:
    with pytest.raises(VcamError, match="Unknown virtual camera backend 'nope'") as raised:
        VirtualCameraSink(640, 480, 30.0, backend="nope")
    assert all(name in str(raised.value) for name in pyvirtualcam.camera.BACKENDS)


class FakeVirtualCamera:
    """A virtual camera device double with pyvirtualcam.Camera's interface (and its frame size check)."""

    def __init__(self, width: int, height: int, fps: float, *, fmt, device, backend) -> None:  # noqa: ANN001
        self.args = (width, height, fps, fmt, device, backend)
        self.device = device or "/dev/video7"
        self.frames: list[np.ndarray] = []
        self.waits = 0
        self.closed = False

    def send(self, frame: np.ndarray) -> None:
        assert frame.dtype == np.uint8 and frame.flags.c_contiguous
        assert frame.size == pyvirtualcam.camera.FrameShapes[self.args[3]](self.args[0], self.args[1])
        self.frames.append(frame)

    def sleep_until_next_frame(self) -> None:
        self.waits += 1

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("pace", [True, False])
def test_virtual_camera_takes_its_native_format_resized_and_paced(pace: bool) -> None:
    cameras: list[FakeVirtualCamera] = []

    def factory(*args, **kwargs) -> FakeVirtualCamera:  # noqa: ANN002, ANN003
        cameras.append(FakeVirtualCamera(*args, **kwargs))
        return cameras[-1]

    with VirtualCameraSink(640, 480, 30.0, pace=pace, camera_factory=factory) as sink:
        native = native_format(next(iter(pyvirtualcam.camera.BACKENDS)))
        assert sink.pixel_format is native
        composed = from_bgr(cv2.resize(portrait(), (640, 480)), native)
        sink.send(composed)  # what the pipeline sends: handed on as it is
        sink.send(portrait())  # a BGR image of another size: resized and converted
        sink.send(np.zeros((480, 1280, 3), np.uint8)[:, ::2])  # a strided view
        assert sink.description == "virtual camera /dev/video7 (640x480@30)"
    camera = cameras[0]
    assert camera.args == (640, 480, 30.0, pyvirtualcam.PixelFormat[native.name], None, None)
    assert len(camera.frames) == 3 and camera.closed
    assert camera.waits == (3 if pace else 0)
    assert camera.frames[0] is composed and camera.frames[1].shape == buffer_shape(native, 640, 480)
    assert np.abs(to_bgr(camera.frames[1], native).astype(float) - cv2.resize(portrait(), (640, 480))).mean() < 3


def test_native_formats_of_pyvirtualcams_backends() -> None:
    assert native_format("v4l2loopback", "linux") is PixelFormat.I420
    assert native_format("obs", "win32") is PixelFormat.NV12
    assert native_format("obs", "darwin") is PixelFormat.UYVY
    assert native_format("unitycapture", "win32") is PixelFormat.BGR


def test_virtual_camera_with_an_odd_size_says_to_choose_another() -> None:
    if native_format(next(iter(pyvirtualcam.camera.BACKENDS))) is PixelFormat.BGR:
        pytest.skip("this system's virtual camera takes any size")
    with pytest.raises(VcamError, match="even width and height"):
        VirtualCameraSink(641, 480, 30.0)


def test_null_sink_counts_i420_frames_and_checks_them() -> None:
    with open_sink("null", 64, 48, 30.0) as sink:
        assert isinstance(sink, NullSink) and sink.pixel_format is PixelFormat.I420
        sink.send(np.zeros((72, 64), np.uint8))
        sink.send(np.zeros((48, 64, 3), np.uint8))
        with pytest.raises(ValueError, match="64x48 I420"):
            sink.send(np.zeros((48, 64), np.uint8))
        assert sink.frames_received == 2


def test_open_sink_parses_specs(tmp_path: Path) -> None:
    virtual = open_sink("virtual", 1280, 720, 30.0)
    assert isinstance(virtual, VirtualCameraSink) and virtual.device is None
    assert open_sink("virtual:/dev/video5", 1280, 720, 30.0).device == "/dev/video5"
    recording = open_sink(f"file:{tmp_path / 'rec.mp4'}", 1280, 720, 30.0)
    assert isinstance(recording, FileSink) and recording.path == tmp_path / "rec.mp4"
    assert isinstance(open_sink("preview", 1280, 720, 30.0), PreviewSink)
    assert isinstance(open_sink("null", 1280, 720, 30.0), NullSink)
    for bad in ("", "file:", "rtmp://host/live", "previews", "screen", "nulls"):
        with pytest.raises(VcamError, match=r"virtual, virtual:DEVICE, file:PATH .*, preview or null"):
            open_sink(bad, 1280, 720, 30.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display check is for X11/Wayland")
def test_preview_without_a_display_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(VcamError, match="No display"), PreviewSink():
        pass


def test_qt_gets_a_folder_of_system_fonts_before_the_preview(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fonts = tmp_path / "fonts"
    for folder in ("truetype/liberation", "truetype/dejavu"):
        (fonts / folder).mkdir(parents=True)
        (fonts / folder / "Sans.ttf").write_bytes(b"")
    monkeypatch.setattr(preview, "SYSTEM_FONTS", (tmp_path / "none", fonts))
    monkeypatch.setenv("QT_QPA_FONTDIR", str(tmp_path / "cv2" / "qt" / "fonts"))  # what opencv-python sets: absent
    preview.point_qt_at_system_fonts()
    assert os.environ["QT_QPA_FONTDIR"] == str(fonts / "truetype" / "dejavu")
    monkeypatch.setenv("QT_QPA_FONTDIR", str(fonts / "truetype" / "liberation"))  # a folder that exists stays
    preview.point_qt_at_system_fonts()
    assert os.environ["QT_QPA_FONTDIR"] == str(fonts / "truetype" / "liberation")


def test_the_preview_hand_over_keeps_the_newest_frame() -> None:
    feed = PreviewSink()
    assert feed.take(timeout=0.01) is None
    first, second = np.zeros((2, 2, 3), np.uint8), np.ones((2, 2, 3), np.uint8)
    feed.send(first)
    feed.send(second)
    assert feed.take() is second
    assert feed.take() is None


TITLE = "vcam test preview"

# The window lives in a child process: OpenCV's Qt ends its process when its X server goes away,
# and the X server here is a private Xvfb that the fixture stops.
PREVIEW_CHILD = f"""
import time, numpy as np
from vcam.preview import PreviewWindow
frame = np.zeros((120, 160, 3), np.uint8)
window = PreviewWindow({TITLE!r})
window.show(frame)
window.pump()
print("shown", flush=True)
deadline = time.monotonic() + 20
while not window.closed_by_user and time.monotonic() < deadline:
    window.show(frame)
    window.pump()
print("closed" if window.closed_by_user and not window.is_open else "still open", flush=True)
"""


def run_preview(display: str, close_window: list[str]) -> str:
    """Show the preview in a child process, run close_window against it, and return how it ended."""
    env = {**os.environ, "DISPLAY": display, "PYTHONPATH": str(REPO), "QT_LOGGING_RULES": "*=false"}
    env.pop("WAYLAND_DISPLAY", None)
    child = subprocess.Popen(
        [sys.executable, "-c", PREVIEW_CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "shown", child.stderr.read()
    subprocess.run(close_window, env=env, check=True, timeout=10, capture_output=True)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    return out.strip()


@pytest.mark.parametrize("key", ["q", "Escape"])
def test_preview_closes_on_q_or_escape(x_display: str, key: str) -> None:
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed")
    press = ["xdotool", "search", "--sync", "--name", TITLE, "windowfocus", "--sync", "key", key]
    assert run_preview(x_display, press) == "closed"


def test_preview_closes_when_the_user_closes_the_window(x_display: str) -> None:
    pytest.importorskip("Xlib")
    # what a window manager's close button does: send WM_DELETE_WINDOW to the window
    close = [sys.executable, "-c", CLOSE_WINDOW, TITLE]
    assert run_preview(x_display, close) == "closed"


CLOSE_WINDOW = """
import sys
from Xlib import X, display, protocol
screen = display.Display()
atom = screen.intern_atom

def find(window):
    if window.get_wm_name() == sys.argv[1]:
        return window
    return next(filter(None, map(find, window.query_tree().children)), None)

window = find(screen.screen().root)
message = protocol.event.ClientMessage(
    window=window, client_type=atom("WM_PROTOCOLS"), data=(32, [atom("WM_DELETE_WINDOW"), X.CurrentTime, 0, 0, 0])
)
window.send_event(message, event_mask=X.NoEventMask)
screen.flush()
"""
