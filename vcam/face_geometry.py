"""What the 468-point face mesh says about the face: LivePortrait's crop, eye and lip openness, gaze, head pose.

LivePortrait computes these on its own landmark layouts (InsightFace's 106 points for the source
crop, its 203-point model for driving crops and the eye/lip ratios). The mesh indices standing in
for them, by what the points are on the face (subject's right eye = the eye on the image's left):

- eye centres (``parse_pt2_from_pt203`` points 0, 6, 12, 18 and 24, 30, 36, 42: both corners and
  the middle of both lids of each eye): mesh 33, 159, 133, 145 and 362, 386, 263, 374;
- lip centre (points 48 and 66, the mouth corners): mesh 61 and 291;
- the landmark box (the extent of all 106 / 203 points: jaw line from temple to chin, eyebrows,
  eyes, nose, lips): the mesh's jaw line 127 … 152 … 356, both eyebrows, eyes, nose and lips —
  the mesh's forehead points are left out, LivePortrait's layouts have none;
- eye openness (``calc_eye_close_ratio``: |6 − 18| / |0 − 12| and |30 − 42| / |24 − 36|, lid
  gap over eye width): mesh |159 − 145| / |33 − 133| and |386 − 374| / |362 − 263|;
- lip openness (``calc_lip_close_ratio``: |90 − 102| / |48 − 66|, inner-lip gap over mouth
  width): mesh |13 − 14| / |61 − 291|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RIGHT_EYE = (33, 159, 133, 145)  # outer corner, upper lid, inner corner, lower lid
LEFT_EYE = (362, 386, 263, 374)  # inner corner, upper lid, outer corner, lower lid
MOUTH_CORNERS = (61, 291)
INNER_LIPS = (13, 14)
JAW = (127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454, 356)
BROWS = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 336, 296, 334, 293, 300, 285, 295, 282, 283, 276)
NOSE = (1, 2, 4, 5, 6, 98, 327, 168, 197, 195)
LIPS = (0, 17, 37, 267, 84, 314, 78, 308, 13, 14) + MOUTH_CORNERS
CROP_POINTS = np.array(JAW + BROWS + RIGHT_EYE + LEFT_EYE + NOSE + LIPS)
"""The mesh points whose box LivePortrait's crop rule measures (see the module docstring)."""

SOURCE_SCALE, SOURCE_SHIFT_Y = 2.3, -0.125
DRIVING_SCALE, DRIVING_SHIFT_Y = 2.2, -0.1
"""LivePortrait's crop: side = scale x the landmark box, centre moved by shift_y x side along the
face's up-down axis (negative = towards the forehead). The source (keyframe) crop is rotated so
the eyes are level; driving crops are not (LivePortrait crops driving frames axis-aligned, so the
motion network sees the head's roll)."""

FOREHEAD, CHIN, RIGHT_CHEEK, LEFT_CHEEK = 10, 152, 234, 454
EYEBALL_RADIUS = 0.42
"""Eyeball radius as a share of the eye's width (about 12 mm for a 28 mm wide eye)."""


@dataclass(frozen=True)
class CropRect:
    """A square crop: centre, side (frame pixels) and angle (degrees; the crop's x axis direction in the image,
    positive = clockwise on screen, so rendering it upright levels a head tilted that way)."""

    cx: float
    cy: float
    size: float
    angle: float = 0.0


def crop_rect(points: np.ndarray, scale: float, shift_y: float, rotate: bool) -> CropRect:
    """LivePortrait's crop rule (``parse_rect_from_landmark`` with ``use_lip``) applied to mesh points (468, 2+)."""
    eyes = (points[list(RIGHT_EYE), :2].mean(0) + points[list(LEFT_EYE), :2].mean(0)) / 2
    lip = points[list(MOUTH_CORNERS), :2].mean(0)
    down = lip - eyes
    length = float(np.linalg.norm(down))
    down = down / length if length > 1e-3 else np.array([0.0, 1.0])
    across = np.array([down[1], -down[0]])
    axes = np.stack([across, down])
    box_points = points[CROP_POINTS, :2]
    mean = box_points.mean(0)
    local = (box_points - mean) @ axes.T
    lo, hi = local.min(0), local.max(0)
    side = float(max(hi - lo)) * scale
    centre = mean + ((lo + hi) / 2) @ axes + down * shift_y * side
    if not rotate:
        return CropRect(float(centre[0]), float(centre[1]), side, 0.0)
    return CropRect(float(centre[0]), float(centre[1]), side, math.degrees(math.atan2(across[1], across[0])))


def _ratio(points: np.ndarray, a: int, b: int, c: int, d: int) -> float:
    return float(np.linalg.norm(points[a, :2] - points[b, :2]) / (np.linalg.norm(points[c, :2] - points[d, :2]) + 1e-6))


def eye_open(points: np.ndarray) -> tuple[float, float]:
    """LivePortrait's eye-open ratio of the eye on the image's left, then right (lid gap / eye width)."""
    o, u, i, l = RIGHT_EYE
    i2, u2, o2, l2 = LEFT_EYE
    return _ratio(points, u, l, o, i), _ratio(points, u2, l2, i2, o2)


def lip_open(points: np.ndarray) -> float:
    """LivePortrait's lip-open ratio (inner-lip gap / mouth width); about 0 for a closed mouth."""
    return _ratio(points, *INNER_LIPS, *MOUTH_CORNERS)


def head_pose(points: np.ndarray) -> tuple[float, float, float]:
    """(pitch, yaw, roll) in degrees from the mesh's own 3-D geometry: pitch and yaw from the
    cheek-to-cheek and forehead-to-chin axes of the face, orthonormalised; roll from the line
    through the outer eye corners. Pitch > 0: looking up; yaw > 0: turned
    towards the image's right; roll > 0: tilted clockwise on screen. A frontal face reads a few
    degrees of pitch (the mesh's forehead sits behind its chin), so compare against a neutral frame."""
    x = points[LEFT_CHEEK] - points[RIGHT_CHEEK]
    y = points[CHIN] - points[FOREHEAD]
    x = x / np.linalg.norm(x)
    y = y - (y @ x) * x
    y = y / np.linalg.norm(y)
    pitch = -math.degrees(math.asin(float(np.clip(y[2], -1, 1))))
    yaw = math.degrees(math.asin(float(np.clip(x[2], -1, 1))))
    eyes = points[LEFT_EYE[2], :2] - points[RIGHT_EYE[0], :2]  # outer eye corners
    roll = math.degrees(math.atan2(float(eyes[1]), float(eyes[0])))
    return pitch, yaw, roll


def gaze(points: np.ndarray, irises: np.ndarray) -> tuple[float, float]:
    """(pitch, yaw) of the eyes relative to the face, degrees, averaged over both eyes: the iris
    centre's offset from the middle of the eye's corners, as an angle on an eyeball of
    EYEBALL_RADIUS x the eye width. Pitch > 0: looking up; yaw > 0: looking towards the image's right."""
    angles = []
    for (outer, _, inner, _), iris in zip((RIGHT_EYE, (LEFT_EYE[2], 0, LEFT_EYE[0], 0)), irises):
        a, b = points[outer, :2], points[inner, :2]
        across = (b - a) if b[0] >= a[0] else (a - b)
        width = float(np.linalg.norm(across))
        across = across / width
        down = np.array([-across[1], across[0]])
        offset = (iris - (a + b) / 2) / (EYEBALL_RADIUS * width)
        angles.append((-math.degrees(math.asin(float(np.clip(offset @ down, -1, 1)))),
                       math.degrees(math.asin(float(np.clip(offset @ across, -1, 1))))))
    pitch, yaw = np.mean(angles, axis=0)
    return float(pitch), float(yaw)
