"""Warping network W: 3-D flow from keypoints, warp of the appearance volume, 2-D projection."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Hourglass, SameBlock2d, coordinate_grid, keypoint_heatmaps
from .config import WarpingConfig


def grid_sample_3d(volume: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Trilinear sampling with zero padding, coordinates in [-1, 1], align_corners=False."""
    return F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass
class DenseMotion:
    deformation: torch.Tensor  # (B, d, h, w, 3) sampling grid into the source volume
    mask: torch.Tensor  # (B, K+1, d, h, w) soft assignment to background + K keypoint motions
    occlusion_map: torch.Tensor | None  # (B, 1, h, w)


class DenseMotionNetwork(nn.Module):
    """Combines K+1 sparse motions (identity + one per keypoint) into a dense 3-D deformation."""

    def __init__(self, cfg: WarpingConfig) -> None:
        super().__init__()
        dm = cfg.dense_motion
        self.num_kp = cfg.num_kp
        cin = (cfg.num_kp + 1) * (dm.compress + 1)
        self.hourglass = Hourglass(dm.block_expansion, cin, dm.num_blocks, dm.max_features, cfg.strided_down, cfg.up_mode)
        self.mask = nn.Conv3d(self.hourglass.out_filters, cfg.num_kp + 1, 7, padding=3)
        self.compress = nn.Conv3d(cfg.reshape_channel, dm.compress, 1)
        self.norm = nn.BatchNorm3d(dm.compress)
        if cfg.estimate_occlusion_map:
            self.occlusion = nn.Conv2d(self.hourglass.out_filters * dm.reshape_depth, 1, 7, padding=3)
        else:
            self.occlusion = None
        self.grid_sample = grid_sample_3d

    def sparse_motions(
        self,
        size: tuple[int, int, int],
        kp_source: torch.Tensor,
        kp_driving: torch.Tensor,
        jacobian: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, K+1, d, h, w, 3): where each driving-frame voxel samples the source, per keypoint.

        ``jacobian`` (B, K, 3, 3) is J_s·J_d⁻¹, the first-order term around each keypoint.
        """
        b = kp_source.shape[0]
        identity = coordinate_grid(*size, like=kp_source)[None, None]
        offsets = identity - kp_driving[:, :, None, None, None, :]
        if jacobian is not None:
            offsets = torch.einsum("bkij,bkdhwj->bkdhwi", jacobian, offsets)
        driving_to_source = offsets + kp_source[:, :, None, None, None, :]
        return torch.cat([identity.expand(b, 1, *size, 3), driving_to_source], dim=1)

    def forward(
        self, feature: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor, jacobian: torch.Tensor | None = None
    ) -> DenseMotion:
        b, _, d, h, w = feature.shape
        k1 = self.num_kp + 1
        feature = F.relu(self.norm(self.compress(feature)))
        motions = self.sparse_motions((d, h, w), kp_source, kp_driving, jacobian)
        repeated = feature.unsqueeze(1).expand(b, k1, *feature.shape[1:]).reshape(b * k1, -1, d, h, w)
        deformed = self.grid_sample(repeated, motions.reshape(b * k1, d, h, w, 3)).view(b, k1, -1, d, h, w)
        heatmap = keypoint_heatmaps(kp_driving, (d, h, w)) - keypoint_heatmaps(kp_source, (d, h, w))
        heatmap = torch.cat([heatmap.new_zeros(b, 1, d, h, w), heatmap], dim=1).unsqueeze(2)
        prediction = self.hourglass(torch.cat([heatmap, deformed], dim=2).view(b, -1, d, h, w))
        mask = F.softmax(self.mask(prediction), dim=1)
        deformation = (motions * mask.unsqueeze(-1)).sum(dim=1)
        occlusion = None
        if self.occlusion is not None:
            occlusion = torch.sigmoid(self.occlusion(prediction.reshape(b, -1, h, w)))
        return DenseMotion(deformation=deformation, mask=mask, occlusion_map=occlusion)


class WarpingNetwork(nn.Module):
    """Warps f_s by the dense motion between x_s and x_d and projects the volume to 2-D features."""

    def __init__(self, cfg: WarpingConfig) -> None:
        super().__init__()
        self.dense_motion_network = DenseMotionNetwork(cfg)
        out = cfg.block_expansion * 2**cfg.num_down_blocks
        self.third = SameBlock2d(cfg.max_features, out, lrelu=True)
        self.fourth = nn.Conv2d(out, out, 1)

    def forward(
        self, feature: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor, jacobian: torch.Tensor | None = None
    ) -> torch.Tensor:
        motion = self.dense_motion_network(feature, kp_source, kp_driving, jacobian)
        warped = self.dense_motion_network.grid_sample(feature, motion.deformation)
        b, c, d, h, w = warped.shape
        out = self.fourth(self.third(warped.view(b, c * d, h, w)))
        if motion.occlusion_map is not None:
            out = out * motion.occlusion_map
        return out
