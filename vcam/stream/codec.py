"""The motion codec: one frame's head motion in a few dozen bytes.

What is coded is the :class:`~vcam.models.HeadMotion` the sender's motion stage hands to its
renderer (relative motion, smoothing and frontalization already applied against the shared
avatar profile), as one flat vector (:func:`vcam.stream.motion_vector.motion_to_vector`)::

    rotation     3    x, y, z of the unit quaternion (w ≥ 0, recovered from the norm)
    translation  3    t
    scale        1    ln s (a relative step: the scale's range depends on the weights)
    expression   3K   δ, the K×3 expression deformation (K = 21 for LivePortrait)
    ratios       0–2  eye-open and lip-open targets for retargeting, when the motion has them

Rotation travels as a quaternion, not as Euler degrees: the rotation to render is a composition
(keyframe pose × the user's change × the frontalization slerp), i.e. a matrix, and the model's
two Euler conventions (LivePortrait, face-vid2vid) would both need their own decomposition, with
gimbal singularities near ±90° pitch. The quaternion's vector part is convention-free and
continuous, and a uniform step Δ on it bounds the angular error by about √3·Δ rad everywhere.

Each group is quantised with its own uniform step (:class:`Quantiser`; ``level`` scales all steps
by √2 per step). A *key* frame codes the integers themselves; a *delta* frame codes the
difference from a reference frame the receiver has confirmed it holds (the transport names it
by its distance back in sequence numbers). Residuals of each group are Golomb-Rice coded with
the group's best parameter, sent as 4 bits in front of the group (:mod:`vcam.stream.bits`).

Body layout (inside the packet of :mod:`vcam.stream.packet`)::

    u8   level      quantisation level (steps × √2^level)
    u8   flags      bit 0: eye ratio present, bit 1: lip ratio present
    u8   K (key) or reference distance back from this packet's sequence number (delta, 1–255)
    bits per group: 4-bit Rice parameter, then that group's residuals, Rice coded
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .bits import MAX_K, BitReader, BitWriter, DecodeError, best_k, read_rice, write_rice

MAX_KEYPOINTS = 64
MAX_LEVEL = 20
DEFAULT_LEVEL = 8  # render within 0.2 levels of 255 of the exact motion, keypoints within 0.4 px (benchmarks/NOTES.md)
LIMIT = 1 << 30  # quantised values are kept inside ±LIMIT so a zigzag residual fits 32 bits
FLAG_EYE, FLAG_MOUTH = 1, 2


def vector_size(num_kp: int) -> int:
    return 7 + 3 * num_kp + 2


@dataclass(frozen=True)
class Quantiser:
    """Uniform steps per group at level 0; each level up multiplies them by √2."""

    rotation: float = 2.5e-5  # quaternion units (≈ 0.003° of rotation per step)
    translation: float = 6.25e-6  # keypoint-space units (the crop spans about 2); the render is most sensitive to t
    scale: float = 1e-4  # of ln s: a relative step of 0.01 %
    expression: float = 1e-4  # keypoint-space units
    ratio: float = 1 / 512

    def steps(self, num_kp: int, level: int) -> np.ndarray:
        """The step of every vector element (ratios included) at ``level``."""
        factor = math.sqrt(2.0) ** level
        groups = [(self.rotation, 3), (self.translation, 3), (self.scale, 1), (self.expression, 3 * num_kp), (self.ratio, 2)]
        return np.concatenate([np.full(n, step * factor) for step, n in groups])


@dataclass(frozen=True)
class QuantisedMotion:
    """One frame as integers: what both ends keep as prediction references."""

    values: np.ndarray  # int64, vector_size(K); absent ratios hold 0
    flags: int
    level: int
    num_kp: int

    def groups(self) -> list[np.ndarray]:
        """Rotation, translation, scale, expression, and the ratios that are present."""
        v, k3 = self.values, 3 * self.num_kp
        ratios = [v[7 + k3 + i : 8 + k3 + i] for i, flag in enumerate((FLAG_EYE, FLAG_MOUTH)) if self.flags & flag]
        return [v[0:3], v[3:6], v[6:7], v[7 : 7 + k3], *ratios]


def group_sizes(num_kp: int, flags: int) -> list[int]:
    return [3, 3, 1, 3 * num_kp] + [1 for flag in (FLAG_EYE, FLAG_MOUTH) if flags & flag]


def quantise(v: np.ndarray, quantiser: Quantiser, level: int) -> QuantisedMotion:
    num_kp = (len(v) - 9) // 3
    flags = (0 if math.isnan(v[-2]) else FLAG_EYE) | (0 if math.isnan(v[-1]) else FLAG_MOUTH)
    finite = np.nan_to_num(v, nan=0.0)
    values = np.clip(np.rint(finite / quantiser.steps(num_kp, level)), -LIMIT, LIMIT).astype(np.int64)
    return QuantisedMotion(values, flags, level, num_kp)


def dequantise(q: QuantisedMotion, quantiser: Quantiser) -> np.ndarray:
    v = q.values * quantiser.steps(q.num_kp, q.level)
    if not q.flags & FLAG_EYE:
        v[-2] = math.nan
    if not q.flags & FLAG_MOUTH:
        v[-1] = math.nan
    return v


def _write_groups(writer: BitWriter, residuals: list[np.ndarray]) -> None:
    for group in residuals:
        k = best_k(group)
        writer.write(k, 4)
        write_rice(writer, group, k)


def encode(q: QuantisedMotion, reference: QuantisedMotion | None = None, distance: int = 0) -> bytes:
    """The body of a key frame (no ``reference``) or of a delta frame against ``reference``,
    which the receiver knows as the frame ``distance`` sequence numbers back."""
    writer = BitWriter()
    if reference is None:
        header = bytes([q.level, q.flags, q.num_kp])
        residuals = q.groups()
    else:
        if not 1 <= distance <= 255 or reference.level != q.level or reference.num_kp != q.num_kp:
            raise ValueError("a delta frame needs a reference 1..255 back with the same level and keypoint count")
        header = bytes([q.level, q.flags, distance])
        ref_values = np.where(_present_mask(q), reference.values, 0)
        residuals = QuantisedMotion(q.values - ref_values, q.flags, q.level, q.num_kp).groups()
    _write_groups(writer, residuals)
    return header + writer.getvalue()


def _present_mask(q: QuantisedMotion) -> np.ndarray:
    mask = np.ones(len(q.values), dtype=bool)
    mask[-2] = bool(q.flags & FLAG_EYE)
    mask[-1] = bool(q.flags & FLAG_MOUTH)
    return mask


@dataclass(frozen=True)
class BodyHeader:
    level: int
    flags: int
    num_kp_or_distance: int


def read_header(body: bytes) -> BodyHeader:
    if len(body) < 3:
        raise DecodeError("motion body too short")
    level, flags, third = body[0], body[1], body[2]
    if level > MAX_LEVEL or flags & ~(FLAG_EYE | FLAG_MOUTH):
        raise DecodeError(f"bad level {level} or flags {flags:#x}")
    return BodyHeader(level, flags, third)


def decode(body: bytes, reference: QuantisedMotion | None = None) -> QuantisedMotion:
    """A key frame's body (no ``reference``) or a delta frame's against the frame it names."""
    head = read_header(body)
    if reference is None:
        num_kp = head.num_kp_or_distance
        if not 1 <= num_kp <= MAX_KEYPOINTS:
            raise DecodeError(f"bad keypoint count {num_kp}")
    else:
        num_kp = reference.num_kp
        if reference.level != head.level:
            raise DecodeError("delta frame and its reference differ in level")
    reader = BitReader(body[3:])
    groups = []
    for size in group_sizes(num_kp, head.flags):
        k = reader.read(4)
        if k > MAX_K:
            raise DecodeError(f"bad Rice parameter {k}")
        if reader.bits_left < size:  # every value takes at least one bit
            raise DecodeError("truncated motion body")
        groups.append(read_rice(reader, size, k))
    if reader.bits_left >= 8:
        raise DecodeError("trailing bytes after the motion body")
    values = np.zeros(vector_size(num_kp), dtype=np.int64)
    values[: 7 + 3 * num_kp] = np.concatenate(groups[:4])
    extra = iter(groups[4:])
    for i, flag in enumerate((FLAG_EYE, FLAG_MOUTH)):
        if head.flags & flag:
            values[7 + 3 * num_kp + i] = next(extra)[0]
    q = QuantisedMotion(values, head.flags, head.level, num_kp)
    if reference is not None:
        q = QuantisedMotion(values + np.where(_present_mask(q), reference.values, 0), head.flags, head.level, num_kp)
    if np.abs(q.values).max() > LIMIT:
        raise DecodeError("motion value out of range")
    return q


def check_motion(v: np.ndarray) -> None:
    """Refuse a decoded motion no sender could have meant (it would render garbage or crash)."""
    core = v[:-2]
    if not np.isfinite(core).all() or float(np.dot(v[0:3], v[0:3])) > 1.0 + 1e-6:
        raise DecodeError("rotation is not a unit quaternion")
    if abs(v[6]) > 30 or np.abs(core[3:6]).max() > 1e3 or np.abs(core[7:]).max() > 1e3:
        raise DecodeError("translation, scale or expression out of range")
    ratios = v[-2:][~np.isnan(v[-2:])]
    if ((ratios < -0.5) | (ratios > 1.5)).any():
        raise DecodeError("eye or lip ratio out of range")
