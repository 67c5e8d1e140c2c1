"""LivePortrait's stitching and eye/lip retargeting MLPs (keypoint-space corrections)."""

from __future__ import annotations

import torch
from torch import nn

from .config import MLPConfig, RetargetingConfig


class RetargetingMLP(nn.Module):
    def __init__(self, cfg: MLPConfig) -> None:
        super().__init__()
        sizes = (cfg.input_size, *cfg.hidden_sizes)
        layers: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.mlp = nn.Sequential(*layers, nn.Linear(sizes[-1], cfg.output_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class StitchingRetargeting(nn.Module):
    """``stitching`` keeps the crop seam (shoulders, neck) aligned with the keyframe; ``eye`` and
    ``lip`` move eyelids and lips to target open ratios."""

    def __init__(self, cfg: RetargetingConfig) -> None:
        super().__init__()
        self.stitching = RetargetingMLP(cfg.stitching)
        self.lip = RetargetingMLP(cfg.lip)
        self.eye = RetargetingMLP(cfg.eye)

    def stitch(self, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        """x_d corrected so its crop blends into the keyframe: per-keypoint delta plus (tx, ty)."""
        b, k, _ = x_s.shape
        delta = self.stitching(torch.cat([x_s.reshape(b, -1), x_d.reshape(b, -1)], dim=1))
        shift = torch.cat([delta[:, 3 * k : 3 * k + 2], delta.new_zeros(b, 1)], dim=1)
        return x_d + delta[:, : 3 * k].view(b, k, 3) + shift[:, None, :]

    def eye_delta(self, x_s: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
        """Keypoint delta for eye-open ``ratios`` (B, 3): source left, source right, target."""
        return self.eye(torch.cat([x_s.flatten(1), ratios], dim=1)).view_as(x_s)

    def lip_delta(self, x_s: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
        """Keypoint delta for lip-open ``ratios`` (B, 2): source, target."""
        return self.lip(torch.cat([x_s.flatten(1), ratios], dim=1)).view_as(x_s)
