"""Building blocks shared by the face-vid2vid family of networks.

Attribute names (``conv``, ``norm``, ``down_blocks`` …) are part of the public checkpoints'
state-dict layout, so they are kept exactly; behaviour switches between the two layouts
(LivePortrait and the face-vid2vid reimplementation) are explicit constructor arguments.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def coordinate_grid(d: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """Normalised (x, y, z) coordinates in [-1, 1] of a d×h×w volume, shape (d, h, w, 3).

    x grows to the right, y downwards and z into the volume: the order ``grid_sample`` expects.
    """
    opts = {"dtype": like.dtype, "device": like.device}
    z = torch.linspace(-1.0, 1.0, d, **opts)
    y = torch.linspace(-1.0, 1.0, h, **opts)
    x = torch.linspace(-1.0, 1.0, w, **opts)
    zz, yy, xx = torch.meshgrid(z, y, x, indexing="ij")
    return torch.stack([xx, yy, zz], dim=-1)


def keypoint_heatmaps(kp: torch.Tensor, size: tuple[int, int, int], variance: float = 0.01) -> torch.Tensor:
    """Gaussian blobs around keypoints ``kp`` (B, K, 3) on a volume of ``size``: (B, K, d, h, w)."""
    grid = coordinate_grid(*size, like=kp)
    diff = grid[None, None] - kp[:, :, None, None, None, :]
    return torch.exp(-0.5 * diff.pow(2).sum(-1) / variance)


class SameBlock2d(nn.Module):
    """Conv → BatchNorm → (Leaky)ReLU at constant resolution."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, lrelu: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2)
        self.norm = nn.BatchNorm2d(cout)
        self.ac = nn.LeakyReLU() if lrelu else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ac(self.norm(self.conv(x)))


class DownBlock2d(nn.Module):
    """Conv → BatchNorm → ReLU → 2× average pooling."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class UpBlock2d(nn.Module):
    """2× nearest upsampling → Conv → BatchNorm → ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=2.0))))


class ResBlock2d(nn.Module):
    """Pre-activation residual block (BN → ReLU → conv, twice)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = nn.BatchNorm2d(channels)
        self.norm2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(out)))


class ResBlock3d(nn.Module):
    """The 3-D twin of :class:`ResBlock2d`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm1 = nn.BatchNorm3d(channels)
        self.norm2 = nn.BatchNorm3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(out)))


class DownBlock3d(nn.Module):
    """Halves height and width of a volume: by pooling (LivePortrait, face-vid2vid) or a strided conv (face-vid2vid Beta)."""

    def __init__(self, cin: int, cout: int, strided: bool) -> None:
        super().__init__()
        self.strided = strided
        self.conv = nn.Conv3d(cin, cout, 3, padding=1, stride=(1, 2, 2) if strided else 1)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm(self.conv(x)))
        return out if self.strided else F.avg_pool3d(out, (1, 2, 2))


class UpBlock3d(nn.Module):
    """Doubles height and width of a volume (``mode``: nearest or trilinear), then Conv → BN → ReLU."""

    def __init__(self, cin: int, cout: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode=self.mode)
        return F.relu(self.norm(self.conv(up)))


def _width(expansion: int, level: int, cap: int) -> int:
    return min(cap, expansion * 2**level)


class Encoder(nn.Module):
    def __init__(self, expansion: int, cin: int, num_blocks: int, cap: int, strided: bool) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock3d(cin if i == 0 else _width(expansion, i, cap), _width(expansion, i + 1, cap), strided)
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    def __init__(self, expansion: int, cin: int, num_blocks: int, cap: int, mode: str) -> None:
        super().__init__()
        self.up_blocks = nn.ModuleList(
            UpBlock3d((1 if i == num_blocks - 1 else 2) * _width(expansion, i + 1, cap), _width(expansion, i, cap), mode)
            for i in reversed(range(num_blocks))
        )
        self.out_filters = expansion + cin
        self.conv = nn.Conv3d(self.out_filters, self.out_filters, 3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_filters)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        out = skips[-1]
        for block, skip in zip(self.up_blocks, reversed(skips[:-1])):
            out = torch.cat([block(out), skip], dim=1)
        return F.relu(self.norm(self.conv(out)))


class Hourglass(nn.Module):
    """3-D U-Net used by the dense-motion network."""

    def __init__(self, expansion: int, cin: int, num_blocks: int, cap: int, strided: bool, mode: str) -> None:
        super().__init__()
        self.encoder = Encoder(expansion, cin, num_blocks, cap, strided)
        self.decoder = Decoder(expansion, cin, num_blocks, cap, mode)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: instance norm modulated by maps predicted from ``segmap``."""

    def __init__(self, channels: int, label_channels: int, hidden: int = 128) -> None:
        super().__init__()
        self.param_free_norm = nn.InstanceNorm2d(channels, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(segmap)
        return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """Residual block of spectrally-normalised convs with SPADE normalisation."""

    def __init__(self, cin: int, cout: int, label_channels: int) -> None:
        super().__init__()
        middle = min(cin, cout)
        sn = nn.utils.spectral_norm
        self.learned_shortcut = cin != cout
        self.conv_0 = sn(nn.Conv2d(cin, middle, 3, padding=1))
        self.conv_1 = sn(nn.Conv2d(middle, cout, 3, padding=1))
        self.norm_0 = SPADE(cin, label_channels)
        self.norm_1 = SPADE(middle, label_channels)
        if self.learned_shortcut:
            self.conv_s = sn(nn.Conv2d(cin, cout, 1, bias=False))
            self.norm_s = SPADE(cin, label_channels)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return shortcut + dx


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ResBottleneck(nn.Module):
    """ResNet bottleneck (1×1 → 3×3 → 1×1) with an optional strided projection shortcut."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        inner = channels // 4
        self.conv1 = nn.Conv2d(channels, inner, 1)
        self.conv2 = nn.Conv2d(inner, inner, 3, padding=1, stride=stride)
        self.conv3 = nn.Conv2d(inner, channels, 1)
        self.norm1 = nn.BatchNorm2d(inner)
        self.norm2 = nn.BatchNorm2d(inner)
        self.norm3 = nn.BatchNorm2d(channels)
        self.stride = stride
        if stride != 1:
            self.skip = nn.Conv2d(channels, channels, 1, stride=stride)
            self.norm4 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = F.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        shortcut = self.norm4(self.skip(x)) if self.stride != 1 else x
        return F.relu(out + shortcut)


class AntiAliasDownsample(nn.Module):
    """Gaussian blur then integer subsampling by ``1/scale`` (the kernel is a stored buffer)."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.pad = size // 2
        self.step = int(1 / scale)
        axis = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        g = torch.exp(-axis.pow(2) / (2 * sigma**2))
        kernel = torch.outer(g, g)
        kernel = kernel / kernel.sum()
        self.register_buffer("weight", kernel.expand(channels, 1, size, size).clone())
        self.groups = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(F.pad(x, (self.pad,) * 4), self.weight, groups=self.groups)
        return out[:, :, :: self.step, :: self.step]
