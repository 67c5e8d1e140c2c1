"""The whole face-vid2vid model: networks from a config, the source side and the per-frame render.

``prepare_source`` runs once per avatar keyframe and gives a :class:`SourceState`;
``extract_motion`` reads a driving crop; ``render`` draws the avatar for a :class:`HeadMotion`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from . import geometry
from .appearance import AppearanceFeatureExtractor
from .config import ConvNeXtMotionConfig, ModelConfig, SpadeDecoderConfig
from .generator import OcclusionAwareDecoder, SPADEDecoder
from .keypoint_detector import CanonicalKeypointDetector
from .motion_extractor import HeadExpressionEstimator, MotionExtractor, RawMotion
from .retargeting import StitchingRetargeting
from .warping import WarpingNetwork


@dataclass
class MotionEstimate:
    """What the motion networks read from one face crop (angles in degrees)."""

    pitch: torch.Tensor  # (B,)
    yaw: torch.Tensor  # (B,)
    roll: torch.Tensor  # (B,)
    t: torch.Tensor  # (B, 3)
    exp: torch.Tensor  # (B, K, 3)  expression deformation delta
    scale: torch.Tensor  # (B, 1)
    kp: torch.Tensor | None = None  # (B, K, 3) canonical keypoints x_c, when the network gives them


@dataclass
class HeadMotion:
    """The pose and expression to render: what the motion stage hands to the renderer."""

    R: torch.Tensor  # (B, 3, 3)
    t: torch.Tensor  # (B, 3)
    exp: torch.Tensor  # (B, K, 3)
    scale: torch.Tensor  # (B, 1)
    eye_open: float | None = None  # target eye-open ratio for eye retargeting (LivePortrait)
    mouth_open: float | None = None  # target lip-open ratio for lip retargeting (LivePortrait)
    source_eye_open: tuple[float, float] | None = None  # the keyframe's measured eye-open ratios
    source_lip_open: float | None = None  # and lip-open ratio (None: SOURCE_EYE_OPEN / SOURCE_LIP_OPEN)


@dataclass
class SourceState:
    """Everything computed once from the avatar keyframe crop."""

    f_s: torch.Tensor  # (1, C, D, H, W) appearance feature volume
    x_c: torch.Tensor  # (1, K, 3) canonical keypoints
    x_s: torch.Tensor  # (1, K, 3) source keypoints (x_c posed by the source's own motion)
    R_s: torch.Tensor  # (1, 3, 3)
    t_s: torch.Tensor  # (1, 3)
    exp_s: torch.Tensor  # (1, K, 3)
    scale_s: torch.Tensor  # (1, 1)
    pose_s: torch.Tensor  # (1, 3) pitch, yaw, roll in degrees

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name).detach().contiguous().cpu() for f in fields(self)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "SourceState":
        return cls(**{f.name: tensors[f.name] for f in fields(cls)})

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "SourceState":
        return SourceState(**{k: v.to(device=device, dtype=dtype) for k, v in self.tensors().items()})

    def source_motion(self) -> HeadMotion:
        return HeadMotion(R=self.R_s, t=self.t_s, exp=self.exp_s, scale=self.scale_s)


# Eye/lip open ratios assumed for a keyframe whose own were not measured (a relaxed face is close
# to these); profiles measure theirs from the face mesh (vcam.face_geometry).
SOURCE_EYE_OPEN = 0.35
SOURCE_LIP_OPEN = 0.0


def source_eye_open(head: HeadMotion) -> tuple[float, float]:
    return head.source_eye_open if head.source_eye_open is not None else (SOURCE_EYE_OPEN, SOURCE_EYE_OPEN)


def source_lip_open(head: HeadMotion) -> float:
    return head.source_lip_open if head.source_lip_open is not None else SOURCE_LIP_OPEN


class TalkingHeadModel(nn.Module):
    """All networks of one weight layout; submodule names are the checkpoint file names."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.appearance_feature_extractor = AppearanceFeatureExtractor(cfg.appearance)
        if isinstance(cfg.motion, ConvNeXtMotionConfig):
            self.motion_extractor: nn.Module = MotionExtractor(cfg.motion)
        else:
            self.motion_extractor = HeadExpressionEstimator(cfg.motion)
        self.canonical_keypoint_detector = CanonicalKeypointDetector(cfg.keypoints) if cfg.keypoints else None
        self.warping_module = WarpingNetwork(cfg.warping)
        if isinstance(cfg.generator, SpadeDecoderConfig):
            self.spade_generator: nn.Module = SPADEDecoder(cfg.generator)
        else:
            self.spade_generator = OcclusionAwareDecoder(cfg.generator)
        self.stitching_retargeting_module = StitchingRetargeting(cfg.retargeting) if cfg.retargeting else None

    # -- reading motion -------------------------------------------------------------------------

    def interpret(self, raw: RawMotion) -> MotionEstimate:
        """Bins → degrees, flat keypoint vectors → (B, K, 3)."""
        conv = self.cfg.convention
        b = raw.t.shape[0]
        scale = raw.scale if raw.scale is not None else raw.t.new_ones(b, 1)
        return MotionEstimate(
            pitch=geometry.bins_to_degrees(raw.pitch, conv),
            yaw=geometry.bins_to_degrees(raw.yaw, conv),
            roll=geometry.bins_to_degrees(raw.roll, conv),
            t=raw.t,
            exp=raw.exp.view(b, -1, 3),
            scale=scale,
            kp=raw.kp.view(b, -1, 3) if raw.kp is not None else None,
        )

    def extract_motion(self, crop: torch.Tensor) -> MotionEstimate:
        """Motion of a face crop (B, 3, S, S), RGB in [0, 1]."""
        return self.interpret(self.motion_extractor(crop))

    def head_motion(self, m: MotionEstimate) -> HeadMotion:
        R = geometry.euler_to_rotation(m.pitch, m.yaw, m.roll, self.cfg.convention)
        return HeadMotion(R=R, t=m.t, exp=m.exp, scale=m.scale)

    # -- source side ----------------------------------------------------------------------------

    def prepare_source(self, crop: torch.Tensor) -> SourceState:
        """The keyframe crop (1, 3, S, S) → appearance volume, canonical and posed keypoints."""
        f_s = self.appearance_feature_extractor(crop)
        motion = self.extract_motion(crop)
        if self.canonical_keypoint_detector is not None:
            x_c, _ = self.canonical_keypoint_detector(crop)
        else:
            assert motion.kp is not None, "a motion extractor without keypoints needs a keypoint detector"
            x_c = motion.kp
        head = self.head_motion(motion)
        return SourceState(
            f_s=f_s,
            x_c=x_c,
            x_s=self.keypoints(x_c, head),
            R_s=head.R,
            t_s=head.t,
            exp_s=head.exp,
            scale_s=head.scale,
            pose_s=torch.stack([motion.pitch, motion.yaw, motion.roll], dim=-1),
        )

    # -- per frame -------------------------------------------------------------------------------

    def keypoints(self, x_c: torch.Tensor, head: HeadMotion) -> torch.Tensor:
        return geometry.transform_keypoints(x_c, head.R, head.t, head.exp, head.scale, self.cfg.convention)

    def driving_keypoints(self, source: SourceState, head: HeadMotion) -> torch.Tensor:
        """x_d for ``head``, with stitching and eye/lip retargeting where the model has them."""
        x_d = self.keypoints(source.x_c, head)
        retarget = self.stitching_retargeting_module
        if retarget is None:
            return x_d
        b = x_d.shape[0]
        x_s = source.x_s.expand(b, -1, -1)
        if head.eye_open is not None:
            ratios = x_d.new_tensor([[*source_eye_open(head), head.eye_open]]).expand(b, -1)
            x_d = x_d + retarget.eye_delta(x_s, ratios)
        if head.mouth_open is not None:
            ratios = x_d.new_tensor([[source_lip_open(head), head.mouth_open]]).expand(b, -1)
            x_d = x_d + retarget.lip_delta(x_s, ratios)
        return retarget.stitch(x_s, x_d)

    def warp_decode(self, f_s: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        return self.spade_generator(self.warping_module(f_s, x_s, x_d))

    def render(self, source: SourceState, head: HeadMotion) -> torch.Tensor:
        """The avatar (B, 3, out, out) in [0, 1] with the source's appearance and ``head``'s motion."""
        x_d = self.driving_keypoints(source, head)
        b = x_d.shape[0]
        return self.warp_decode(source.f_s.expand(b, -1, -1, -1, -1), source.x_s.expand(b, -1, -1), x_d)


def build_model(cfg: ModelConfig, seed: int | None = None) -> TalkingHeadModel:
    """The model in eval mode; ``seed`` gives reproducible random weights (tests, demo model)."""
    if seed is not None:
        torch.manual_seed(seed)
    return TalkingHeadModel(cfg).eval()
