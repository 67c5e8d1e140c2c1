"""The controller: what the tray and the command line call, and the pipeline that answers them.

:class:`Controller` is the interface; :class:`Pipeline` implements it over a :class:`Runner`. The
controller owns the lock and the state the user sees (state, message, avatar name, motion
settings, pause); what changes the frames goes to the runner as a command, applied between two
frames, so no call from the tray ever lands in the middle of one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..audio import Microphone
from ..background import in_background
from ..capture import FrameSource
from ..landmark_models import ensure_models
from ..models import ModelConfig
from ..motion import MotionSettings, MotionStage
from ..profiles import ProfileStore
from ..render.base import Renderer
from ..settings import Settings, settings_path
from ..sinks import FrameSink, PreviewSink
from ..tracking import FaceLandmarker, FaceTracker
from .avatars import AvatarLoader, Model
from .runner import Command, Runner, Scene
from .stages import Compose, FrameWork, Motion, Preview, Render, Send, Stage, Track, motion_settings
from .status import PipelineState, PipelineStatus

if TYPE_CHECKING:
    from ..first_use import WeightsDownload

log = logging.getLogger("vcam.pipeline")

CAMERA_OFF = "camera off"
"""What :attr:`PipelineStatus.camera` says when no camera feeds the pipeline."""


class Controller(Protocol):
    """What the tray and the command line may ask of a running pipeline (thread-safe)."""

    settings_path: Path
    profiles_dir: Path

    def status(self) -> PipelineStatus: ...
    def add_listener(self, callback: Callable[[], None]) -> None:
        """``callback`` is called (from any thread) whenever the status changes."""
    def stop(self) -> None: ...
    def profiles(self) -> list[str]: ...
    @property
    def active_profile(self) -> str: ...
    def switch_profile(self, name: str) -> Future[None]: ...
    @property
    def frontalize(self) -> bool: ...
    def set_frontalize(self, on: bool) -> None: ...
    @property
    def frontalize_strength(self) -> float: ...
    def set_frontalize_strength(self, value: float) -> None: ...
    @property
    def expression_friendly(self) -> bool: ...
    def set_expression_friendly(self, on: bool) -> None: ...
    @property
    def paused(self) -> bool: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def recalibrate(self) -> None: ...
    @property
    def preview(self) -> bool: ...
    def set_preview(self, on: bool) -> None: ...
    def preview_closed(self) -> None:
        """The user closed the preview window."""
    @property
    def preview_feed(self) -> PreviewSink: ...
    @property
    def finished(self) -> threading.Event:
        """Set when the run has ended."""
    @property
    def weights_download(self) -> WeightsDownload | None: ...
    @property
    def receiving(self) -> bool:
        """A call's sender drives the avatar (its avatar and motion, not the camera's)."""


class Link(Protocol):
    """One end of a call wired into the pipeline (see :mod:`vcam.stream.call`): its ``stage`` takes
    the camera's place as the motion source (``replaces_camera``, receiving) or follows the motion
    stage (sending); ``report`` gives the state (None: the pipeline's own) and the message the
    status shows; ``stop`` releases a stage that waits for the network."""

    stage: Stage
    replaces_camera: bool

    def report(self) -> tuple[PipelineState | None, str]: ...
    def stop(self) -> None: ...


def face_tracker(settings: Settings) -> FaceTracker:
    return FaceTracker(FaceLandmarker(ensure_models(settings.landmarks_dir)), scale=settings.crop_expand, shift_y=settings.crop_shift_y,
                       gaze=settings.eye_reaim_degrees > 0)  # the gaze only limits the eye re-aim


class Pipeline:
    """The running system: builds the frame stages and their runner, and answers the controller calls.

    Without a ``source`` the camera is off: no tracking, and the clock drives the frames.
    """

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
        banner: str | None = None,
        lossless: bool = False,
        clock: Callable[[], float] = time.monotonic,
        link: Link | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.settings_path = settings_path()
        self.profiles_dir = store.root
        self.store = store
        self.camera = source.description if source is not None else CAMERA_OFF
        self._lock = threading.RLock()
        self._listeners: list[Callable[[], None]] = []
        self._loader = AvatarLoader(store, settings)
        self._model = Model(config, renderer, weights_id, banner)
        avatar = self._loader.load(settings.profile, self._model)
        self._profile = avatar.profile.name
        self._received_profile: str | None = None
        """The avatar a call's sender drives now (None while nobody does, or without a call)."""
        self._motion = motion_settings(settings)
        motion = MotionStage(config.convention, avatar.source, self._motion, config.retargeting is not None, avatar.ratios)
        self._preview = Preview(sink, settings.preview)
        tracking = [Track(tracker or face_tracker(settings))] if source is not None else []
        heads: list[Stage] = [Motion(motion, microphone)]
        if link is not None:  # a call: the sender's motion in place of the camera's, or our motion sent on
            heads = [link.stage] if link.replaces_camera else [*heads, link.stage]
            tracking = [] if link.replaces_camera else tracking
        self._link = link
        self._runner = Runner(
            Scene(self._model, avatar, motion), source, [*heads, Render(), Compose(sink.pixel_format)],
            [Send(sink, self._preview)], output_fps=settings.output_fps, camera_fps=settings.camera_fps,
            lossless=lossless, on_frame=self._frame_done, on_error=self._fail, clock=clock, camera_stages=tracking,
        )
        self._state = PipelineState.STARTING
        self._message = ""
        self._paused = False
        self._weights_download: WeightsDownload | None = None

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._runner.start()

    def stop(self) -> None:
        """Ask every thread to finish; :meth:`join` waits for them."""
        self._runner.stop()
        if self._link is not None:
            self._link.stop()

    def join(self, timeout: float | None = None) -> None:
        self._runner.join(timeout)
        self._set_state(PipelineState.STOPPED)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends by itself (clip over, frame limit reached, failure) or is stopped."""
        return self._runner.finished.wait(timeout)

    @property
    def finished(self) -> threading.Event:
        return self._runner.finished

    @property
    def first_frame_out(self) -> threading.Event:
        """Set once the first frame is out, or when the run ends before one."""
        return self._runner.first_frame_out

    @property
    def max_frames(self) -> int | None:
        """Stop after this many output frames (None: run until stopped)."""
        return self._runner.max_frames

    @max_frames.setter
    def max_frames(self, count: int | None) -> None:
        self._runner.max_frames = count

    def forget_latencies(self) -> None:
        """Start the latency percentiles afresh (a benchmark leaves its warm-up frames out)."""
        self._runner.forget_latencies()

    @property
    def renderer(self) -> Renderer:
        """The renderer the frames are drawn with now (the caller closes the last one after :meth:`join`)."""
        return self._runner.scene.model.renderer

    # -- status -----------------------------------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def status(self) -> PipelineStatus:
        with self._lock:
            model, measures = self._runner.scene.model, self._runner.measures()
            state, message = self._state, self._message
            if self._link is not None and state not in (PipelineState.ERROR, PipelineState.STOPPED):
                link_state, message = self._link.report()
                if link_state is not None and state is not PipelineState.PAUSED:
                    state = link_state
            return PipelineStatus(
                state=state,
                backend=model.renderer.name,
                camera=self.camera,
                profile=self._received_profile or self._profile,
                message=message,
                weights_id=model.weights_id,
                banner=model.banner,
                **{f.name: getattr(measures, f.name) for f in fields(measures)},  # every measure under its own name
            )

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

    def _frame_done(self, work: FrameWork) -> None:
        with self._lock:
            if self._paused:  # a frame that was under way when Pause was clicked
                return
            if self._link is not None and self._link.replaces_camera:
                self._received_profile = None if work.still is not None else work.avatar.profile.name
        self._set_state(PipelineState.FACE_LOST if work.face_lost else PipelineState.RUNNING)

    def _fail(self, message: str) -> None:
        with self._lock:
            self._message = message
        self._set_state(PipelineState.ERROR)

    def _say(self, message: str) -> None:
        with self._lock:
            self._message = message
        self._notify()

    def _command(self, command: Command) -> None:
        self._runner.submit(command)

    # -- avatar and model -------------------------------------------------------------------------

    def profiles(self) -> list[str]:
        return self.store.names()

    @property
    def active_profile(self) -> str:
        """The avatar shown now, or the one that replaces it from the next frame on."""
        with self._lock:
            return self._profile

    def switch_profile(self, name: str) -> Future[None]:
        """Load ``name`` in the background, then swap it in between two frames (none is dropped).
        A damaged profile is reported in the status and the current one stays."""

        def load() -> None:
            while True:  # again when the model changed during the load
                with self._lock:
                    model = self._model
                try:
                    avatar = self._loader.load(name, model)
                except Exception as exc:
                    message = f"cannot switch to {name!r}: {exc}"
                    log.warning(message)
                    self._say(message)
                    raise
                with self._lock:
                    if self._model is model:
                        self._profile, self._message = name, ""
                        self._command(lambda scene: scene.use_avatar(avatar))
                        break
            self._notify()

        return in_background(load, "vcam-profile-loader")

    def switch_model(self, config: ModelConfig, renderer: Renderer, weights_id: str) -> None:
        """Render with another model (the installed weights in place of the demo model) from the next
        frame on. The avatar is prepared for it here, in the caller's thread; model, renderer and avatar
        then change together between two frames, the old renderer is closed and the demo banner goes."""
        model = Model(config, renderer, weights_id)
        avatar = self._loader.load(self.active_profile, model)
        with self._lock:
            self._model = model
            self._command(lambda scene: scene.use_model(model, avatar))
        self._notify()

    def use_renderer(self, renderer: Renderer, weights_id: str) -> bool:
        """Render the same model with ``renderer`` (the full-speed one built while a quick one ran) from
        the next frame on, and close the old one. Refused (False, and ``renderer`` closed) when the
        model has changed since ``weights_id``'s renderer was asked for."""
        with self._lock:
            if self._model.weights_id != weights_id:
                renderer.close()
                return False
            model = self._model = replace(self._model, renderer=renderer)
            self._command(lambda scene: scene.use_model(model, scene.avatar))
        self._notify()
        return True

    @property
    def receiving(self) -> bool:
        return self._link is not None and self._link.replaces_camera

    @property
    def weights_download(self) -> WeightsDownload | None:
        """The offer to download the real model's weights (None when they were installed at start)."""
        return self._weights_download

    def offer_weights_download(self, download: WeightsDownload) -> None:
        """Show ``download`` in the tray; its progress reaches the status listeners."""
        download.on_change = self._notify
        self._weights_download = download
        self._notify()

    # -- motion -----------------------------------------------------------------------------------

    @property
    def motion_settings(self) -> MotionSettings:
        """The motion settings of the next frames."""
        with self._lock:
            return self._motion

    @property
    def frontalize(self) -> bool:
        return self.motion_settings.frontalize

    def set_frontalize(self, on: bool) -> None:
        self._update_motion(frontalize=on)

    @property
    def expression_friendly(self) -> bool:
        """LivePortrait's expression-friendly driving (motion scaled to the avatar's face) is on."""
        return self.motion_settings.driving_option == "expression-friendly"

    def set_expression_friendly(self, on: bool) -> None:
        self._update_motion(driving_option="expression-friendly" if on else "pose-friendly")

    @property
    def frontalize_strength(self) -> float:
        return self.motion_settings.frontalize_strength

    def set_frontalize_strength(self, value: float) -> None:
        self._update_motion(frontalize_strength=min(max(float(value), 0.0), 1.0))

    def _update_motion(self, **changes: object) -> None:
        with self._lock:
            self._motion = settings = replace(self._motion, **changes)
            self._command(lambda scene: scene.motion.set_settings(settings))
        self._notify()

    def recalibrate(self) -> None:
        """The next frame with a face becomes the neutral reference."""
        self._command(lambda scene: scene.motion.recalibrate())

    # -- pause and preview ------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        with self._lock:
            self._paused = True
            self._command(lambda scene: setattr(scene, "paused", True))
        self._set_state(PipelineState.PAUSED)

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            self._command(lambda scene: setattr(scene, "paused", False))
        self._set_state(PipelineState.STARTING)

    @property
    def preview(self) -> bool:
        return self._preview.on

    @property
    def preview_feed(self) -> PreviewSink:
        """The newest frame for the preview window, taken by the thread that owns the window."""
        return self._preview.feed

    def set_preview(self, on: bool) -> None:
        self._preview.on = on or self._preview.is_output
        self._notify()

    def preview_closed(self) -> None:
        """The user closed the preview window: with the preview as the output the run ends."""
        if self._preview.is_output:
            self.stop()
        self._preview.on = False
        self._notify()
