"""face-vid2vid's canonical keypoint detector L: source image → K canonical 3-D keypoints x_c."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import AntiAliasDownsample, DownBlock2d, UpBlock3d, coordinate_grid
from .config import KeypointDetectorConfig


class KeypointHourglass(nn.Module):
    """2-D encoder → channels folded into depth → 3-D decoder."""

    def __init__(self, cfg: KeypointDetectorConfig, image_channel: int) -> None:
        super().__init__()
        width = [min(cfg.max_features, cfg.block_expansion * 2**i) for i in range(cfg.num_blocks + 1)]
        self.down_blocks = nn.Sequential()
        for i in range(cfg.num_blocks):
            self.down_blocks.add_module(f"down{i}", DownBlock2d(image_channel if i == 0 else width[i], width[i + 1]))
        self.conv = nn.Conv2d(width[-1], cfg.reshape_channel, 1)
        self.up_blocks = nn.Sequential()
        for i in range(cfg.num_blocks):
            level = cfg.num_blocks - i
            self.up_blocks.add_module(f"up{i}", UpBlock3d(width[level], width[level - 1], mode=cfg.up_mode))
        self.reshape_depth = cfg.reshape_depth
        self.out_filters = width[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(self.down_blocks(x))
        b, c, h, w = out.shape
        return self.up_blocks(out.view(b, c // self.reshape_depth, self.reshape_depth, h, w))


class CanonicalKeypointDetector(nn.Module):
    """Soft-argmax over per-keypoint 3-D heatmaps (and optional Jacobians around each keypoint)."""

    def __init__(self, cfg: KeypointDetectorConfig, image_channel: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        self.predictor = KeypointHourglass(cfg, image_channel)
        self.kp = nn.Conv3d(self.predictor.out_filters, cfg.num_kp, 3, padding=1)
        if cfg.estimate_jacobian:
            self.jacobian = nn.Conv3d(self.predictor.out_filters, 9 * cfg.num_kp, 3, padding=1)
        if cfg.scale_factor != 1:
            self.down = AntiAliasDownsample(image_channel, cfg.scale_factor)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns keypoints (B, K, 3) and Jacobians (B, K, 3, 3) or None."""
        x = self.down(image) if self.cfg.scale_factor != 1 else image
        features = self.predictor(x)
        logits = self.kp(features)
        b, k, d, h, w = logits.shape
        heatmap = F.softmax(logits.view(b, k, -1) / self.cfg.temperature, dim=2).view(b, k, d, h, w)
        grid = coordinate_grid(d, h, w, like=heatmap)
        kp = (heatmap.unsqueeze(-1) * grid).sum(dim=(2, 3, 4))
        if not self.cfg.estimate_jacobian:
            return kp, None
        jac_map = self.jacobian(features).view(b, k, 9, d, h, w)
        jacobian = (heatmap.unsqueeze(2) * jac_map).view(b, k, 9, -1).sum(-1).view(b, k, 3, 3)
        return kp, jacobian
