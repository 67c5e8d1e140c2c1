"""Generators G: warped 2-D features → image in [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ResBlock2d, SPADEResnetBlock, UpBlock2d
from .config import OcclusionDecoderConfig, SpadeDecoderConfig


class SPADEDecoder(nn.Module):
    """Six SPADE blocks at feature resolution, two upsampling blocks, then the image conv: with a
    pixel shuffle for ``upscale`` 2 (LivePortrait, 512² out), plain for 1 (face-vid2vid, 256² out)."""

    def __init__(self, cfg: SpadeDecoderConfig, out_channels: int = 64) -> None:
        super().__init__()
        cin = min(cfg.max_features, cfg.block_expansion * 2**cfg.num_down_blocks)
        self.fc = nn.Conv2d(cin, 2 * cin, 3, padding=1)
        for i in range(6):
            setattr(self, f"G_middle_{i}", SPADEResnetBlock(2 * cin, 2 * cin, cin))
        self.up_0 = SPADEResnetBlock(2 * cin, cin, cin)
        self.up_1 = SPADEResnetBlock(cin, out_channels, cin)
        if cfg.upscale > 1:
            self.conv_img = nn.Sequential(nn.Conv2d(out_channels, 3 * cfg.upscale**2, 3, padding=1), nn.PixelShuffle(cfg.upscale))
        else:
            self.conv_img = nn.Conv2d(out_channels, 3, 3, padding=1)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        x = self.fc(feature)
        for i in range(6):
            x = getattr(self, f"G_middle_{i}")(x, feature)
        x = self.up_0(F.interpolate(x, scale_factor=2.0), feature)
        x = self.up_1(F.interpolate(x, scale_factor=2.0), feature)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))


class OcclusionAwareDecoder(nn.Module):
    """face-vid2vid Beta's decoder: 2-D residual blocks, upsampling blocks and a 7×7 output conv."""

    def __init__(self, cfg: OcclusionDecoderConfig, image_channel: int = 3) -> None:
        super().__init__()
        width = cfg.block_expansion * 2**cfg.num_down_blocks
        self.resblocks_2d = nn.Sequential()
        for i in range(cfg.num_resblocks):
            self.resblocks_2d.add_module(f"2dr{i}", ResBlock2d(width))
        widths = [max(cfg.block_expansion, cfg.block_expansion * 2 ** (cfg.num_down_blocks - i)) for i in range(cfg.num_down_blocks + 1)]
        self.up_blocks = nn.ModuleList(UpBlock2d(a, b) for a, b in zip(widths, widths[1:]))
        self.final = nn.Conv2d(cfg.block_expansion, image_channel, 7, padding=3)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        out = self.resblocks_2d(feature)
        for block in self.up_blocks:
            out = block(out)
        return torch.sigmoid(self.final(out))
