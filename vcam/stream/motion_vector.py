"""A :class:`~vcam.models.HeadMotion` as the flat vector the codec quantises, and back
(layout in :mod:`vcam.stream.codec`)."""

from __future__ import annotations

import math

import numpy as np
import torch

from vcam.models import HeadMotion
from vcam.models import geometry


def motion_to_vector(head: HeadMotion) -> np.ndarray:
    """The flat float64 vector of one motion (batch of one); absent ratios are NaN."""
    q = geometry.rotation_to_quaternion(head.R.detach().float().cpu())[0]
    parts = [q[1:], head.t.reshape(-1), head.scale.reshape(-1).clamp(min=1e-9).log(), head.exp.reshape(-1)]
    flat = torch.cat([p.detach().double().cpu().reshape(-1) for p in parts]).numpy()
    ratios = [math.nan if r is None else float(r) for r in (head.eye_open, head.mouth_open)]
    return np.concatenate([flat, ratios])


def vector_to_motion(v: np.ndarray) -> HeadMotion:
    """The :class:`HeadMotion` of a vector made by :func:`motion_to_vector`."""
    xyz = v[0:3]
    w = math.sqrt(max(0.0, 1.0 - float(np.dot(xyz, xyz))))
    q = torch.tensor([[w, *xyz]], dtype=torch.float32)
    q = q / q.norm()
    exp = torch.from_numpy(v[7:-2].astype(np.float32)).view(1, -1, 3)
    eye, mouth = (None if math.isnan(x) else float(x) for x in v[-2:])
    return HeadMotion(
        R=geometry.quaternion_to_rotation(q),
        t=torch.from_numpy(v[3:6].astype(np.float32)).view(1, 3),
        exp=exp,
        scale=torch.from_numpy(np.exp(v[6:7]).astype(np.float32)).view(1, 1),
        eye_open=eye,
        mouth_open=mouth,
    )
