"""The two programs: ``vcam send`` (camera → motion → packets) and ``vcam receive`` (packets →
render → sink). They reuse the app's model, renderer, profile and sink wiring; what is theirs is
the link and the receiver's own render clock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from vcam.app import DEMO_BANNER, LoadedModel, open_model, open_renderer, profile_store
from vcam.audio import Microphone
from vcam.capture import open_source
from vcam.compose import draw_banner
from vcam.motion import MotionStage
from vcam.pipeline import Avatar, AvatarLoader, FrameWork, Model, Motion, Track, face_tracker, motion_settings
from vcam.profiles import Profile
from vcam.render.base import Renderer
from vcam.settings import Settings
from vcam.sinks import open_sink

from .motion_vector import motion_to_vector, vector_to_motion
from .packet import short_id
from .playout import Playout, PlayoutSample
from .transport import LinkStatus, ReceivedFrame, ReceiverLink, SenderLink, StreamIdentity

log = logging.getLogger("vcam.stream")


def profile_id(profile: Profile) -> bytes:
    """The avatar's identity on the wire: a hash of its keyframe pixels and face box."""
    box = np.array([profile.box.cx, profile.box.cy, profile.box.size], dtype=np.float64)
    return short_id(np.ascontiguousarray(profile.keyframe).tobytes() + box.tobytes() + str(profile.keyframe.shape).encode())


def model_id(loaded: LoadedModel) -> bytes:
    return short_id(loaded.weights_id.encode())


def describe(status: LinkStatus, extra: str = "") -> str:
    return (f"{status.state.value:9} {status.peer}  {status.kbit_s:5.1f} kbit/s  loss {100 * status.loss:4.1f} %  "
            f"{status.packets} packets  {status.rejected} rejected{extra}")


@dataclass
class RunControl:
    """How a run ends and reports: a frame limit, a stop event, a status callback once a second."""

    frames: int | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    on_status: Callable[[str], None] = lambda line: None


# -- sending -------------------------------------------------------------------------------------


def run_send(settings: Settings, address: tuple[str, int], pairing: bytes, level: int, control: RunControl) -> LinkStatus:
    """Track the camera's face, read its motion and stream it until the clip ends or ``stop``."""
    loaded = open_model(settings)
    renderer, _ = open_renderer(settings, loaded)
    cfg = loaded.model.cfg
    model = Model(cfg, renderer, loaded.weights_id)
    avatar = AvatarLoader(profile_store(settings), settings).load(settings.profile, model)
    profile = avatar.profile
    motion_state = MotionStage(cfg.convention, avatar.source, motion_settings(settings), cfg.retargeting is not None, avatar.ratios)
    tracker = face_tracker(settings)
    identity = StreamIdentity(profile_id(profile), model_id(loaded), cfg.num_kp)
    camera = open_source(settings.camera, settings.camera_width, settings.camera_height, settings.camera_fps,
                         loop=settings.loop_clip and control.frames is None, realtime=True)
    with contextlib.ExitStack() as stack:
        link = stack.enter_context(SenderLink(address, pairing, identity, level=level))
        microphone = stack.enter_context(Microphone(device=settings.audio_device)) if settings.audio else None
        control.on_status(f"waiting for the receiver at {link.address_text} (avatar {profile.name!r})")
        if not link.connect(stop=control.stop):
            return link.status()
        stack.enter_context(camera)
        steps = (Track(tracker), Motion(motion_state, microphone))  # the pipeline's own first two stages
        sent, last_report = 0, 0.0
        while not control.stop.is_set() and (control.frames is None or sent < control.frames):
            frame = camera.read()
            if frame is None:
                if camera.finished:
                    break
                control.stop.wait(0.005)
                continue
            work = FrameWork(frame.timestamp, model, avatar, frame)
            for step in steps:
                step.run(work)
            assert work.head is not None
            if link.send_motion(motion_to_vector(work.head), frame.timestamp):
                sent += 1
            if time.monotonic() - last_report >= 1.0:
                last_report = time.monotonic()
                control.on_status(describe(link.status(), "  face lost" if work.face_lost else ""))
        renderer.close()
        return link.status()


# -- receiving -----------------------------------------------------------------------------------


class Receiver:
    """The receiving end: accepts the paired sender whose avatar and model match, and renders."""

    def __init__(self, settings: Settings, loaded: LoadedModel, renderer: Renderer, lossless: bool) -> None:
        self.loaded = loaded
        self.lossless = lossless
        self.store = profile_store(settings)
        self._model = Model(loaded.model.cfg, renderer, loaded.weights_id)
        self._avatars = AvatarLoader(self.store, settings)
        self.playout = Playout()
        self.queue: deque[ReceivedFrame] = deque()  # lossless: every frame in order
        self.avatar: Avatar | None = None
        self._lock = threading.Lock()
        self._session = 0

    def accept(self, identity: StreamIdentity) -> str | None:
        cfg = self.loaded.model.cfg
        if identity.model_id != model_id(self.loaded) or identity.num_kp != cfg.num_kp:
            return ("it uses other model weights than this receiver; install the same weights on both ends "
                    "(`vcam weights fetch`), or both run the demo model")
        good, _ = self.store.scan()
        match = next((p for p in good if profile_id(p) == identity.profile_id), None)
        if match is None:
            return (f"its avatar (id {identity.profile_id.hex()}) is not among your profiles in {self.store.root}; "
                    "copy the sender's profile folder there (avatars are never loaded from the network)")
        with self._lock:
            if self.avatar is None or self.avatar.profile.name != match.name:
                self.avatar = self._avatars.load(match.name, self._model)
                log.info("sender's avatar: profile %r", match.name)
        return None

    def on_frame(self, frame: ReceivedFrame) -> None:
        with self._lock:
            if frame.session != self._session:  # a new stream: its clock starts over
                self._session, self.playout = frame.session, Playout()
            if self.lossless:
                self.queue.append(frame)
            else:
                self.playout.add(frame.timestamp_s, frame.arrival_s, frame.vector)


    def next_motion(self, now: float) -> tuple[Avatar | None, np.ndarray | None, PlayoutSample | None]:
        """The avatar and the motion to render now: the next frame in order (lossless) or the
        playout's motion for ``now``; no motion before the first frame."""
        with self._lock:
            if self.lossless:
                return self.avatar, self.queue.popleft().vector if self.queue else None, None
            sample = self.playout.sample(now)
            return self.avatar, None if sample is None else sample.vector, sample


def _waiting_frame(settings: Settings, text: str) -> np.ndarray:
    image = np.full((settings.output_height, settings.output_width, 3), 40, np.uint8)
    draw_banner(image, text)
    return image


def run_receive(
    settings: Settings, listen: tuple[str, int], pairing: bytes, control: RunControl,
    on_listening: Callable[[ReceiverLink], None] = lambda link: None,
) -> LinkStatus:
    """Render the paired sender's motion into the settings' sink until ``stop`` (or ``frames``).

    A file sink with a frame limit gets every received frame once, in order (recordings, tests);
    otherwise the receiver renders at its own clock (``output_fps``) through :class:`Playout`.
    """
    loaded = open_model(settings)
    renderer, _ = open_renderer(settings, loaded)
    lossless = control.frames is not None and settings.sink.startswith("file:")
    receiver = Receiver(settings, loaded, renderer, lossless)
    banner = DEMO_BANNER if loaded.demo else None
    sink = open_sink(settings.sink, settings.output_width, settings.output_height, settings.output_fps, settings.virtual_camera_backend)
    with sink, ReceiverLink(listen, pairing, receiver.on_frame, receiver.accept) as link:
        on_listening(link)
        period = 1.0 / settings.output_fps
        rendered, last_report, next_tick = 0, 0.0, time.monotonic()
        while not control.stop.is_set() and (control.frames is None or rendered < control.frames):
            now = time.monotonic()
            avatar, vector, sample = receiver.next_motion(now)
            gap = ""
            if sample is not None:
                gap = f"  delay {1000 * sample.delay_s:3.0f} ms" + ("  (bridging a gap)" if sample.ahead_s > period else "")
            if vector is not None and avatar is not None:
                # the keyframe's own eye and lip ratios are the receiver's: it holds the same keyframe
                head = replace(vector_to_motion(vector), source_eye_open=avatar.ratios.eye_open, source_lip_open=avatar.ratios.lip_open)
                rendered_rgb = renderer.render(avatar.source, head)
                image = avatar.compositor.compose(cv2.cvtColor(rendered_rgb, cv2.COLOR_RGB2BGR))
                if banner:
                    draw_banner(image, banner)
                sink.send(image)
                rendered += 1
            elif not lossless:
                sink.send(_waiting_frame(settings, f"waiting for the sender on port {link.port}"))
            if now - last_report >= 1.0:
                last_report = now
                control.on_status(describe(link.status(), gap))
            if lossless:
                if vector is None:
                    control.stop.wait(0.005)
            else:
                next_tick = max(next_tick + period, time.monotonic() - period)
                control.stop.wait(max(0.0, next_tick - time.monotonic()))
        status = link.status()
    renderer.close()
    return status
