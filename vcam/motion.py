"""Per-frame motion: from what the motion networks read to the pose and expression to render.

The avatar follows the user *relatively*: the change of the user's head and face since a
neutral reference frame is applied to the keyframe's own pose and expression (LivePortrait's
relative mode), so a keyframe photographed at an angle keeps its look. On top of that come
One-Euro smoothing, eye and lip retargeting from the tracker's measured ratios, LivePortrait's
expression-friendly option and driving multiplier, the frontalization override (the paper's
free-view control, its eye re-aim starting from the user's measured gaze), the face-lost behaviour
(hold, ease to neutral, resume without a jump) and voice-driven mouth and idle motion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from .models import HeadMotion, MotionEstimate, SourceState
from .models import geometry
from .models.config import PoseConvention

if TYPE_CHECKING:
    from .tracking import FaceMeasures

# LivePortrait's implicit keypoints 11 and 15 sit on the eyeballs: shifting their expression
# delta moves the gaze (the same edit its retargeting UI makes). Units: keypoint space.
EYEBALL_KEYPOINTS = (11, 15)
GAZE_UP_PER_DEGREE = 0.0012
MIC_LIP_RANGE = 0.45
"""Lip-open ratio (above the keyframe's) that a full-voice microphone level maps to until the user's
own widest mouth has been measured: then that is used (once it is at least MIN_LIP_RANGE)."""
MIN_LIP_RANGE = 0.1


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
    driving_option: str = "pose-friendly"  # or "expression-friendly": motion scaled to the avatar's face (LivePortrait)
    driving_multiplier: float = 1.0  # strength of the user's expression (and, expression-friendly, motion)


@dataclass(frozen=True)
class KeyframeRatios:
    """The keyframe's measured eye-open (left, right in the image) and lip-open ratios."""

    eye_open: tuple[float, float]
    lip_open: float


def hull_area(keypoints: torch.Tensor) -> float:
    """Area of the convex hull of the keypoints' (x, y) positions (LivePortrait's face-size measure)."""
    xy = np.ascontiguousarray(keypoints.detach().reshape(-1, 3)[:, :2].float().cpu().numpy())
    return float(cv2.contourArea(cv2.convexHull(xy)))


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
        source_eye_open=b.source_eye_open,
        source_lip_open=b.source_lip_open,
    )


class MotionStage:
    """Turns a stream of :class:`MotionEstimate` (or None when no face) into :class:`HeadMotion`."""

    def __init__(
        self, convention: PoseConvention, source: SourceState, settings: MotionSettings, has_retargeting: bool,
        keyframe: KeyframeRatios | None = None,
    ) -> None:
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
        self._neutral_face: FaceMeasures | None = None  # the user's eyes and lips at the neutral frame
        self._last_face: FaceMeasures | None = None
        self._neutral_area: float | None = None  # hull area of the user's keypoints at the neutral frame
        self._lip_range = 0.0  # the widest the user opened the mouth beyond the neutral frame
        self._gaze_pitch: float | None = None
        self.set_source(source, keyframe)

    # -- control ----------------------------------------------------------------------------------

    def set_source(self, source: SourceState, keyframe: KeyframeRatios | None = None) -> None:
        """A new avatar: the neutral reference of the user stays, the keyframe's motion changes."""
        self.source = source
        self.keyframe = keyframe

    def set_settings(self, settings: MotionSettings) -> None:
        self.settings = settings

    def recalibrate(self) -> None:
        """The next frame with a face becomes the user's neutral reference."""
        self._neutral = None
        self._neutral_face = None
        self._last_face = None
        self._neutral_area = None
        self._filter.reset()

    @property
    def calibrated(self) -> bool:
        return self._neutral is not None

    # -- per frame --------------------------------------------------------------------------------

    def update(
        self, estimate: MotionEstimate | None, t: float, mouth_open: float | None = None, face: FaceMeasures | None = None
    ) -> HeadMotion:
        """The motion to render at time ``t``; ``mouth_open`` (0..1) is the microphone level, ``face``
        the tracker's eye, lip and gaze measurements of the same frame."""
        if estimate is None:
            out = self._without_face(t, mouth_open)
        else:
            out = self._with_face(estimate, t, face)
        self._last = out
        return out

    def _with_face(self, estimate: MotionEstimate, t: float, face: FaceMeasures | None) -> HeadMotion:
        vector = self._flatten(estimate)
        if self._neutral is None:
            self._neutral = vector
            self._neutral_area = self._user_area(estimate)
        face = face or self._last_face  # a frame or two without landmarks keeps the last measurements
        self._last_face = face
        if face is not None and self._neutral_face is None:
            self._neutral_face = face
        self._gaze_pitch = face.gaze[0] if face is not None and face.gaze is not None else None
        driven = self._frontalize(self._retarget(self._relative(self._filter(vector, t)), face))
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
        held = replace(last, mouth_open=idle.mouth_open)
        return blend_motion(held, idle, w) if w > 0 else held

    def _idle(self, neutral: HeadMotion, t: float, mouth_open: float | None) -> HeadMotion:
        """Gentle breathing-like head motion, livelier while speaking; the mouth follows the voice."""
        amp = self.settings.idle_motion_degrees * (1.0 + 0.8 * (mouth_open or 0.0))
        yaw = amp * math.sin(2 * math.pi * t / 7.3)
        pitch = 0.6 * amp * math.sin(2 * math.pi * t / 4.1 + 1.0)
        roll = 0.3 * amp * math.sin(2 * math.pi * t / 9.7 + 2.0)
        R_idle = geometry.euler_to_rotation(*(torch.tensor([a]) for a in (pitch, yaw, roll)), self.convention)
        mouth = None
        if self.has_retargeting and mouth_open is not None:  # the voice level on the lip-ratio scale
            lip_range = self._lip_range if self._lip_range >= MIN_LIP_RANGE else MIC_LIP_RANGE
            mouth = self._source_lip() + mouth_open * lip_range
        return self._with_keyframe(HeadMotion(
            R=neutral.R @ R_idle.to(neutral.R.dtype),
            t=neutral.t, exp=neutral.exp, scale=neutral.scale,
            eye_open=neutral.eye_open,
            mouth_open=mouth,
        ))

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

    def _user_area(self, estimate: MotionEstimate) -> float | None:
        """Hull area of the user's posed keypoints in the neutral frame (needs the network's canonical keypoints)."""
        if estimate.kp is None:
            return None
        R = geometry.euler_to_rotation(estimate.pitch, estimate.yaw, estimate.roll, self.convention)
        x = geometry.transform_keypoints(estimate.kp, R, estimate.t, estimate.exp, estimate.scale, self.convention)
        return hull_area(x)

    def motion_multiplier(self) -> float:
        """How strongly the user's motion since the neutral frame is applied: the driving multiplier, and,
        expression-friendly, the ratio of the avatar's and the user's face sizes (square root of the
        keypoint hull areas, LivePortrait's ``calc_motion_multiplier``)."""
        k = self.settings.driving_multiplier
        if self.settings.driving_option == "expression-friendly" and self._neutral_area:
            k *= math.sqrt(hull_area(self.source.x_s) / self._neutral_area)
        return k

    def _relative(self, vector: np.ndarray) -> HeadMotion:
        """The keyframe moved by the user's change since the neutral frame. Pose-friendly: the head's
        pose 1:1 and the expression times the driving multiplier; expression-friendly: both times
        :meth:`motion_multiplier` (rotation angle, translation, expression and scale change)."""
        assert self._neutral is not None
        R_d, t_d, exp_d, s_d = self._unflatten(vector)
        R_0, t_0, exp_0, s_0 = self._unflatten(self._neutral)
        src = self.source
        k = self.motion_multiplier()
        k_pose = k if self.settings.driving_option == "expression-friendly" else 1.0
        t_new = src.t_s + k_pose * (t_d - t_0)
        if self.convention.keypoints == "liveportrait":
            t_new = torch.cat([t_new[:, :2], torch.zeros_like(t_new[:, 2:])], dim=1)
        R = geometry.relative_rotation(src.R_s, R_0, R_d)
        if k_pose != 1.0:
            R = geometry.slerp_rotation(src.R_s, R, k_pose)
        return HeadMotion(
            R=R,
            t=t_new,
            exp=src.exp_s + k * (exp_d - exp_0),
            scale=src.scale_s * (s_d / s_0.clamp(min=1e-6)) ** k_pose,
        )

    def _source_lip(self) -> float:
        return self.keyframe.lip_open if self.keyframe is not None else 0.0

    def _with_keyframe(self, head: HeadMotion) -> HeadMotion:
        if self.keyframe is None:
            return head
        return replace(head, source_eye_open=self.keyframe.eye_open, source_lip_open=self.keyframe.lip_open)

    def _retarget(self, head: HeadMotion, face: FaceMeasures | None) -> HeadMotion:
        """Eye and lip retargeting from the measured ratios: the keyframe's own ratios moved by the
        user's change since the neutral frame (blinks, speech), on LivePortrait's ratio scale. The
        retargeting deltas come on top of the relative expression, which carries the rest of the face
        (LivePortrait's own retargeting mode drops that expression; live, it is what makes the avatar
        smile or frown)."""
        if not self.has_retargeting or face is None or self._neutral_face is None or self.keyframe is None:
            return self._with_keyframe(head)
        k = self.settings.driving_multiplier
        neutral = self._neutral_face
        lip_change = face.lip_open - neutral.lip_open
        self._lip_range = max(self._lip_range, lip_change)  # the mic maps onto the widest mouth seen
        eye = float(np.mean(self.keyframe.eye_open)) + k * (float(np.mean(face.eye_open)) - float(np.mean(neutral.eye_open)))
        lip = self.keyframe.lip_open + k * lip_change
        return self._with_keyframe(replace(head, eye_open=max(eye, 0.0), mouth_open=max(lip, 0.0)))

    def _frontalize(self, head: HeadMotion) -> HeadMotion:
        s = self.settings
        if not s.frontalize or s.frontalize_strength <= 0:
            return head
        target = self.source.R_s if s.frontalize_target == "keyframe" else torch.eye(3).expand_as(head.R)
        exp = head.exp
        reaim = self.reaim_degrees()
        if reaim and self.has_retargeting and exp.shape[1] > max(EYEBALL_KEYPOINTS):
            exp = exp.clone()
            for k in EYEBALL_KEYPOINTS:
                exp[:, k, 1] -= s.frontalize_strength * reaim * GAZE_UP_PER_DEGREE
        R = geometry.slerp_rotation(head.R, target.to(head.R.dtype), s.frontalize_strength)
        return replace(head, R=R, exp=exp)

    def reaim_degrees(self) -> float:
        """How far frontalization raises the gaze: as far as the user looks below the camera (their
        iris, measured), at most eye_reaim_degrees; the full setting while the gaze is unknown."""
        limit = self.settings.eye_reaim_degrees
        if self._gaze_pitch is None:
            return limit
        return min(limit, max(0.0, -self._gaze_pitch))
