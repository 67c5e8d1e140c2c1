"""The running system: the frame path and its controller.

- :mod:`.stages` — the steps of a frame (track, motion, render, compose, send), one small interface;
- :mod:`.runner` — the capture, inference and output threads that run them, joined by the
  one-slot queues of :mod:`.slots`;
- :mod:`.controller` — the :class:`Controller` the tray and the command line call, implemented by
  :class:`Pipeline`, which hands every change to the runner between two frames;
- :mod:`.avatars` — the model and avatar a frame is rendered from; :mod:`.status` — what is reported.
"""

from .avatars import Avatar, AvatarLoader, Model, keyframe_ratios
from .controller import Controller, Pipeline, face_tracker
from .stages import FrameWork, Motion, Track, motion_settings
from .status import PipelineState, PipelineStatus

__all__ = [
    "Avatar", "AvatarLoader", "Controller", "FrameWork", "Model", "Motion", "Pipeline", "PipelineState", "PipelineStatus",
    "Track", "face_tracker", "keyframe_ratios", "motion_settings",
]
