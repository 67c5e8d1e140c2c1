"""The two ends of a call: ``vcam send`` (camera → motion → packets, no rendering) and the
:class:`Receiver` behind ``vcam receive`` (which pairs a sender with a local avatar and hands its
motion to the pipeline, see :mod:`.call`). They reuse the app's model, renderer and profiles.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vcam.app import LoadedModel, open_model, open_renderer, profile_store
from vcam.audio import Microphone
from vcam.capture import open_source
from vcam.motion import MotionStage
from vcam.pipeline import Avatar, AvatarLoader, FrameWork, Model, Motion, Track, face_tracker, motion_settings
from vcam.profiles import Profile
from vcam.render.base import Renderer
from vcam.settings import Settings

from .motion_vector import motion_to_vector
from .packet import short_id
from .playout import Playout
from .status_text import sending_text
from .transport import LinkStatus, ReceivedFrame, SenderLink, StreamIdentity

log = logging.getLogger("vcam.stream")


def profile_id(profile: Profile) -> bytes:
    """The avatar's identity on the wire: a hash of its keyframe pixels and face box."""
    box = np.array([profile.box.cx, profile.box.cy, profile.box.size], dtype=np.float64)
    return short_id(np.ascontiguousarray(profile.keyframe).tobytes() + box.tobytes() + str(profile.keyframe.shape).encode())


def model_id(loaded: LoadedModel) -> bytes:
    return short_id(loaded.weights_id.encode())


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
                control.on_status(sending_text(link.status()) + (" · face lost" if work.face_lost else ""))
        renderer.close()
        return link.status()


# -- receiving -----------------------------------------------------------------------------------


class Receiver:
    """The receiving end's state: accepts the paired sender whose avatar and model match (loading
    that avatar before the sender is welcomed), and keeps its motion — every frame in order
    (``lossless``) or a :class:`Playout` to sample at any instant."""

    def __init__(self, settings: Settings, loaded: LoadedModel, renderer: Callable[[], Renderer], lossless: bool) -> None:
        self.loaded = loaded
        self.lossless = lossless
        self.store = profile_store(settings)
        self._renderer = renderer  # the pipeline's of the moment: a compiled one may take over from a quick one
        self._avatars = AvatarLoader(self.store, settings)
        self.playout = Playout()
        self.queue: deque[ReceivedFrame] = deque()  # lossless: every frame in order
        self.avatar: Avatar | None = None
        self._arrived = threading.Condition()
        self._stopped = False
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
        with self._arrived:
            current = self.avatar
        if current is None or current.profile.name != match.name:
            avatar = self._avatars.load(match.name, Model(self.loaded.model.cfg, self._renderer(), self.loaded.weights_id))
            with self._arrived:
                self.avatar = avatar
            log.info("sender's avatar: profile %r", match.name)
        return None

    def on_frame(self, frame: ReceivedFrame) -> None:
        with self._arrived:
            if frame.session != self._session:  # a new stream: its clock starts over
                self._session, self.playout = frame.session, Playout()
            if self.lossless:
                self.queue.append(frame)
                self._arrived.notify_all()
            else:
                self.playout.add(frame.timestamp_s, frame.arrival_s, frame.vector)

    def motion_at(self, now: float) -> tuple[Avatar | None, np.ndarray | None]:
        """The avatar and the playout's motion for ``now`` (no motion before the first frame)."""
        with self._arrived:
            sample = self.playout.sample(now)
            return self.avatar, None if sample is None else sample.vector

    def next_in_order(self) -> tuple[Avatar | None, np.ndarray | None]:
        """The avatar and the next received frame's motion, waiting for it; no motion once stopped."""
        with self._arrived:
            while not self.queue and not self._stopped:
                self._arrived.wait()
            return self.avatar, self.queue.popleft().vector if self.queue else None

    def stop(self) -> None:
        """Release a wait in :meth:`next_in_order`."""
        with self._arrived:
            self._stopped = True
            self._arrived.notify_all()
