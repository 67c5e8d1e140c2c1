"""The steps of one frame, each an object with a name and ``run(work)``.

A frame travels as one :class:`FrameWork`; each stage reads what the stages before it filled in and
adds its own part. The runner times every stage under its name (the status' ``stage_ms``), so a new
step — a remote motion source, compositing on the GPU — is one more object in the runner's list.
Colour order changes where the images change hands: the camera is BGR (OpenCV), the renderer's
crops and images RGB, and the output is in the sink's own pixel format, converted once in
:class:`Compose` (on the GPU when the renderer draws there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import torch

from ..audio import Microphone
from ..capture import Frame
from ..compose import draw_banner
from ..models import HeadMotion
from ..motion import MotionSettings, MotionStage
from ..pixel_formats import PixelFormat, from_bgr, to_bgr
from ..render.base import Download
from ..settings import Settings
from ..sinks import FrameSink, PreviewSink
from ..tracking import FaceTracker, TrackResult
from .avatars import Avatar, Model


@dataclass
class FrameWork:
    """One frame on its way from the camera (or the clock, with the camera off) to the output."""

    t: float
    """Capture time (time.monotonic()), or the clock's when no camera drives the frame."""
    model: Model
    avatar: Avatar
    frame: Frame | None = None
    track: TrackResult | None = None
    head: HeadMotion | None = None
    rendered: torch.Tensor | None = None
    """The renderer's image: (S, S, 3) uint8 RGB on the renderer's device (the CPU for CPU
    backends), valid until the next render."""
    still: np.ndarray | None = None
    """A whole BGR frame a motion source made itself (a call's "waiting for the sender" notice),
    output in place of a render."""
    output: Download | None = None
    """The output frame, perhaps still on its way from the GPU: read it as :attr:`image`."""

    @property
    def image(self) -> np.ndarray | None:
        """The output frame: a host array of the frame's own, in the sink's pixel format (shaped as
        :func:`vcam.pixel_formats.buffer_shape` says), once its download is done."""
        return None if self.output is None else self.output.wait()

    @image.setter
    def image(self, array: np.ndarray) -> None:
        self.output = Download(array)

    @property
    def face_lost(self) -> bool:
        """A camera frame in which no face is tracked (with the camera off no face is expected)."""
        return self.frame is not None and (self.track is None or self.track.lost or self.track.box is None)


class Stage(Protocol):
    name: str
    """Its key in the status' per-stage times."""

    def run(self, work: FrameWork) -> None: ...


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


class Track:
    """Finds the face in the camera frame and its driving crop."""

    name = "track"

    def __init__(self, tracker: FaceTracker) -> None:
        self.tracker = tracker

    def run(self, work: FrameWork) -> None:
        if work.frame is not None:
            work.track = self.tracker.update(work.frame.image, work.frame.timestamp)


class Motion:
    """The head to render: the crop's motion read by the model, through the user's motion state
    (neutral reference, smoothing, frontalization, face-lost and voice behaviour)."""

    name = "motion"

    def __init__(self, state: MotionStage, microphone: Microphone | None) -> None:
        self.state = state
        self.microphone = microphone

    def run(self, work: FrameWork) -> None:
        estimate = None
        if work.frame is not None and not work.face_lost:
            assert work.track is not None and work.track.box is not None
            crop = cv2.cvtColor(work.track.box.crop(work.frame.image, work.model.config.input_size), cv2.COLOR_BGR2RGB)
            estimate = work.model.renderer.extract_motion(crop)
        mouth = self.microphone.mouth_open() if self.microphone is not None else None
        face = work.track.face if work.track is not None else None
        work.head = self.state.update(estimate, work.t, mouth, face)


class Render:
    name = "render"

    def run(self, work: FrameWork) -> None:
        if work.still is not None:
            return
        assert work.head is not None
        work.rendered = work.model.renderer.render_device(work.avatar.source, work.head)


class Compose:
    """Pastes the rendered face into the avatar's keyframe at the output size, with the model's
    banner, in the sink's ``pixel_format``: on the GPU the renderer drew on, through the avatar's
    device compositor (one download per frame), else with OpenCV and one conversion."""

    name = "compose"

    def __init__(self, pixel_format: PixelFormat) -> None:
        self.pixel_format = pixel_format

    def run(self, work: FrameWork) -> None:
        if work.still is not None:
            work.image = from_bgr(work.still, self.pixel_format)
            return
        assert work.rendered is not None
        if work.avatar.device_compositor is not None:
            work.output = work.avatar.device_compositor.start(work.rendered, self.pixel_format)  # waited for by Send
            return
        image = work.avatar.compositor.compose(cv2.cvtColor(work.rendered.cpu().numpy(), cv2.COLOR_RGB2BGR))
        if work.model.banner:
            draw_banner(image, work.model.banner)
        work.image = from_bgr(image, self.pixel_format)


class Preview:
    """The frames for the preview window, which the thread that owns the window takes from ``feed``
    (see :mod:`vcam.preview`). ``on`` is switched by the controller. A preview sink is its own feed:
    then the preview is the output and stays on."""

    def __init__(self, sink: FrameSink, on: bool) -> None:
        self.feed = sink if isinstance(sink, PreviewSink) else PreviewSink()
        self.is_output = self.feed is sink
        self.on = on or self.is_output


class Send:
    """Hands the output frame to the sink (a pacing sink sleeps here until the frame is due) and,
    while it is shown, to the preview (converted to BGR for it)."""

    name = "send"

    def __init__(self, sink: FrameSink, preview: Preview) -> None:
        self.sink = sink
        self.preview = preview

    def run(self, work: FrameWork) -> None:
        assert work.image is not None
        self.sink.send(work.image)
        if self.preview.on and not self.preview.is_output:
            self.preview.feed.send(to_bgr(work.image, self.sink.pixel_format))
