"""A call inside the running pipeline: the pipeline treats a remote sender as one more motion source.

Receiving, :class:`RemoteMotion` takes the place of the camera's track and motion stages: it fills
each frame's head (and avatar) from the paired sender's stream, and while nobody drives the avatar
it makes a "waiting for the sender" frame instead, which render and compose pass through. Sending,
:class:`SendMotion` follows the motion stage and streams the head the pipeline renders locally.
Either end reports its link as the pipeline's state and message, so ``vcam receive``, the preview
and the tray show the call the same way. :func:`receiving` and :func:`sending` open an end for
:func:`vcam.app.running_pipeline`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from vcam.app import LoadedModel, OpenCall, profile_store
from vcam.compose import draw_banner
from vcam.pipeline import Avatar, FrameWork, Model, PipelineState
from vcam.pipeline.controller import Link
from vcam.render.base import Renderer
from vcam.settings import Settings

from .ends import Receiver, model_id, profile_id
from .motion_vector import motion_to_vector, vector_to_motion
from .packet import pairing_key, short_id
from .status_text import receiving_text, sending_text
from .transport import LinkState, ReceiverLink, SenderLink, StreamIdentity


def waiting_frame(settings: Settings, text: str) -> np.ndarray:
    """The output frame while no sender drives the avatar: dark grey with ``text``."""
    image = np.full((settings.output_height, settings.output_width, 3), 40, np.uint8)
    draw_banner(image, text)
    return image


# -- receiving -----------------------------------------------------------------------------------


class RemoteMotion:
    """The motion stage of a receiving pipeline: the sender's head for this frame — the next one
    received (lossless) or the playout's for the frame's time — with the sender's avatar."""

    name = "receive"

    def __init__(self, receiver: Receiver, link: ReceiverLink, waiting: np.ndarray) -> None:
        self.receiver, self.link, self.waiting = receiver, link, waiting

    def run(self, work: FrameWork) -> None:
        if self.receiver.lossless:
            avatar, vector = self.receiver.next_in_order()
        elif self.link.status().state is LinkState.WAITING:  # nobody called yet, or the sender hung up
            avatar, vector = None, None
        else:
            avatar, vector = self.receiver.motion_at(work.t)
        if avatar is None or vector is None:
            work.still = self.waiting
            return
        work.avatar = avatar
        # the keyframe's own eye and lip ratios are the receiver's: it holds the same keyframe
        work.head = replace(vector_to_motion(vector), source_eye_open=avatar.ratios.eye_open, source_lip_open=avatar.ratios.lip_open)


class Receiving:
    """The receiving end as the pipeline's :class:`~vcam.pipeline.controller.Link`."""

    replaces_camera = True

    def __init__(self, receiver: Receiver, link: ReceiverLink, code: str, waiting: np.ndarray) -> None:
        self.link, self.code = link, code
        self.stage = RemoteMotion(receiver, link, waiting)
        self._receiver = receiver

    def report(self) -> tuple[PipelineState | None, str]:
        status = self.link.status()
        state = PipelineState.RUNNING if status.state is LinkState.CONNECTED else PipelineState.WAITING
        return state, receiving_text(status, self.link.port, self.code)

    def stop(self) -> None:
        self._receiver.stop()


def receiving(
    settings: Settings, listen: tuple[str, int], code: str, lossless: bool = False,
    on_listening: Callable[[ReceiverLink], None] = lambda link: None,
) -> OpenCall:
    """Listen on ``listen`` for the sender paired by ``code``. Lossless (a file with a frame limit):
    every received frame comes out once, in order, and no waiting frames are written."""
    key = pairing_key(code)  # a bad code fails here, before the model loads

    @contextlib.contextmanager
    def open_end(loaded: LoadedModel, renderer: Callable[[], Renderer]) -> Iterator[Link]:
        receiver = Receiver(settings, loaded, renderer, lossless)
        with ReceiverLink(listen, key, receiver.on_frame, receiver.accept) as link:
            on_listening(link)
            yield Receiving(receiver, link, code, waiting_frame(settings, f"waiting for the sender on port {link.port}"))

    return open_end


# -- sending -------------------------------------------------------------------------------------


def identity_of(avatar: Avatar, model: Model) -> StreamIdentity:
    return StreamIdentity(profile_id(avatar.profile), short_id(model.weights_id.encode()), model.config.num_kp)


class SendMotion:
    """Streams the frame's head (after the motion stage) to the receiver; when the user switches
    the avatar (or the model), the link calls again as that avatar."""

    name = "stream"

    def __init__(self, link: SenderLink) -> None:
        self.link = link
        self._avatar: Avatar | None = None
        self._weights_id: str | None = None

    def run(self, work: FrameWork) -> None:
        # the avatar compared as an object (cheap); a faster renderer of the same weights is no new call
        if work.avatar is not self._avatar or work.model.weights_id != self._weights_id:
            self._avatar, self._weights_id = work.avatar, work.model.weights_id
            self.link.change_identity(identity_of(work.avatar, work.model))
        if work.head is not None:
            self.link.send_motion(motion_to_vector(work.head), work.t)


class Sending:
    """The sending end as the pipeline's :class:`~vcam.pipeline.controller.Link`: the pipeline
    keeps its own state (running, face lost), the message tells the call."""

    replaces_camera = False

    def __init__(self, link: SenderLink) -> None:
        self.link = link
        self.stage = SendMotion(link)

    def report(self) -> tuple[PipelineState | None, str]:
        return None, sending_text(self.link.status())

    def stop(self) -> None:
        """Nothing waits in :class:`SendMotion`."""


def sending(settings: Settings, address: tuple[str, int], code: str, level: int) -> OpenCall:
    """Stream the pipeline's motion to ``address`` for the avatar ``settings.profile``."""
    key = pairing_key(code)

    @contextlib.contextmanager
    def open_end(loaded: LoadedModel, renderer: Callable[[], Renderer]) -> Iterator[Link]:
        profile = profile_store(settings).load(settings.profile)
        identity = StreamIdentity(profile_id(profile), model_id(loaded), loaded.model.cfg.num_kp)
        with SenderLink(address, key, identity, level=level) as link:
            yield Sending(link)

    return open_end
