"""Appearance feature extractor F: source image → 3-D appearance feature volume f_s."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import DownBlock2d, ResBlock3d, SameBlock2d
from .config import AppearanceConfig


class AppearanceFeatureExtractor(nn.Module):
    """2-D encoder whose channels are folded into depth, refined by 3-D residual blocks.

    The output volume (B, reshape_channel, reshape_depth, H/4, W/4) is computed once per
    avatar keyframe and stored in its profile.
    """

    def __init__(self, cfg: AppearanceConfig, image_channel: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        self.first = SameBlock2d(image_channel, cfg.block_expansion, kernel_size=cfg.first_kernel)
        widths = [min(cfg.max_features, cfg.block_expansion * 2**i) for i in range(cfg.num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(DownBlock2d(a, b) for a, b in zip(widths, widths[1:]))
        self.second = nn.Conv2d(widths[-1], cfg.max_features, 1)
        self.resblocks_3d = nn.Sequential()
        for i in range(cfg.num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(cfg.reshape_channel))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.first(image)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)
        b, _, h, w = out.shape
        return self.resblocks_3d(out.view(b, self.cfg.reshape_channel, self.cfg.reshape_depth, h, w))
