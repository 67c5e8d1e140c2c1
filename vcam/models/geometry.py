"""Pure pose and keypoint math, in the conventions the public weights were trained with.

Rotations here act on column vectors: a keypoint x (3,) rotates to ``R @ x``; for batches of
row-vector keypoints (B, K, 3) that is ``x @ R.transpose(-1, -2)``. Names follow the paper:
``x_c`` canonical keypoints, ``R`` rotation, ``t`` translation, ``delta`` expression deformation,
``s`` scale, ``J`` Jacobians; subscripts ``s`` (source), ``d`` (driving), ``u`` (user).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import PoseConvention


def bins_to_degrees(logits: torch.Tensor, convention: PoseConvention) -> torch.Tensor:
    """Expected angle of a softmax over 3°-wide bins: E[bin] · 3 − offset. (B, bins) → (B,)."""
    index = torch.arange(logits.shape[-1], dtype=logits.dtype, device=logits.device)
    return (F.softmax(logits, dim=-1) * index).sum(-1) * 3 - convention.bin_offset


def euler_to_rotation(
    pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor, convention: PoseConvention
) -> torch.Tensor:
    """Rotation matrices (B, 3, 3) from angles in degrees: pitch about x, yaw about y, roll about z."""
    x, y, z = (a.reshape(-1) / 180 * convention.pi for a in (pitch, yaw, roll))
    one, zero = torch.ones_like(x), torch.zeros_like(x)

    def matrix(*rows: torch.Tensor) -> torch.Tensor:
        return torch.stack(rows, dim=-1).view(-1, 3, 3)

    rx = matrix(one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos())
    ry = matrix(y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos())
    rz = matrix(z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one)
    return rz @ ry @ rx if convention.order == "zyx" else rx @ ry @ rz


def transform_keypoints(
    x_c: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    delta: torch.Tensor,
    s: torch.Tensor | None,
    convention: PoseConvention,
) -> torch.Tensor:
    """Posed keypoints from canonical ones.

    face-vid2vid (paper eq. 1/3): ``x = R x_c + t + delta``.
    LivePortrait: ``x = s · (R x_c + delta) + t`` with t's z component ignored (its
    weights were trained that way; the scale multiplies the expression too).
    """
    rotated = x_c @ R.transpose(-1, -2)
    if convention.keypoints == "facevid2vid":
        return rotated + t[:, None, :] + delta
    scale = s.view(-1, 1, 1) if s is not None else 1.0
    t_xy = torch.cat([t[:, :2], torch.zeros_like(t[:, 2:])], dim=1)
    return scale * (rotated + delta) + t_xy[:, None, :]


def transform_jacobians(J_c: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Paper eq. 2/4: J = R · J_c for every keypoint. (B, K, 3, 3)."""
    return R[:, None] @ J_c


def compose_free_view(R_u: torch.Tensor, R_d: torch.Tensor, t_u: torch.Tensor, t_d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's user-controlled view: R_d → R_u · R_d and t_d → t_u + t_d."""
    return R_u @ R_d, t_u + t_d


def relative_rotation(R_s: torch.Tensor, R_d0: torch.Tensor, R_d: torch.Tensor) -> torch.Tensor:
    """The source's rotation moved by the driving head's rotation since the neutral frame.

    LivePortrait's relative mode (R_d · R_d0ᵀ · R_s for row vectors), written for column vectors.
    """
    return R_s @ R_d0.transpose(-1, -2) @ R_d


def rotation_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (B, 4) as (w, x, y, z) of rotation matrices (B, 3, 3)."""
    m = R
    trace = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    candidates = torch.stack(
        [
            torch.stack([1 + trace, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
            torch.stack([m[:, 2, 1] - m[:, 1, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]], -1),
            torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], m[:, 1, 2] + m[:, 2, 1]], -1),
            torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1),
        ],
        dim=1,
    )
    # Each candidate is 4·q·(its pivot component); pick the best-conditioned one.
    pivots = torch.stack([1 + trace, 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1)
    best = pivots.argmax(-1)
    q = candidates[torch.arange(R.shape[0]), best]
    q = F.normalize(q, dim=-1)
    return torch.where(q[:, :1] < 0, -q, q)


def quaternion_to_rotation(q: torch.Tensor) -> torch.Tensor:
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, -1).view(-1, 3, 3)


def slerp_rotation(R_a: torch.Tensor, R_b: torch.Tensor, weight: float | torch.Tensor) -> torch.Tensor:
    """Rotation ``weight`` of the way from R_a to R_b along the shortest arc (0 → R_a, 1 → R_b)."""
    qa, qb = rotation_to_quaternion(R_a), rotation_to_quaternion(R_b)
    dot = (qa * qb).sum(-1, keepdim=True)
    qb = torch.where(dot < 0, -qb, qb)
    dot = dot.abs().clamp(max=1.0)
    angle = torch.acos(dot)
    w = torch.as_tensor(weight, dtype=qa.dtype, device=qa.device)
    sin = torch.sin(angle)
    near = sin < 1e-6
    safe = torch.where(near, torch.ones_like(sin), sin)
    wa = torch.where(near, 1 - w, torch.sin((1 - w) * angle) / safe)
    wb = torch.where(near, w * torch.ones_like(sin), torch.sin(w * angle) / safe)
    return quaternion_to_rotation(F.normalize(wa * qa + wb * qb, dim=-1))


def rotation_to_euler(R: torch.Tensor, convention: PoseConvention) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`euler_to_rotation` (pitch, yaw, roll in degrees), away from gimbal lock."""
    to_deg = 180 / convention.pi
    if convention.order == "zyx":  # R = Rz Ry Rx
        yaw = torch.asin((-R[:, 2, 0]).clamp(-1, 1))
        pitch = torch.atan2(R[:, 2, 1], R[:, 2, 2])
        roll = torch.atan2(R[:, 1, 0], R[:, 0, 0])
    else:  # R = Rx Ry Rz
        yaw = torch.asin(R[:, 0, 2].clamp(-1, 1))
        pitch = torch.atan2(-R[:, 1, 2], R[:, 2, 2])
        roll = torch.atan2(-R[:, 0, 1], R[:, 0, 0])
    return pitch * to_deg, yaw * to_deg, roll * to_deg
