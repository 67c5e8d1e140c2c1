"""Motion extractors: image → canonical keypoints, head-pose bins, translation, expression, scale.

Both return :class:`RawMotion` (pose still as logits over 66 bins); :mod:`.geometry` turns bins
into degrees. LivePortrait uses one ConvNeXt-V2 network for everything; face-vid2vid splits it
into a head-pose/expression estimator (here) and a canonical keypoint detector
(:mod:`.keypoint_detector`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ChannelLayerNorm, ResBottleneck
from .config import ConvNeXtMotionConfig, HeadExpressionConfig


@dataclass
class RawMotion:
    """Network outputs before geometry: bins are logits, keypoints flat (B, 3K)."""

    pitch: torch.Tensor
    yaw: torch.Tensor
    roll: torch.Tensor
    t: torch.Tensor
    exp: torch.Tensor
    scale: torch.Tensor | None = None
    kp: torch.Tensor | None = None


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2's GRN on channels-last tensors."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GlobalResponseNorm(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtV2(nn.Module):
    def __init__(self, cfg: ConvNeXtMotionConfig, in_chans: int = 3) -> None:
        super().__init__()
        dims = cfg.dims
        stem = nn.Sequential(nn.Conv2d(in_chans, dims[0], 4, stride=4), ChannelLayerNorm(dims[0]))
        downs = [nn.Sequential(ChannelLayerNorm(a), nn.Conv2d(a, b, 2, stride=2)) for a, b in zip(dims, dims[1:])]
        self.downsample_layers = nn.ModuleList([stem, *downs])
        self.stages = nn.ModuleList(nn.Sequential(*(ConvNeXtBlock(d) for _ in range(n))) for d, n in zip(dims, cfg.depths))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        width = dims[-1]
        self.fc_kp = nn.Linear(width, 3 * cfg.num_kp)
        self.fc_scale = nn.Linear(width, 1)
        self.fc_pitch = nn.Linear(width, cfg.num_bins)
        self.fc_yaw = nn.Linear(width, cfg.num_bins)
        self.fc_roll = nn.Linear(width, cfg.num_bins)
        self.fc_t = nn.Linear(width, 3)
        self.fc_exp = nn.Linear(width, 3 * cfg.num_kp)

    def forward(self, x: torch.Tensor) -> RawMotion:
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        x = self.norm(x.mean(dim=(-2, -1)))
        return RawMotion(
            pitch=self.fc_pitch(x), yaw=self.fc_yaw(x), roll=self.fc_roll(x),
            t=self.fc_t(x), exp=self.fc_exp(x), scale=self.fc_scale(x), kp=self.fc_kp(x),
        )


class MotionExtractor(nn.Module):
    """LivePortrait's motion extractor M (the checkpoint nests the backbone under ``detector``)."""

    def __init__(self, cfg: ConvNeXtMotionConfig) -> None:
        super().__init__()
        self.detector = ConvNeXtV2(cfg)

    def forward(self, image: torch.Tensor) -> RawMotion:
        return self.detector(image)


class HeadExpressionEstimator(nn.Module):
    """face-vid2vid's head pose H and expression Δ estimator (ResNet-style bottleneck stages)."""

    def __init__(self, cfg: HeadExpressionConfig, image_channel: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(image_channel, cfg.block_expansion, 7, padding=3, stride=2)
        self.norm1 = nn.BatchNorm2d(cfg.block_expansion)
        previous = cfg.block_expansion
        block = 1
        self.stage_names: list[tuple[str, ...]] = []
        for stage, (width, depth) in enumerate(zip(cfg.widths, cfg.depths)):
            names = [f"conv{stage + 2}", f"norm{stage + 2}"]
            setattr(self, f"conv{stage + 2}", nn.Conv2d(previous, width, 1))
            setattr(self, f"norm{stage + 2}", nn.BatchNorm2d(width))
            if stage > 0:
                setattr(self, f"block{block}", ResBottleneck(width, stride=2))
                names.append(f"block{block}")
                block += 1
            repeated = nn.Sequential()
            for i in range(depth):
                repeated.add_module(f"b{block}_{i}", ResBottleneck(width, stride=1))
            setattr(self, f"block{block}", repeated)
            names.append(f"block{block}")
            block += 1
            self.stage_names.append(tuple(names))
            previous = width
        self.fc_roll = nn.Linear(previous, cfg.num_bins)
        self.fc_pitch = nn.Linear(previous, cfg.num_bins)
        self.fc_yaw = nn.Linear(previous, cfg.num_bins)
        self.fc_t = nn.Linear(previous, 3)
        self.fc_exp = nn.Linear(previous, 3 * cfg.num_kp)

    def forward(self, x: torch.Tensor) -> RawMotion:
        out = F.max_pool2d(F.relu(self.norm1(self.conv1(x))), 3, stride=2, padding=1)
        for conv, norm, *blocks in self.stage_names:
            out = F.relu(getattr(self, norm)(getattr(self, conv)(out)))
            for name in blocks:
                out = getattr(self, name)(out)
        out = out.mean(dim=(-2, -1))
        # The released weights were trained with the yaw and roll heads swapped: keep that wiring.
        return RawMotion(
            yaw=self.fc_roll(out), pitch=self.fc_pitch(out), roll=self.fc_yaw(out),
            t=self.fc_t(out), exp=self.fc_exp(out),
        )
