"""Face detection and a stabilised square crop box around the face.

Coordinates are continuous: pixel (row r, column c) covers [c, c+1) x [r, r+1), so a detector's
(x, y, w, h) box has its centre at (x + w/2, y + h/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import VcamError

FACE_EXPAND = 2.2
FACE_SHIFT_Y = -0.07
"""Crop side and centre shift, in units of the Haar face box, that reproduce LivePortrait's crops.

LivePortrait crops 2.3x the bounding box of its face landmarks (eyebrows to chin, jaw to jaw)
and moves the centre up by 0.125 of the crop side. OpenCV's frontal-face cascade returns a box
of about the same size but placed higher: it runs from the forehead to the lower lip. On the
bundled portrait the landmark box is about 90 px (y 88..177) and the Haar box 92 px (y 67..159),
so the same crop is 2.2 Haar boxes wide with its centre 0.07 of a box above the Haar centre.
"""

DETECT_MAX_SIDE = 320
"""Detection runs on a grayscale copy downscaled to this longest side."""

CENTRE_DEADZONE = 0.02
SIZE_DEADZONE = 0.06
"""Changes smaller than these fractions of the crop side are ignored, so detector noise on a still
face (a few pixels, and the 10 % steps of the cascade's scale pyramid) leaves the box still."""


@dataclass(frozen=True)
class CropBox:
    """A square crop: centre (cx, cy) and side, in frame pixels."""

    cx: float
    cy: float
    size: float

    def affine(self, out_size: int) -> np.ndarray:
        """2x3 matrix taking frame pixel indices to pixel indices of an out_size crop (for cv2.warpAffine)."""
        a = out_size / self.size
        return np.array(
            [
                [a, 0.0, (0.5 - self.cx + self.size / 2) * a - 0.5],
                [0.0, a, (0.5 - self.cy + self.size / 2) * a - 0.5],
            ]
        )

    def crop(self, image: np.ndarray, out_size: int) -> np.ndarray:
        """The out_size x out_size crop; parts outside the frame repeat its edge pixels."""
        return cv2.warpAffine(
            image,
            self.affine(out_size),
            (out_size, out_size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )

    def scaled(self, factor: float) -> CropBox:
        """The same box in a copy of the frame resized by factor."""
        return CropBox(self.cx * factor, self.cy * factor, self.size * factor)


class FaceDetector:
    """OpenCV's shipped frontal-face Haar cascade; returns the largest face."""

    def __init__(self, max_side: int = DETECT_MAX_SIDE) -> None:
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise VcamError(f"OpenCV's face model {path} is missing; reinstall opencv-python.")
        self._max_side = max_side

    def detect(self, image: np.ndarray) -> tuple[int, int, int, int] | None:
        """(x, y, w, h) of the largest face in frame pixels, or None."""
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        scale = min(1.0, self._max_side / max(gray.shape))
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        faces = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
        return round(x / scale), round(y / scale), round(w / scale), round(h / scale)


def face_crop_box(
    face: tuple[int, int, int, int], expand: float = FACE_EXPAND, shift_y: float = FACE_SHIFT_Y
) -> CropBox:
    """The square crop the motion networks were trained on, from a Haar face box (see FACE_EXPAND)."""
    x, y, w, h = face
    side = (w + h) / 2
    return CropBox(x + w / 2, y + h / 2 + shift_y * side, expand * side)


@dataclass(frozen=True)
class TrackResult:
    box: CropBox | None
    """The smoothed crop; the last good one while the face is merely missing; None once lost."""
    face_found: bool
    """A face was detected in this frame (or in the last detection, between scheduled ones)."""
    lost: bool
    """No face for more than lost_after frames."""


class FaceTracker:
    """Detects the face on a schedule (every frame while it is missing) and smooths its crop box.

    smoothing is the share of the remaining distance kept each frame (0 = jump at once); changes
    inside the dead-zone are ignored, so a still face gives a perfectly still box.
    """

    def __init__(
        self,
        detector: FaceDetector | None = None,
        expand: float = FACE_EXPAND,
        shift_y: float = FACE_SHIFT_Y,
        smoothing: float = 0.6,
        detect_every: int = 1,
        lost_after: int = 5,
    ) -> None:
        self._detector = detector or FaceDetector()
        self._expand = expand
        self._shift_y = shift_y
        self._smoothing = smoothing
        self._detect_every = detect_every
        self._lost_after = lost_after
        self.reset()

    def reset(self) -> None:
        self._box: CropBox | None = None
        self._frames = 0
        self._misses = 0

    def update(self, image: np.ndarray) -> TrackResult:
        due = self._frames % self._detect_every == 0 or self._misses > 0 or self._box is None
        self._frames += 1
        if not due:
            return TrackResult(self._box, True, False)
        face = self._detector.detect(image)
        if face is None:
            self._misses += 1
            if self._misses > self._lost_after:
                self._box = None
                return TrackResult(None, False, True)
            return TrackResult(self._box, False, False)
        self._misses = 0
        target = face_crop_box(face, self._expand, self._shift_y)
        self._box = target if self._box is None else self._follow(self._box, target)
        return TrackResult(self._box, True, False)

    def _follow(self, box: CropBox, target: CropBox) -> CropBox:
        """Move box towards target by (1 - smoothing) of the distance beyond the dead-zone."""
        gain = 1.0 - self._smoothing
        dx, dy = target.cx - box.cx, target.cy - box.cy
        distance = math.hypot(dx, dy)
        step = gain * max(0.0, distance - CENTRE_DEADZONE * box.size) / distance if distance else 0.0
        growth = target.size - box.size
        size_step = gain * math.copysign(max(0.0, abs(growth) - SIZE_DEADZONE * box.size), growth)
        return CropBox(box.cx + step * dx, box.cy + step * dy, box.size + size_step)
