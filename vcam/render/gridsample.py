"""Trilinear 3-D grid sampling written with gathers, for exporters that lack 5-D GridSample.

:func:`grid_sample_3d_gather` computes exactly what
``F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=False)`` computes
for 5-D input, using only elementwise ops, a reduction and one row gather: every output voxel
reads the 8 corners of the cell around its sampling point from the flattened volume and blends
them with trilinear weights; corners outside the volume get weight 0 (zero padding).
"""

from __future__ import annotations

import torch

# Corner offsets (dx, dy, dz) of a unit cell, in the (x, y, z) order of grid coordinates.
_CORNERS = tuple((k & 1, (k >> 1) & 1, (k >> 2) & 1) for k in range(8))


def grid_sample_3d_gather(volume: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample ``volume`` (B, C, D, H, W) at ``grid`` (B, d, h, w, 3) → (B, C, d, h, w).

    Grid coordinates are (x, y, z) in [-1, 1] with ``align_corners=False``; points outside
    contribute zeros. The result has ``volume``'s dtype; positions are computed in ``grid``'s dtype.
    """
    b, c, d, h, w = volume.shape
    out_size = grid.shape[1:4]
    device = grid.device
    size = torch.tensor([w, h, d], dtype=grid.dtype, device=device)
    # Voxel-centre coordinates: -1 maps to -0.5 and +1 to size - 0.5 (align_corners=False).
    pos = ((grid.reshape(b, -1, 1, 3) + 1) * size - 1) / 2  # (B, N, 1, 3)
    low = torch.floor(pos)
    frac = pos - low
    corners = torch.tensor(_CORNERS, dtype=torch.long, device=device)  # (8, 3)
    index = low.long() + corners  # (B, N, 8, 3)
    weight = torch.where(corners.bool(), frac, 1 - frac).prod(-1)  # (B, N, 8)
    limits = torch.tensor([w, h, d], dtype=torch.long, device=device)
    inside = ((index >= 0) & (index < limits)).all(-1)
    weight = weight * inside.to(weight.dtype)
    strides = torch.tensor([1, w, h * w], dtype=torch.long, device=device)
    flat_index = (torch.minimum(index.clamp(min=0), limits - 1) * strides).sum(-1)
    flat_index = flat_index + torch.arange(b, device=device).view(b, 1, 1) * (d * h * w)
    rows = volume.permute(0, 2, 3, 4, 1).reshape(b * d * h * w, c)
    corners_values = rows.index_select(0, flat_index.reshape(-1)).view(b, -1, 8, c)
    out = (corners_values * weight.unsqueeze(-1).to(volume.dtype)).sum(2)
    return out.view(b, *out_size, c).permute(0, 4, 1, 2, 3).contiguous()
