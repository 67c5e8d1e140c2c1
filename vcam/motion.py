"""Per-frame motion: from what the motion networks read to the pose and expression to render.

The avatar follows the user *relatively*: the change of the user's head and face since a
neutral reference frame is applied to the keyframe's own pose and expression (LivePortrait's
relative mode), so a keyframe photographed at an angle keeps its look. On top of that come
One-Euro smoothing, the frontalization override (the paper's free-view control), the face-lost
behaviour (hold, ease to neutral, resume without a jump) and voice-driven mouth and idle motion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .models import HeadMotion, MotionEstimate, SourceState
from .models import geometry
from .models.config import PoseConvention

# LivePortrait's implicit keypoints 11 and 15 sit on the eyeballs: shifting their expression
# delta moves the gaze (the same edit its retargeting UI makes). Units: keypoint space.
EYEBALL_KEYPOINTS = (11, 15)
GAZE_UP_PER_DEGREE = 0.0012


class OneEuroFilter:
    """One-Euro low-pass filter (Casiez et al. 2012) over a vector: smooth when still, quick when moving."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    @staticmethod
    def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        if self._x is None or self._dx is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + self._alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + self._alpha(cutoff, dt) * (x - self._x)
        self._t = t
        return self._x.copy()


@dataclass(frozen=True)
class MotionSettings:
    smoothing_min_cutoff: float = 1.5
    smoothing_beta: float = 0.3
    frontalize: bool = False
    frontalize_strength: float = 1.0
    frontalize_target: str = "camera"  # "camera": look straight into it; "keyframe": the photo's own pose
    eye_reaim_degrees: float = 0.0  # raise the gaze by this much while frontalized (LivePortrait)
    face_lost_hold_s: float = 0.4
    ease_s: float = 0.8
    idle_motion_degrees: float = 2.5


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def blend_motion(a: HeadMotion, b: HeadMotion, w: float) -> HeadMotion:
    """``w`` of the way from ``a`` to ``b`` (rotation along the shortest arc)."""
    def mix(x: float | None, y: float | None) -> float | None:
        if x is None or y is None:
            return y if w >= 0.5 else x
        return x + (y - x) * w

    return HeadMotion(
        R=geometry.slerp_rotation(a.R, b.R, w),
        t=torch.lerp(a.t, b.t, w),
        exp=torch.lerp(a.exp, b.exp, w),
        scale=torch.lerp(a.scale, b.scale, w),
        eye_open=mix(a.eye_open, b.eye_open),
        mouth_open=mix(a.mouth_open, b.mouth_open),
    )


class MotionStage:
    """Turns a stream of :class:`MotionEstimate` (or None when no face) into :class:`HeadMotion`."""

    def __init__(self, convention: PoseConvention, source: SourceState, settings: MotionSettings, has_retargeting: bool) -> None:
        self.convention = convention
        self.settings = settings
        self.has_retargeting = has_retargeting
        self._filter = OneEuroFilter(settings.smoothing_min_cutoff, settings.smoothing_beta)
        self._neutral: np.ndarray | None = None
        self._last: HeadMotion | None = None
        self._lost_since: float | None = None
        self._at_loss: HeadMotion | None = None  # output when the face was lost
        self._found_since: float | None = None
        self._from: HeadMotion | None = None  # output at the moment tracking resumed
        self.set_source(source)

    # -- control ----------------------------------------------------------------------------------

    def set_source(self, source: SourceState) -> None:
        """A new avatar: the neutral reference of the user stays, the keyframe's motion changes."""
        self.source = source

    def set_settings(self, settings: MotionSettings) -> None:
        self.settings = settings

    def recalibrate(self) -> None:
        """The next frame with a face becomes the user's neutral reference."""
        self._neutral = None
        self._filter.reset()

    @property
    def calibrated(self) -> bool:
        return self._neutral is not None

    # -- per frame --------------------------------------------------------------------------------

    def update(self, estimate: MotionEstimate | None, t: float, mouth_open: float | None = None) -> HeadMotion:
        """The motion to render at time ``t``; ``mouth_open`` (0..1) comes from the microphone."""
        if estimate is None:
            out = self._without_face(t, mouth_open)
        else:
            out = self._with_face(estimate, t)
        self._last = out
        return out

    def _with_face(self, estimate: MotionEstimate, t: float) -> HeadMotion:
        vector = self._flatten(estimate)
        if self._neutral is None:
            self._neutral = vector
        driven = self._frontalize(self._relative(self._filter(vector, t)))
        if self._lost_since is not None:  # face is back: ease from where the output was
            self._from, self._found_since, self._lost_since = self._last, t, None
        if self._from is not None and self._found_since is not None:
            w = _smoothstep((t - self._found_since) / max(self.settings.ease_s, 1e-6))
            if w >= 1.0:
                self._from = None
            else:
                driven = blend_motion(self._from, driven, w)
        return driven

    def _without_face(self, t: float, mouth_open: float | None) -> HeadMotion:
        if self._lost_since is None:
            self._lost_since, self._at_loss = t, self._last
        neutral = self._frontalize(self.source.source_motion())
        idle = self._idle(neutral, t, mouth_open)
        if self._at_loss is None:
            return idle
        elapsed = t - self._lost_since - self.settings.face_lost_hold_s
        w = _smoothstep(elapsed / max(self.settings.ease_s, 1e-6))
        last = self._at_loss
        held = HeadMotion(last.R, last.t, last.exp, last.scale, last.eye_open, idle.mouth_open)
        return blend_motion(held, idle, w) if w > 0 else held

    def _idle(self, neutral: HeadMotion, t: float, mouth_open: float | None) -> HeadMotion:
        """Gentle breathing-like head motion, livelier while speaking; the mouth follows the voice."""
        amp = self.settings.idle_motion_degrees * (1.0 + 0.8 * (mouth_open or 0.0))
        yaw = amp * math.sin(2 * math.pi * t / 7.3)
        pitch = 0.6 * amp * math.sin(2 * math.pi * t / 4.1 + 1.0)
        roll = 0.3 * amp * math.sin(2 * math.pi * t / 9.7 + 2.0)
        R_idle = geometry.euler_to_rotation(*(torch.tensor([a]) for a in (pitch, yaw, roll)), self.convention)
        return HeadMotion(
            R=neutral.R @ R_idle.to(neutral.R.dtype),
            t=neutral.t, exp=neutral.exp, scale=neutral.scale,
            eye_open=neutral.eye_open,
            mouth_open=mouth_open if self.has_retargeting else None,
        )

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _flatten(m: MotionEstimate) -> np.ndarray:
        parts = [m.pitch, m.yaw, m.roll, m.t.flatten(), m.exp.flatten(), m.scale.flatten()]
        return torch.cat([p.detach().float().cpu().reshape(-1) for p in parts]).numpy()

    def _unflatten(self, v: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(v).float()
        k3 = self.source.exp_s.numel()
        R = geometry.euler_to_rotation(x[0:1], x[1:2], x[2:3], self.convention)
        return R, x[3:6].view(1, 3), x[6 : 6 + k3].view(1, -1, 3), x[6 + k3 :].view(1, 1)

    def _relative(self, vector: np.ndarray) -> HeadMotion:
        assert self._neutral is not None
        R_d, t_d, exp_d, s_d = self._unflatten(vector)
        R_0, t_0, exp_0, s_0 = self._unflatten(self._neutral)
        src = self.source
        t_new = src.t_s + (t_d - t_0)
        if self.convention.keypoints == "liveportrait":
            t_new = torch.cat([t_new[:, :2], torch.zeros_like(t_new[:, 2:])], dim=1)
        return HeadMotion(
            R=geometry.relative_rotation(src.R_s, R_0, R_d),
            t=t_new,
            exp=src.exp_s + (exp_d - exp_0),
            scale=src.scale_s * (s_d / s_0.clamp(min=1e-6)),
        )

    def _frontalize(self, head: HeadMotion) -> HeadMotion:
        s = self.settings
        if not s.frontalize or s.frontalize_strength <= 0:
            return head
        target = self.source.R_s if s.frontalize_target == "keyframe" else torch.eye(3).expand_as(head.R)
        exp = head.exp
        if s.eye_reaim_degrees and self.has_retargeting and exp.shape[1] > max(EYEBALL_KEYPOINTS):
            exp = exp.clone()
            for k in EYEBALL_KEYPOINTS:
                exp[:, k, 1] -= s.frontalize_strength * s.eye_reaim_degrees * GAZE_UP_PER_DEGREE
        R = geometry.slerp_rotation(head.R, target.to(head.R.dtype), s.frontalize_strength)
        return HeadMotion(R=R, t=head.t, exp=exp, scale=head.scale, eye_open=head.eye_open, mouth_open=head.mouth_open)
