"""Face tracking: landmarks each frame, the crop the networks were trained on, eyes, lips and gaze.

MediaPipe's face mesh follows the face from the previous frame's landmarks; the face detector
runs only when there is no face yet or the mesh says it has lost it (its face-presence score),
as MediaPipe's own pipelines do. From the landmarks come LivePortrait's crop (see
:mod:`vcam.face_geometry`), smoothed with a One-Euro filter so that landmark noise does not
become head motion, and the eye, lip and gaze measurements that drive retargeting.

Coordinates are continuous: pixel (row r, column c) covers [c, c+1) x [r, r+1).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

from . import face_geometry as geo
from .errors import VcamError
from .landmark_models import LandmarkModels, ensure_models
from .landmarks import MESH_PRESENCE, Detection, FaceDetector, FaceMeshModel, IrisModel, Mesh, tiles
from .motion import OneEuroFilter

log = logging.getLogger("vcam.tracking")

MIN_FACE_PX = 32.0
"""Faces whose landmark box is smaller than this (pixels) are too small to drive the avatar."""
MAX_YAW = 55.0
"""Beyond this head turn (degrees) the mesh and the motion networks are unreliable: the face counts as lost."""
KEYFRAME_MAX_YAW = 30.0
TILES_PER_FRAME = 2
"""While no face is tracked, how many small regions each frame searches besides the whole frame."""


@dataclass(frozen=True)
class CropBox:
    """A square crop: centre (cx, cy), side, in frame pixels, and the angle of its x axis in the frame
    (degrees, positive = clockwise on screen; 0 = upright)."""

    cx: float
    cy: float
    size: float
    angle: float = 0.0

    def affine(self, out_size: int) -> np.ndarray:
        """2x3 matrix taking frame pixel indices to pixel indices of an out_size crop (for cv2.warpAffine)."""
        a = out_size / self.size
        c, s = math.cos(math.radians(self.angle)), math.sin(math.radians(self.angle))
        m = np.array([[c, s], [-s, c]]) * a
        centre = np.array([self.cx - 0.5, self.cy - 0.5])
        offset = np.array([out_size / 2 - 0.5] * 2) - m @ centre
        return np.hstack([m, offset[:, None]])

    def crop(self, image: np.ndarray, out_size: int) -> np.ndarray:
        """The out_size x out_size crop; parts outside the frame repeat its edge pixels. A box much
        larger than out_size is resampled at about its own size first and then averaged down
        (LivePortrait likewise crops at 512 and area-resizes to 256), so fine detail does not alias."""
        side = min(round(self.size), 4 * out_size)
        if side < 1.5 * out_size:
            side = out_size
        crop = cv2.warpAffine(
            image, self.affine(side), (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        return crop if side == out_size else cv2.resize(crop, (out_size, out_size), interpolation=cv2.INTER_AREA)

    def scaled(self, factor: float) -> CropBox:
        """The same box in a copy of the frame resized by factor."""
        return CropBox(self.cx * factor, self.cy * factor, self.size * factor, self.angle)

    @property
    def axis_aligned_shrink(self) -> float:
        """How much smaller (1/x) the largest upright square inside this box is."""
        r = math.radians(self.angle)
        return abs(math.cos(r)) + abs(math.sin(r))


@dataclass(frozen=True)
class FaceMeasures:
    """What the landmarks of one frame say (LivePortrait's ratio definitions, degrees)."""

    eye_open: tuple[float, float]  # the eye on the image's left, then right
    lip_open: float
    pose: tuple[float, float, float]  # pitch, yaw, roll of the head (from the mesh)
    gaze: tuple[float, float] | None  # pitch, yaw of the eyes relative to the head (None: not measured)


@dataclass(frozen=True)
class TrackResult:
    box: CropBox | None
    """The smoothed crop; the last good one while the face is merely missing; None once lost."""
    face_found: bool
    """A usable face is in this frame."""
    lost: bool
    """No face for more than lost_after frames."""
    face: FaceMeasures | None = None
    """This frame's measurements (None without a usable face)."""


@dataclass(frozen=True)
class FaceReading:
    """One frame's landmarks and what they give."""

    mesh: Mesh
    irises: np.ndarray | None  # (2, 2), when the gaze was measured
    measures: FaceMeasures
    problem: str | None  # why the face cannot drive the avatar (too small, turned away), else None


class FaceLandmarker:
    """The three MediaPipe models together: find a face, follow it, read its landmarks."""

    def __init__(self, models: LandmarkModels | None = None) -> None:
        models = models or ensure_models()
        self.detector = FaceDetector(models)
        self.mesh = FaceMeshModel(models)
        self.iris = IrisModel(models)
        self.faces_in_last_detection = 0
        self._next_tile = 0

    def find(self, image: np.ndarray, tiles_per_call: int | None = None) -> Mesh | None:
        """Detect the largest face and read its mesh (None: no face). The whole frame is searched
        first (largest face first); if it shows no face, ``tiles_per_call`` of the smaller :func:`tiles` (in turn, so a
        stream covers them all within a few frames; None: all of them now) are searched for small faces,
        most confident first."""
        faces = self.detector.detect(image)
        if not faces:
            regions = tiles(*image.shape[:2])
            count = len(regions) if tiles_per_call is None else min(tiles_per_call, len(regions))
            for _ in range(count):
                faces += self.detector.detect(image, regions[self._next_tile % len(regions)])
                self._next_tile += 1
            faces = _distinct(sorted(faces, key=lambda d: d.score, reverse=True))  # tiles see more false faces
        self.faces_in_last_detection = len(faces)
        for face in faces[:3]:  # a detection the mesh does not confirm (a face cut by a tile's edge) is skipped
            mesh = self.mesh.run(image, face.roi())
            if mesh.presence >= MESH_PRESENCE:  # read again from the landmarks' own region: a tighter fit
                return self.follow(image, mesh) or mesh
        return None

    def follow(self, image: np.ndarray, previous: Mesh) -> Mesh | None:
        """The mesh in the region where the previous frame's landmarks were (None: the face left it)."""
        mesh = self.mesh.run(image, FaceMeshModel.roi(previous.points))
        return mesh if mesh.presence >= MESH_PRESENCE else None

    def read(self, image: np.ndarray, mesh: Mesh, gaze: bool = True) -> FaceReading:
        """What ``mesh`` says; the gaze (the iris model, twice) only when asked for."""
        points = mesh.points
        irises = self.iris.centres(image, points) if gaze else None
        measures = FaceMeasures(geo.eye_open(points), geo.lip_open(points), geo.head_pose(points),
                                geo.gaze(points, irises) if irises is not None else None)
        return FaceReading(mesh, irises, measures, _problem(points, measures))


def _distinct(faces: list[Detection]) -> list[Detection]:
    """Faces found in overlapping tiles, each once, in the given order."""
    kept = []
    for face in faces:
        centre = np.array([(face.x0 + face.x1) / 2, (face.y0 + face.y1) / 2])
        if all(np.linalg.norm(centre - [(k.x0 + k.x1) / 2, (k.y0 + k.y1) / 2]) > (k.x1 - k.x0) / 2 for k in kept):
            kept.append(face)
    return kept


def _problem(points: np.ndarray, measures: FaceMeasures, max_yaw: float = MAX_YAW) -> str | None:
    rect = geo.crop_rect(points, 1.0, 0.0, rotate=True)
    if rect.size < MIN_FACE_PX:
        return f"the face is too small ({rect.size:.0f} px; at least {MIN_FACE_PX:.0f} px needed)"
    yaw = measures.pose[1]
    if abs(yaw) > max_yaw:
        return f"the face is turned away ({yaw:+.0f}° yaw; at most ±{max_yaw:.0f}°)"
    return None


class FaceTracker:
    """Tracks one face over a stream of frames and smooths its driving crop.

    ``min_cutoff`` and ``beta`` tune the One-Euro filter on the crop (centre and side in units of
    the crop side, per second): lower min_cutoff = steadier when still, higher beta = less lag when moving.
    ``gaze`` measures where the eyes look (two more model runs a frame; only eye re-aim needs it).
    """

    def __init__(
        self,
        landmarker: FaceLandmarker | None = None,
        scale: float = geo.DRIVING_SCALE,
        shift_y: float = geo.DRIVING_SHIFT_Y,
        min_cutoff: float = 0.5,
        beta: float = 4.0,
        lost_after: int = 5,
        gaze: bool = True,
    ) -> None:
        self.landmarker = landmarker or FaceLandmarker()
        self.gaze = gaze
        self._scale, self._shift_y = scale, shift_y
        self._filter = OneEuroFilter(min_cutoff, beta)
        self._lost_after = lost_after
        self._said_several = False
        self.reset()

    def reset(self) -> None:
        self._mesh: Mesh | None = None
        self._box: CropBox | None = None
        self._unit = 1.0  # crop side at the start of the current track
        self._misses = 0
        self._filter.reset()

    def update(self, image: np.ndarray, t: float) -> TrackResult:
        """Track the face in ``image`` (BGR uint8) captured at ``t`` seconds."""
        reading = self._read(image)
        if reading is None or reading.problem is not None:
            self._misses += 1
            if self._misses > self._lost_after:
                self._box = None
                self._filter.reset()
                return TrackResult(None, False, True)
            return TrackResult(self._box, False, False)
        self._misses = 0
        rect = geo.crop_rect(reading.mesh.points, self._scale, self._shift_y, rotate=False)
        self._box = self._smooth(rect, t)
        return TrackResult(self._box, True, False, reading.measures)

    def _read(self, image: np.ndarray) -> FaceReading | None:
        mesh = self.landmarker.follow(image, self._mesh) if self._mesh is not None else None
        if mesh is None:
            mesh = self.landmarker.find(image, TILES_PER_FRAME)
            if self.landmarker.faces_in_last_detection > 1 and not self._said_several:
                log.info("%d faces in view: following the largest", self.landmarker.faces_in_last_detection)
                self._said_several = True
        self._mesh = mesh
        return self.landmarker.read(image, mesh, self.gaze) if mesh is not None else None

    def _smooth(self, rect: geo.CropRect, t: float) -> CropBox:
        """One-Euro filter on centre and side, measured in crop sides of the first frame of this track
        (so the tuning holds at any distance)."""
        if self._box is None:
            self._filter.reset()
            self._unit = rect.size
        x = self._filter(np.array([rect.cx, rect.cy, rect.size]) / self._unit, t) * self._unit
        return CropBox(float(x[0]), float(x[1]), float(x[2]), rect.angle)


@dataclass(frozen=True)
class KeyframeFace:
    """The keyframe's source crop (LivePortrait's source rule, eyes levelled) and its measurements."""

    box: CropBox
    eye_open: tuple[float, float]
    lip_open: float


def read_keyframe(image: np.ndarray, landmarker: FaceLandmarker | None = None) -> KeyframeFace:
    """The keyframe's face, or a VcamError saying in one line why the photo cannot be used."""
    landmarker = landmarker or FaceLandmarker()
    mesh = landmarker.find(image)
    if mesh is None:
        raise VcamError("no face found: use a well-lit, front-facing photo with one clear face")
    reading = landmarker.read(image, mesh)
    problem = _problem(mesh.points, reading.measures, KEYFRAME_MAX_YAW)
    if problem is not None:
        raise VcamError(f"{problem}: use a well-lit, front-facing photo with one clear face")
    rect = geo.crop_rect(mesh.points, geo.SOURCE_SCALE, geo.SOURCE_SHIFT_Y, rotate=True)
    m = reading.measures
    return KeyframeFace(CropBox(rect.cx, rect.cy, rect.size, rect.angle), m.eye_open, m.lip_open)
