"""The running system and its controller.

Three threads joined by one-slot queues: *capture* reads the camera, *inference* tracks the
face, reads its motion, renders the avatar and pastes it into the keyframe, *output* sends
frames to the sink. In live mode a slot keeps only the newest item (a slow renderer drops old
camera frames instead of building a backlog, so latency stays bounded) and the output repeats
the last frame to keep the virtual camera at a steady rate. In lossless mode (rendering a clip
to a file) every slot waits instead, so every input frame comes out exactly once.

:class:`Pipeline` is also the controller that the CLI and the tray call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import cv2
import numpy as np

from .audio import Microphone
from .capture import Frame, FrameSource
from .compose import Compositor, draw_banner
from .landmark_models import ensure_models
from .models import ModelConfig, SourceState
from .motion import KeyframeRatios, MotionSettings, MotionStage
from .profiles import Profile, ProfileStore
from .render.base import Renderer
from .settings import Settings, settings_path
from .sinks import FrameSink, PreviewSink
from .tracking import FaceLandmarker, FaceTracker, read_keyframe

if TYPE_CHECKING:
    from .first_use import WeightsDownload

log = logging.getLogger("vcam.pipeline")
T = TypeVar("T")


class PipelineState(str, Enum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    FACE_LOST = "face_lost"
    ERROR = "error"
    STOPPED = "stopped"


@dataclass(frozen=True)
class PipelineStatus:
    state: PipelineState
    fps: float
    latency_ms: float
    backend: str
    camera: str
    profile: str
    message: str = ""
    stage_ms: dict[str, float] = field(default_factory=dict)
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0


class Slot(Generic[T]):
    """A one-item queue. Live: ``put`` replaces the waiting item (counted as dropped).
    Lossless: ``put`` waits until the item has been taken."""

    def __init__(self, lossless: bool) -> None:
        self.lossless = lossless
        self.dropped = 0
        self._item: T | None = None
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item: T) -> bool:
        """False if the slot was closed (the consumer is gone)."""
        with self._cond:
            while self.lossless and self._item is not None and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """The waiting item, or None after ``timeout`` / once closed and empty."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed and self._item is None


@dataclass(frozen=True)
class Avatar:
    profile: Profile
    source: SourceState
    compositor: Compositor
    ratios: KeyframeRatios


@dataclass(frozen=True)
class OutputFrame:
    image: np.ndarray
    captured_at: float


class Ewma:
    def __init__(self, weight: float = 0.1) -> None:
        self.weight, self.value = weight, 0.0
        self._seen = False

    def add(self, x: float) -> None:
        self.value = x if not self._seen else self.value + self.weight * (x - self.value)
        self._seen = True


def motion_settings(s: Settings) -> MotionSettings:
    return MotionSettings(
        smoothing_min_cutoff=s.smoothing_min_cutoff,
        smoothing_beta=s.smoothing_beta,
        frontalize=s.frontalize,
        frontalize_strength=s.frontalize_strength,
        frontalize_target=s.frontalize_target,
        eye_reaim_degrees=s.eye_reaim_degrees,
        face_lost_hold_s=s.face_lost_hold_s,
        ease_s=s.ease_s,
        driving_option=s.driving_option,
        driving_multiplier=s.driving_multiplier,
    )


def keyframe_ratios(profile: Profile, landmarks_dir: Path) -> KeyframeRatios:
    """The profile's measured eye and lip ratios; a profile made before they were measured is
    measured now, with landmark models of its own (this may run on the profile loader thread
    while the inference thread tracks)."""
    if profile.eye_open is not None and profile.lip_open is not None:
        return KeyframeRatios(profile.eye_open, profile.lip_open)
    measured = read_keyframe(profile.keyframe, FaceLandmarker(ensure_models(landmarks_dir)))
    return KeyframeRatios(measured.eye_open, measured.lip_open)


class Pipeline:
    """Runs the frame path and answers the controller calls (thread-safe)."""

    def __init__(
        self,
        settings: Settings,
        config: ModelConfig,
        renderer: Renderer,
        store: ProfileStore,
        weights_id: str,
        source: FrameSource | None,
        sink: FrameSink,
        microphone: Microphone | None = None,
        tracker: FaceTracker | None = None,
        backend_description: str = "",
        banner: str | None = None,
        lossless: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.config = config
        self.renderer = renderer
        self.store = store
        self.weights_id = weights_id
        self.source = source
        self.sink = sink
        self.microphone = microphone
        self.tracker = tracker or FaceTracker(
            FaceLandmarker(ensure_models(settings.landmarks_dir)), scale=settings.crop_expand, shift_y=settings.crop_shift_y
        )
        self.backend = backend_description or renderer.name
        self.banner = banner
        self.clock = clock
        self.settings_path = settings_path()
        self.profiles_dir = store.root
        self._lossless = lossless
        self._frames: Slot[Frame] = Slot(lossless)
        self._outputs: Slot[OutputFrame] = Slot(lossless)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listeners: list[Callable[[], None]] = []
        self._avatar = self._load_avatar(settings.profile)
        self._pending: Avatar | None = None
        self._pending_model: tuple[ModelConfig, Renderer, str, Avatar] | None = None
        self._weights_download: WeightsDownload | None = None
        self._motion = MotionStage(
            config.convention, self._avatar.source, motion_settings(settings), config.retargeting is not None, self._avatar.ratios
        )
        self._state = PipelineState.STARTING
        self._message = ""
        self._paused = False
        # the window shows what preview_feed holds; a preview sink is its own feed
        self.preview_feed = sink if isinstance(sink, PreviewSink) else PreviewSink()
        self._preview = settings.preview or self.preview_feed is sink
        self._timings = {name: Ewma() for name in ("track", "motion", "render", "compose", "send")}
        self._fps = Ewma(0.05)
        self._latency = Ewma(0.1)
        self._frames_in = 0
        self._frames_out = 0
        self._last_sent_at: float | None = None
        self.max_frames: int | None = None
        self.finished = threading.Event()

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> None:
        workers = [("vcam-inference", self._inference_loop), ("vcam-output", self._output_loop)]
        if self.source is not None and not self.settings.camera_off:
            workers.insert(0, ("vcam-capture", self._capture_loop))
        else:
            self._frames.close()
        for name, target in workers:
            thread = threading.Thread(target=self._guard(target), name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Ask every thread to finish; :meth:`join` waits for them."""
        self._stop.set()
        self._frames.close()
        self._outputs.close()

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)
        self._set_state(PipelineState.STOPPED)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends by itself (clip over, frame limit reached) or is stopped."""
        return self.finished.wait(timeout)

    def _guard(self, loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                loop()
            except Exception as exc:  # a broken device or backend: report, stop cleanly
                log.exception("%s failed", threading.current_thread().name)
                self._fail(str(exc) or type(exc).__name__)

        return run

    def _fail(self, message: str) -> None:
        with self._lock:
            self._message = message
        self._set_state(PipelineState.ERROR)
        self.stop()
        self.finished.set()

    # -- threads ----------------------------------------------------------------------------------

    def _capture_loop(self) -> None:
        assert self.source is not None
        idle = 0.5 / max(self.settings.camera_fps, 1.0)
        while not self._stop.is_set():
            frame = self.source.read()
            if frame is None:
                if self.source.finished:
                    break
                self._stop.wait(idle)
                continue
            self._frames_in += 1
            if not self._frames.put(frame):
                break
        self._frames.close()

    def _inference_loop(self) -> None:
        period = 1.0 / self.settings.output_fps
        camera_off = self.source is None or self.settings.camera_off
        next_tick = self.clock()
        while not self._stop.is_set():
            if camera_off:
                self._stop.wait(max(0.0, next_tick - self.clock()))
                next_tick += period
                frame = None
                captured_at = self.clock()
            else:
                frame = self._frames.get(timeout=0.1)
                if frame is None:
                    if self._frames.closed:
                        break
                    continue
                captured_at = frame.timestamp
            if self.paused:
                continue
            image = self._process(frame)
            if not self._outputs.put(OutputFrame(image, captured_at)):
                break
        self._outputs.close()

    def _output_loop(self) -> None:
        period = 1.0 / self.settings.output_fps
        last: OutputFrame | None = None
        while True:
            item = self._outputs.get(timeout=None if self._lossless else period)
            if item is None:
                if self._outputs.closed or self._stop.is_set():
                    break
                if last is None or self._lossless:
                    continue
                self._send(last, fresh=False)  # keep the virtual camera fed at a steady rate
                continue
            last = item
            self._send(item, fresh=True)
            if self.max_frames is not None and self._frames_out >= self.max_frames:
                self.stop()
                break
        self.finished.set()

    # -- one frame --------------------------------------------------------------------------------

    def _process(self, frame: Frame | None) -> np.ndarray:
        avatar = self._take_pending_avatar()
        t0 = self.clock()
        estimate = None
        lost = True
        face = None
        if frame is not None:
            track = self.tracker.update(frame.image, frame.timestamp)
            face = track.face
            lost = track.lost or track.box is None
            t1 = self.clock()
            self._timings["track"].add(t1 - t0)
            if not lost:
                size = self.config.input_size
                crop = cv2.cvtColor(track.box.crop(frame.image, size), cv2.COLOR_BGR2RGB)
                estimate = self.renderer.extract_motion(crop)
            t0 = t1
        mouth = self.microphone.mouth_open() if self.microphone is not None else None
        when = frame.timestamp if frame is not None else self.clock()
        head = self._motion.update(estimate, when, mouth, face)
        t2 = self.clock()
        self._timings["motion"].add(t2 - t0)
        rendered = self.renderer.render(avatar.source, head)
        t3 = self.clock()
        self._timings["render"].add(t3 - t2)
        image = avatar.compositor.compose(cv2.cvtColor(rendered, cv2.COLOR_RGB2BGR))
        if self.banner:
            draw_banner(image, self.banner)
        self._timings["compose"].add(self.clock() - t3)
        if self.source is not None and not self.settings.camera_off:
            self._set_state(PipelineState.FACE_LOST if lost else PipelineState.RUNNING)
        else:
            self._set_state(PipelineState.RUNNING)
        return image

    def _send(self, item: OutputFrame, fresh: bool) -> None:
        now = self.clock()
        self.sink.send(item.image)  # a pacing sink sleeps here until the next frame is due
        if self._preview and self.preview_feed is not self.sink:
            self.preview_feed.send(item.image)
        self._timings["send"].add(self.clock() - now)
        if not fresh:
            return
        self._frames_out += 1
        if not self._lossless:  # a lossless run works through the clip at its own pace
            self._latency.add(now - item.captured_at)
        if self._last_sent_at is not None and now > self._last_sent_at:
            self._fps.add(1.0 / (now - self._last_sent_at))
        self._last_sent_at = now

    # -- avatars ----------------------------------------------------------------------------------

    def _load_avatar(self, name: str, model: tuple[ModelConfig, Renderer, str] | None = None) -> Avatar:
        """``name``'s avatar for the current model, or for ``model`` (config, renderer, weights id)."""
        config, renderer, weights_id = model or (self.config, self.renderer, self.weights_id)
        profile = self.store.load(name)
        source = self.store.source_state(profile, renderer.prepare_source, weights_id, config.input_size)
        s = self.settings
        compositor = Compositor(profile.keyframe, profile.box, (s.output_width, s.output_height), mirror=s.mirror)
        return Avatar(profile, source, compositor, keyframe_ratios(profile, s.landmarks_dir))

    def _take_pending_avatar(self) -> Avatar:
        retired = None
        with self._lock:
            if self._pending_model is not None:
                retired = self.renderer
                self.config, self.renderer, self.weights_id, self._avatar = self._pending_model
                self._pending_model = None
                self.backend, self.banner = self.renderer.name, None
                self._motion.set_source(self._avatar.source, self._avatar.ratios)
            if self._pending is not None:
                self._avatar, self._pending = self._pending, None
                self._motion.set_source(self._avatar.source, self._avatar.ratios)
                log.info("avatar %r", self._avatar.profile.name)
            avatar = self._avatar
        close = getattr(retired, "close", None)
        if close is not None:
            close()
        return avatar

    # -- controller -------------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:  # a listener must never break the frame path
                log.exception("status listener failed")

    def _set_state(self, state: PipelineState) -> None:
        with self._lock:
            if self._state == state or (self._state == PipelineState.ERROR and state != PipelineState.STOPPED):
                return
            self._state = state
        self._notify()

    def profiles(self) -> list[str]:
        return self.store.names()

    @property
    def active_profile(self) -> str:
        with self._lock:
            return (self._pending or self._avatar).profile.name

    def switch_profile(self, name: str) -> Future[None]:
        """Load ``name`` in the background, then swap it in between two frames (none is dropped).
        A damaged profile is reported in the status and the current one stays."""
        done: Future[None] = Future()

        def load() -> None:
            avatar = None
            while avatar is None:  # again when the model changed during the load
                model = self._latest_model()
                try:
                    prepared = self._load_avatar(name, model)
                except Exception as exc:
                    with self._lock:
                        self._message = f"cannot switch to {name!r}: {exc}"
                    log.warning(self._message)
                    self._notify()
                    done.set_exception(exc)
                    return
                with self._lock:
                    if self._latest_model()[1] is model[1]:
                        avatar = self._pending = prepared
                        self._message = ""
            self._notify()
            done.set_result(None)

        threading.Thread(target=load, name="vcam-profile-loader", daemon=True).start()
        return done

    def switch_model(self, config: ModelConfig, renderer: Renderer, weights_id: str) -> None:
        """Render with another model (the installed weights in place of the demo model) from the next
        frame on. The avatar is prepared for it here, in the caller's thread; model, renderer and avatar
        then change together between two frames, the old renderer is closed and the demo banner goes."""
        avatar = self._load_avatar(self.active_profile, (config, renderer, weights_id))
        with self._lock:
            self._pending_model = (config, renderer, weights_id, avatar)
            self._pending = None  # prepared for the old model; the new one's avatar has its profile
        self._notify()

    def _latest_model(self) -> tuple[ModelConfig, Renderer, str]:
        """The model the next frames render with: the one waiting to be swapped in, else the current one."""
        with self._lock:
            pending = self._pending_model
            return pending[:3] if pending is not None else (self.config, self.renderer, self.weights_id)

    @property
    def weights_download(self) -> WeightsDownload | None:
        """The offer to download the real model's weights (None when they were installed at start)."""
        return self._weights_download

    def offer_weights_download(self, download: WeightsDownload) -> None:
        """Show ``download`` in the tray; its progress reaches the status listeners."""
        download.on_change = self._notify
        self._weights_download = download
        self._notify()

    @property
    def frontalize(self) -> bool:
        return self._motion.settings.frontalize

    def set_frontalize(self, on: bool) -> None:
        self._update_motion(frontalize=on)

    @property
    def expression_friendly(self) -> bool:
        """LivePortrait's expression-friendly driving (motion scaled to the avatar's face) is on."""
        return self._motion.settings.driving_option == "expression-friendly"

    def set_expression_friendly(self, on: bool) -> None:
        self._update_motion(driving_option="expression-friendly" if on else "pose-friendly")

    @property
    def frontalize_strength(self) -> float:
        return self._motion.settings.frontalize_strength

    def set_frontalize_strength(self, value: float) -> None:
        self._update_motion(frontalize_strength=min(max(float(value), 0.0), 1.0))

    def _update_motion(self, **changes: object) -> None:
        with self._lock:
            self._motion.set_settings(replace(self._motion.settings, **changes))
        self._notify()

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        self._paused = True
        self._set_state(PipelineState.PAUSED)

    def resume(self) -> None:
        self._paused = False
        self._set_state(PipelineState.STARTING)

    def recalibrate(self) -> None:
        """The next frame with a face becomes the neutral reference."""
        with self._lock:
            self._motion.recalibrate()

    @property
    def preview(self) -> bool:
        return self._preview

    def set_preview(self, on: bool) -> None:
        self._preview = on or self.preview_feed is self.sink
        self._notify()

    def preview_closed(self) -> None:
        """The user closed the preview window: with the preview as the output the run ends."""
        if self.preview_feed is self.sink:
            self.stop()
        self._preview = False
        self._notify()

    def status(self) -> PipelineStatus:
        with self._lock:
            return PipelineStatus(
                state=self._state,
                fps=self._fps.value,
                latency_ms=self._latency.value * 1000,
                backend=self.backend,
                camera=self.source.description if self.source is not None and not self.settings.camera_off else "camera off",
                profile=self.active_profile,
                message=self._message,
                stage_ms={name: ewma.value * 1000 for name, ewma in self._timings.items()},
                frames_in=self._frames_in,
                frames_out=self._frames_out,
                dropped=self._frames.dropped + self._outputs.dropped,
            )
