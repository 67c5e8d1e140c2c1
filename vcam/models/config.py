"""Configurations of the two public weight layouts, as small frozen dataclasses.

``LIVEPORTRAIT`` mirrors the released LivePortrait human model (21 implicit keypoints, ConvNeXt-V2
motion extractor, SPADE decoder with 2× pixel-shuffle output, stitching/eye/lip MLPs).
``FACEVID2VID`` mirrors the public face-vid2vid reimplementation's "Vox-256-New" release (15
keypoints, canonical keypoint detector + ResNet head-pose/expression estimator, SPADE decoder at
256²); ``FACEVID2VID_BETA`` its earlier "Vox-256-Beta" release (7×7 first convolution, strided
and trilinear dense-motion hourglass, occlusion-aware residual decoder, full-size keypoint
detector). :func:`demo_config` shrinks any of them to a size that runs interactively on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal


@dataclass(frozen=True)
class AppearanceConfig:
    """F: image → 3-D appearance feature volume (reshape_channel × reshape_depth × H/4 × W/4)."""

    block_expansion: int = 64
    num_down_blocks: int = 2
    max_features: int = 512
    reshape_channel: int = 32
    reshape_depth: int = 16
    num_resblocks: int = 6
    first_kernel: int = 3


@dataclass(frozen=True)
class ConvNeXtMotionConfig:
    """LivePortrait's motion extractor: canonical keypoints, pose bins, t, expression and scale."""

    num_kp: int = 21
    num_bins: int = 66
    depths: tuple[int, ...] = (3, 3, 9, 3)
    dims: tuple[int, ...] = (96, 192, 384, 768)


@dataclass(frozen=True)
class HeadExpressionConfig:
    """face-vid2vid's head-pose and expression estimator H/Δ (a ResNet-50-like trunk)."""

    num_kp: int = 15
    num_bins: int = 66
    block_expansion: int = 64
    widths: tuple[int, ...] = (256, 512, 1024, 2048)
    depths: tuple[int, ...] = (3, 3, 5, 2)


@dataclass(frozen=True)
class KeypointDetectorConfig:
    """face-vid2vid's canonical keypoint detector L (2-D encoder, 3-D decoder, soft-argmax)."""

    num_kp: int = 15
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    reshape_channel: int = 16384
    reshape_depth: int = 16
    temperature: float = 0.1
    scale_factor: float = 0.25
    estimate_jacobian: bool = False
    up_mode: Literal["nearest", "trilinear"] = "nearest"


@dataclass(frozen=True)
class DenseMotionConfig:
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    reshape_depth: int = 16
    compress: int = 4


@dataclass(frozen=True)
class WarpingConfig:
    """W: dense motion from keypoints, 3-D warp of the appearance volume, projection to 2-D."""

    num_kp: int = 21
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    reshape_channel: int = 32
    estimate_occlusion_map: bool = True
    dense_motion: DenseMotionConfig = DenseMotionConfig()
    strided_down: bool = False
    up_mode: Literal["nearest", "trilinear"] = "nearest"


@dataclass(frozen=True)
class SpadeDecoderConfig:
    """SPADE residual decoder G: ``upscale`` 2 gives 512² from 256² (LivePortrait), 1 keeps 256²
    (face-vid2vid's Vox-256-New release)."""

    upscale: int = 2
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2


@dataclass(frozen=True)
class OcclusionDecoderConfig:
    """face-vid2vid Beta's decoder: 2-D residual blocks and upsampling back to the input size."""

    block_expansion: int = 64
    num_down_blocks: int = 2
    num_resblocks: int = 6


@dataclass(frozen=True)
class MLPConfig:
    input_size: int
    hidden_sizes: tuple[int, ...]
    output_size: int


@dataclass(frozen=True)
class RetargetingConfig:
    """LivePortrait's stitching (shoulders/crop seam), eye and lip retargeting MLPs."""

    stitching: MLPConfig = MLPConfig(126, (128, 128, 64), 65)
    lip: MLPConfig = MLPConfig(65, (128, 128, 64), 63)
    eye: MLPConfig = MLPConfig(66, (256, 256, 128, 128, 64), 63)


@dataclass(frozen=True)
class PoseConvention:
    """How the weights were trained to read pose.

    ``bin_offset``: degrees = E[bin] · 3 − offset. ``order``: "zyx" means R = Rz·Ry·Rx
    (LivePortrait), "xyz" means R = Rx·Ry·Rz (face-vid2vid). ``pi``: the reimplementation
    converts degrees with 3.14, which its weights were trained with. ``keypoints``: which
    keypoint transform (see :mod:`vcam.models.geometry`).
    """

    bin_offset: float
    order: Literal["zyx", "xyz"]
    pi: float
    keypoints: Literal["liveportrait", "facevid2vid"]


@dataclass(frozen=True)
class ModelConfig:
    name: str
    input_size: int
    output_size: int
    appearance: AppearanceConfig
    motion: ConvNeXtMotionConfig | HeadExpressionConfig
    warping: WarpingConfig
    generator: SpadeDecoderConfig | OcclusionDecoderConfig
    convention: PoseConvention
    keypoints: KeypointDetectorConfig | None = None
    retargeting: RetargetingConfig | None = None

    @property
    def num_kp(self) -> int:
        return self.motion.num_kp


LIVEPORTRAIT = ModelConfig(
    name="liveportrait",
    input_size=256,
    output_size=512,
    appearance=AppearanceConfig(),
    motion=ConvNeXtMotionConfig(),
    warping=WarpingConfig(),
    generator=SpadeDecoderConfig(),
    convention=PoseConvention(bin_offset=97.5, order="zyx", pi=math.pi, keypoints="liveportrait"),
    retargeting=RetargetingConfig(),
)

FACEVID2VID = ModelConfig(
    name="facevid2vid",
    input_size=256,
    output_size=256,
    appearance=AppearanceConfig(),
    motion=HeadExpressionConfig(),
    warping=WarpingConfig(num_kp=15),
    generator=SpadeDecoderConfig(upscale=1),
    convention=PoseConvention(bin_offset=99.0, order="xyz", pi=3.14, keypoints="facevid2vid"),
    keypoints=KeypointDetectorConfig(),
)

FACEVID2VID_BETA = replace(
    FACEVID2VID,
    name="facevid2vid-beta",
    appearance=AppearanceConfig(first_kernel=7),
    warping=WarpingConfig(num_kp=15, strided_down=True, up_mode="trilinear"),
    generator=OcclusionDecoderConfig(),
    keypoints=KeypointDetectorConfig(scale_factor=1, up_mode="trilinear"),
)

CONFIGS = {c.name: c for c in (LIVEPORTRAIT, FACEVID2VID, FACEVID2VID_BETA)}


def demo_config(base: ModelConfig, input_size: int = 64) -> ModelConfig:
    """A narrow, shallow variant of ``base`` with the same structure, for tests and the demo model.

    Spatial sizes shrink with ``input_size`` (a volume of input/4 squared), so the hourglasses
    get fewer levels; widths shrink 8× so a CPU renders it in milliseconds.
    """
    levels = 3
    warping = replace(
        base.warping,
        block_expansion=8,
        max_features=32,
        reshape_channel=8,
        dense_motion=DenseMotionConfig(block_expansion=8, max_features=64, num_blocks=levels, reshape_depth=4, compress=2),
    )
    appearance = replace(base.appearance, block_expansion=8, max_features=32, reshape_channel=8, reshape_depth=4, num_resblocks=2)
    if isinstance(base.motion, ConvNeXtMotionConfig):
        motion: ConvNeXtMotionConfig | HeadExpressionConfig = replace(base.motion, depths=(1, 1, 1, 1), dims=(16, 32, 48, 64))
    else:
        motion = replace(base.motion, block_expansion=16, widths=(32, 64, 128, 256), depths=(1, 1, 1, 1))
    generator: SpadeDecoderConfig | OcclusionDecoderConfig
    if isinstance(base.generator, SpadeDecoderConfig):
        generator = replace(base.generator, block_expansion=8, max_features=64)
    else:
        generator = replace(base.generator, block_expansion=8, num_resblocks=2)
    keypoints = None
    if base.keypoints is not None:
        scale = 0.5 if base.keypoints.scale_factor != 1 else 1
        keypoints = replace(base.keypoints, block_expansion=8, max_features=64, num_blocks=levels, reshape_channel=64 * 4, reshape_depth=4, scale_factor=scale)
    return replace(
        base,
        name=f"{base.name}-demo",
        input_size=input_size,
        output_size=input_size * base.output_size // base.input_size,
        appearance=appearance,
        motion=motion,
        warping=warping,
        generator=generator,
        keypoints=keypoints,
    )


def config_by_name(name: str) -> ModelConfig | None:
    """``liveportrait``, ``facevid2vid``, ``facevid2vid-beta`` or any with ``-demo`` (see :func:`demo_config`)."""
    base = CONFIGS.get(name.removesuffix("-demo"))
    if base is None or name == base.name:
        return base
    return demo_config(base)
