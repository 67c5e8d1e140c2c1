"""The whole live path on real clips: capture → track → motion → render → compose → file."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from clips import blank, placed, portrait, write_clip

from vcam.capture import ClipSource, Webcam
from vcam.errors import VcamError
from vcam.models import LIVEPORTRAIT, build_model, demo_config
from vcam.motion import MotionSettings, MotionStage
from vcam.pipeline import Pipeline, PipelineState
from vcam.pipeline.avatars import AvatarLoader, Model
from vcam.pipeline.runner import Runner, Scene
from vcam.pipeline.stages import Compose, FrameWork, Motion, Preview, Render, Send
from vcam.profiles import ProfileStore
from vcam.render.torch_backend import TorchRenderer
from vcam.settings import Settings
from vcam.pixel_formats import PixelFormat
from vcam.sinks import FileSink, NullSink

REPO = Path(__file__).resolve().parents[1]
MODEL = build_model(demo_config(LIVEPORTRAIT), seed=0)
OUT = (320, 180)


@pytest.fixture(scope="module")
def renderer():
    with TorchRenderer(MODEL, "cpu") as r:
        yield r


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "profiles"
    shutil.copytree(REPO / "profiles" / "default", root / "default")
    mirrored = tmp_path / "mirrored.jpg"
    cv2.imwrite(str(mirrored), cv2.flip(portrait(), 1))
    profiles = ProfileStore(root)
    profiles.create("mirrored", mirrored, TorchRenderer(MODEL, "cpu").prepare_source, "demo", MODEL.cfg.input_size)
    return profiles


def settings(store: ProfileStore, **changes) -> Settings:
    base = dict(profiles_dir=store.root, output_width=OUT[0], output_height=OUT[1], output_fps=30.0, audio=False)
    return Settings(**{**base, **changes})


def moving_clip(path: Path, count: int, blanks: range = range(0)) -> Path:
    frames = [blank() if i in blanks else placed(dx=4 * np.sin(i / 3), dy=2 * np.cos(i / 4), angle=3 * np.sin(i / 5)) for i in range(count)]
    return write_clip(path, frames)


def run(pipeline: Pipeline, timeout: float = 60.0) -> None:
    pipeline.start()
    assert pipeline.wait(timeout), "pipeline did not finish"
    pipeline.stop()
    pipeline.join(5)


def read_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def test_clip_to_file_every_frame_once(tmp_path, store, renderer):
    clip = moving_clip(tmp_path / "in.mp4", 12)
    out = tmp_path / "out.mp4"
    with ClipSource(clip) as source, FileSink(out, *OUT, 30.0) as sink:
        pipeline = Pipeline(settings(store), MODEL.cfg, renderer, store, "demo", source, sink, lossless=True)
        run(pipeline)
        status = pipeline.status()
    assert status.frames_in == status.frames_out == 12
    assert status.dropped == 0
    frames = read_frames(out)
    assert len(frames) == 12 and frames[0].shape == (OUT[1], OUT[0], 3)
    assert status.state == PipelineState.STOPPED
    assert set(status.stage_ms) == {"track", "motion", "render", "compose", "send"}


class SlowRenderer:
    """The real renderer, slowed down as a weak GPU would be."""

    def __init__(self, inner, delay: float) -> None:
        self.inner, self.delay, self.name, self.device = inner, delay, "slow", inner.device

    def prepare_source(self, crop):
        return self.inner.prepare_source(crop)

    def extract_motion(self, crop):
        return self.inner.extract_motion(crop)

    def render_device(self, source, head):
        time.sleep(self.delay)
        return self.inner.render_device(source, head)


def test_no_backlog_when_rendering_is_slower_than_capture(tmp_path, store, renderer):
    clip = moving_clip(tmp_path / "in.mp4", 40)
    latencies = []
    with ClipSource(clip, realtime=True) as source, FileSink(tmp_path / "out.mp4", *OUT, 30.0) as sink:
        pipeline = Pipeline(settings(store), MODEL.cfg, SlowRenderer(renderer, 0.1), store, "demo", source, sink)
        pipeline.add_listener(lambda: latencies.append(pipeline.status().latency_ms))
        pipeline.start()
        deadline = time.monotonic() + 30
        while pipeline.status().frames_in < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
            latencies.append(pipeline.status().latency_ms)
        pipeline.stop()
        pipeline.join(5)
        status = pipeline.status()
    assert status.frames_in == 40
    assert status.dropped > 10  # old camera frames were dropped, not queued
    assert status.frames_out < status.frames_in
    # A backlog would make latency grow with every frame (40 frames × 0.1 s = 4 s); it stays near one render.
    assert max(latencies) < 1000


def test_profile_switch_mid_run_drops_nothing(tmp_path, store, renderer):
    clip = moving_clip(tmp_path / "in.mp4", 24)
    out = tmp_path / "out.mp4"
    with ClipSource(clip) as source, FileSink(out, *OUT, 30.0) as sink:
        pipeline = Pipeline(settings(store), MODEL.cfg, renderer, store, "demo", source, sink, lossless=True)
        switched = threading.Event()

        def on_change():
            if pipeline.status().frames_out >= 6 and not switched.is_set():
                switched.set()
                pipeline.switch_profile("mirrored")

        pipeline.add_listener(on_change)
        pipeline.start()
        while pipeline.status().frames_out < 6:
            time.sleep(0.01)
        on_change()
        assert pipeline.wait(60)
        pipeline.stop()
        pipeline.join(5)
        status = pipeline.status()
    assert status.frames_out == status.frames_in == 24
    assert status.profile == "mirrored"
    frames = read_frames(out)
    # The keyframe is mirrored, so the first and last output frames differ strongly on the background.
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 10


def test_damaged_profile_switch_keeps_the_current_one(tmp_path, store, renderer):
    (store.root / "mirrored" / "profile.toml").write_text("nonsense = [")
    clip = moving_clip(tmp_path / "in.mp4", 6)
    with ClipSource(clip) as source, FileSink(tmp_path / "o.mp4", *OUT, 30.0) as sink:
        pipeline = Pipeline(settings(store), MODEL.cfg, renderer, store, "demo", source, sink, lossless=True)
        with pytest.raises(VcamError):
            pipeline.switch_profile("mirrored").result(10)
        assert "damaged" in pipeline.status().message and pipeline.active_profile == "default"
        run(pipeline)


def test_face_lost_and_regained(tmp_path, store, renderer):
    clip = moving_clip(tmp_path / "in.mp4", 30, blanks=range(8, 20))
    states = []
    with ClipSource(clip) as source, FileSink(tmp_path / "out.mp4", *OUT, 30.0) as sink:
        pipeline = Pipeline(settings(store), MODEL.cfg, renderer, store, "demo", source, sink, lossless=True)
        pipeline.add_listener(lambda: states.append(pipeline.status().state))
        run(pipeline)
        assert pipeline.status().frames_out == 30
    seen = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
    assert seen[:4] == [PipelineState.RUNNING, PipelineState.FACE_LOST, PipelineState.RUNNING, PipelineState.STOPPED]


class UnpluggedCamera:
    """A VideoCapture stand-in (the hardware edge): frames, then unplugged for a while, then back."""

    def __init__(self, script: list[bool]) -> None:
        self.script = script
        self.frames = [placed(dx=i) for i in range(4)]
        self.reads = 0

    def __call__(self, device):  # open_capture(device)
        return self

    def isOpened(self) -> bool:  # noqa: N802
        return True

    def read(self):
        ok = self.script[self.reads] if self.reads < len(self.script) else True
        self.reads += 1
        return (True, self.frames[self.reads % 4].copy()) if ok else (False, None)

    def set(self, prop, value) -> bool:
        return True

    def get(self, prop) -> float:
        return 0.0

    def release(self) -> None:
        pass


def test_camera_unplugged_then_back(tmp_path, store, renderer):
    camera = UnpluggedCamera([True] * 3 + [False] * 3)
    clock = [0.0]

    def fake_sleep(seconds):
        clock[0] += seconds

    def now():
        clock[0] += 0.01
        return clock[0]

    with Webcam(0, 640, 480, 30, open_capture=camera, clock=now, sleep=fake_sleep) as source, \
            FileSink(tmp_path / "out.mp4", *OUT, 30.0) as sink:
        pipeline = Pipeline(settings(store), MODEL.cfg, renderer, store, "demo", source, sink, lossless=True)
        pipeline.max_frames = 8
        run(pipeline)
        status = pipeline.status()
    assert status.frames_out == 8  # frames kept coming after the camera came back
    assert camera.reads > 8


def test_corrupt_starting_profile_is_one_line(tmp_path, store, renderer):
    (store.root / "default" / "keyframe.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VcamError) as err:
        Pipeline(settings(store), MODEL.cfg, renderer, store, "demo", None, FileSink(tmp_path / "o.mp4", *OUT, 30.0))
    assert "\n" not in str(err.value) and "damaged" in str(err.value)


def test_the_frame_is_composed_in_the_sinks_format_and_the_preview_gets_bgr(tmp_path, store, renderer):
    """Into a null sink (I420, as the Linux virtual camera) with the preview on: the sink gets I420
    frames, the preview the same frames in BGR, as the OpenCV compositor draws them."""
    sent: list[np.ndarray] = []
    sink = NullSink(*OUT)
    sink.send = sent.append  # the frames as the sink receives them
    pipeline = Pipeline(settings(store, camera_off=True, preview=True), MODEL.cfg, renderer, store, "demo", None, sink,
                        banner="DEMO")
    pipeline.max_frames = 3
    run(pipeline)
    shown = pipeline.preview_feed.take()
    assert len(sent) >= 3 and all(frame.shape == (OUT[1] * 3 // 2, OUT[0]) for frame in sent)  # live: repeats too
    assert shown.shape == (OUT[1], OUT[0], 3)
    assert np.array_equal(shown, cv2.cvtColor(sent[-1], cv2.COLOR_YUV2BGR_I420))
    avatar = AvatarLoader(store, settings(store)).load("default", Model(MODEL.cfg, renderer, "demo"))
    assert avatar.device_compositor is None  # a CPU renderer composes with OpenCV
    keyframe = avatar.compositor.keyframe_output()
    assert np.abs(shown[:150, :10].astype(int) - keyframe[:150, :10]).mean() < 3  # the side bar, above the banner


class Recording:
    """A sink that keeps every BGR frame it is sent (what the .y4m file was written from before it took I420)."""

    pixel_format = PixelFormat.BGR
    description = "recording"

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def __enter__(self) -> "Recording":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def send(self, frame: np.ndarray) -> None:
        self.frames.append(frame.copy())


def test_y4m_file_holds_the_composed_frames_as_before(tmp_path, store, renderer):
    """The .y4m sink takes I420 composed frames: its file is byte for byte the BGR frames converted by
    OpenCV, as the file sink wrote them from BGR frames before."""
    clip = moving_clip(tmp_path / "in.mp4", 5)
    recording = Recording()
    for sink in (FileSink(tmp_path / "out.y4m", *OUT, 30.0), recording):
        with ClipSource(clip) as source, sink:
            run(Pipeline(settings(store), MODEL.cfg, renderer, store, "demo", source, sink, banner="DEMO", lossless=True))
    header = f"YUV4MPEG2 W{OUT[0]} H{OUT[1]} F30:1 Ip A1:1 C420jpeg\n".encode()
    frames = b"".join(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes() for frame in recording.frames)
    assert len(recording.frames) == 5
    assert (tmp_path / "out.y4m").read_bytes() == header + frames


def test_camera_off_mode_is_driven_by_time_alone(tmp_path, store, renderer):
    with FileSink(tmp_path / "out.mp4", *OUT, 30.0) as sink:
        pipeline = Pipeline(settings(store, camera_off=True), MODEL.cfg, renderer, store, "demo", None, sink)
        pipeline.max_frames = 5
        run(pipeline)
        assert pipeline.status().frames_out == 5
        assert pipeline.status().camera == "camera off"


def test_controller_calls(tmp_path, store, renderer):
    with FileSink(tmp_path / "out.mp4", *OUT, 30.0) as sink:
        pipeline = Pipeline(settings(store), MODEL.cfg, renderer, store, "demo", None, sink)
        changes = []
        pipeline.add_listener(lambda: changes.append(1))
        pipeline.set_frontalize(True)
        pipeline.set_frontalize_strength(1.7)
        assert pipeline.frontalize and pipeline.frontalize_strength == 1.0
        assert not pipeline.expression_friendly
        pipeline.set_expression_friendly(True)
        assert pipeline.expression_friendly and pipeline.motion_settings.driving_option == "expression-friendly"
        pipeline.pause()
        assert pipeline.paused and pipeline.status().state == PipelineState.PAUSED
        pipeline.resume()
        assert not pipeline.paused
        assert pipeline.profiles() == ["default", "mirrored"]
        assert len(changes) >= 3


def test_profile_from_before_the_face_was_measured_gets_measured_at_start(tmp_path, store, renderer):
    meta = store.root / "default" / "profile.toml"
    meta.write_text(meta.read_text().split("[face]")[0])  # as profiles were written before
    assert store.load("default").eye_open is None
    ratios = AvatarLoader(store, settings(store)).load("default", Model(MODEL.cfg, renderer, "demo")).ratios
    assert ratios is not None and 0.2 < ratios.eye_open[0] < 0.35 and ratios.lip_open > 0.1


def test_recalibrate_lands_between_frames_never_inside_one(tmp_path, store, renderer, monkeypatch):
    """The tray's Recalibrate, clicked while a frame's motion is being computed, waits for the frame boundary."""
    inside, go_on = threading.Event(), threading.Event()
    updating, resets_while_updating = [False], []
    update, recalibrate = MotionStage.update, MotionStage.recalibrate

    def held_update(self, *args, **kwargs):
        updating[0] = True
        if not inside.is_set():  # the first frame stops here until the test lets it go on
            inside.set()
            go_on.wait(30)
        try:
            return update(self, *args, **kwargs)
        finally:
            updating[0] = False

    def recorded_recalibrate(self):
        resets_while_updating.append(updating[0])
        recalibrate(self)

    monkeypatch.setattr(MotionStage, "update", held_update)
    monkeypatch.setattr(MotionStage, "recalibrate", recorded_recalibrate)
    with FileSink(tmp_path / "out.mp4", *OUT, 30.0) as sink:
        pipeline = Pipeline(settings(store, camera_off=True), MODEL.cfg, renderer, store, "demo", None, sink)
        pipeline.max_frames = 3
        pipeline.start()
        assert inside.wait(30), "no frame reached the motion stage"
        tray = threading.Thread(target=pipeline.recalibrate)  # the tray's menu thread
        tray.start()
        tray.join(30)
        go_on.set()
        assert pipeline.wait(60)
        pipeline.stop()
        pipeline.join(5)
    assert resets_while_updating == [False]


def test_a_new_stage_is_one_object_timed_under_its_name(tmp_path, store, renderer):
    class Greyscale:  # e.g. a compositing step of its own, on the I420 frame the .y4m file takes
        name = "grey"

        def run(self, work: FrameWork) -> None:
            work.image[OUT[1] :] = 128  # neutral chroma

    errors: list[str] = []
    model = Model(MODEL.cfg, renderer, "demo")
    avatar = AvatarLoader(store, settings(store)).load("default", model)
    motion = MotionStage(MODEL.cfg.convention, avatar.source, MotionSettings(), True, avatar.ratios)
    with FileSink(tmp_path / "out.y4m", *OUT, 30.0) as sink:
        runner = Runner(
            Scene(model, avatar, motion), None, [Motion(motion, None), Render(), Compose(sink.pixel_format), Greyscale()],
            [Send(sink, Preview(False, print))], output_fps=30.0, camera_fps=30.0, lossless=True,
            on_frame=lambda work: None, on_error=errors.append,
        )
        runner.max_frames = 3
        runner.start()
        assert runner.finished.wait(60)
        runner.stop()
        runner.join(5)
    assert errors == []
    assert list(runner.measures().stage_ms) == ["motion", "render", "compose", "grey", "send"]
    frames = read_frames(tmp_path / "out.y4m")
    assert len(frames) == 3 and all(np.ptp(frame.astype(int), axis=2).max() <= 2 for frame in frames)


def test_tracking_the_next_frame_overlaps_rendering_this_one(tmp_path, store, renderer):
    """The camera stage of frame 2 and the frame stages of frame 1 run at the same time: each waits
    for the other, which only threads of their own can satisfy."""
    rendering_first, tracking_second = threading.Event(), threading.Event()
    threads: dict[str, set[str]] = {"track": set(), "render": set()}

    class Track:
        name = "track"

        def run(self, work: FrameWork) -> None:
            threads["track"].add(threading.current_thread().name)
            if work.frame is not None and work.frame.index == 1:
                tracking_second.set()
                assert rendering_first.wait(30), "frame 1 was not rendering while frame 2 was tracked"

    class SlowRender(Render):
        def run(self, work: FrameWork) -> None:
            threads["render"].add(threading.current_thread().name)
            if work.frame is not None and work.frame.index == 0:
                rendering_first.set()
                assert tracking_second.wait(30), "frame 2 was not tracked while frame 1 rendered"
            super().run(work)

    errors: list[str] = []
    model = Model(MODEL.cfg, renderer, "demo")
    avatar = AvatarLoader(store, settings(store)).load("default", model)
    motion = MotionStage(MODEL.cfg.convention, avatar.source, MotionSettings(), True, avatar.ratios)
    clip = moving_clip(tmp_path / "in.mp4", 4)
    with ClipSource(clip) as source, FileSink(tmp_path / "out.y4m", *OUT, 30.0) as sink:
        runner = Runner(
            Scene(model, avatar, motion), source, [Motion(motion, None), SlowRender(), Compose(sink.pixel_format)],
            [Send(sink, Preview(sink, False))], output_fps=30.0, camera_fps=30.0, lossless=True,
            on_frame=lambda work: None, on_error=errors.append, camera_stages=[Track()],
        )
        runner.start()
        assert runner.finished.wait(60)
        runner.stop()
        runner.join(5)
    assert errors == [] and sink.frames_written == 4
    assert threads == {"track": {"vcam-capture"}, "render": {"vcam-inference"}}
    assert list(runner.measures().stage_ms) == ["track", "motion", "render", "compose", "send"]


def test_a_live_run_reports_latency_percentiles(tmp_path, store, renderer):
    clip = moving_clip(tmp_path / "in.mp4", 20)
    with ClipSource(clip, loop=True, realtime=True) as source, FileSink(tmp_path / "out.y4m", *OUT, 30.0) as sink:
        pipeline = Pipeline(settings(store), MODEL.cfg, renderer, store, "demo", source, sink)
        pipeline.max_frames = 20
        run(pipeline)
        status = pipeline.status()
        pipeline.forget_latencies()  # as a benchmark does after its warm-up frames
        assert pipeline.status().latency_p99_ms == 0
    assert 0 < status.latency_p50_ms <= status.latency_p99_ms


def test_a_failure_is_reported_before_the_run_counts_as_finished(tmp_path, store, renderer):
    """`vcam run` reads the state once the run has finished: a failed frame must be in it by then."""

    class Broken:
        name = "broken"

        def run(self, work: FrameWork) -> None:
            raise RuntimeError("the device went away")

    errors: list[str] = []

    def slow_report(message: str) -> None:  # reporting takes a moment (logging, listeners)
        time.sleep(0.3)
        errors.append(message)

    model = Model(MODEL.cfg, renderer, "demo")
    avatar = AvatarLoader(store, settings(store)).load("default", model)
    motion = MotionStage(MODEL.cfg.convention, avatar.source, MotionSettings(), True, avatar.ratios)
    with FileSink(tmp_path / "out.y4m", *OUT, 30.0) as sink:
        runner = Runner(
            Scene(model, avatar, motion), None, [Motion(motion, None), Broken()], [Send(sink, Preview(sink, False))],
            output_fps=30.0, camera_fps=30.0, lossless=True, on_frame=lambda work: None, on_error=slow_report,
        )
        runner.start()
        assert runner.finished.wait(30)
        assert errors == ["the device went away"]
        runner.join(5)
