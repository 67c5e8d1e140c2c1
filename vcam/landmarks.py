"""MediaPipe's face detector, 468-point face mesh and iris models, run with LiteRT on the CPU.

Each model reads a square, rotated region of interest (:class:`Roi`) resampled to its input size;
its outputs are mapped back to frame pixels here, so callers only see frame coordinates.
Coordinates are continuous: pixel (row r, column c) covers [c, c+1) x [r, r+1).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from .landmark_models import LandmarkModels

DETECTION_SCORE = 0.5
DETECTION_IOU = 0.3
MESH_PRESENCE = 0.5
"""The face mesh's own "a face is in this region" probability below which tracking is lost."""

DETECTION_ROI_SCALE = 1.5
MESH_ROI_SCALE = 1.5
IRIS_ROI_SCALE = 2.3
"""Region sides as multiples of the detection box / landmark box / eye width (MediaPipe's values)."""

RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (362, 263)
"""Mesh indices of the eye corners (outer, inner for the subject's right eye, inner, outer for the left)."""


@dataclass(frozen=True)
class Roi:
    """A square region: centre, side (frame pixels) and the direction of its x axis in the frame
    (radians, atan2 of image coordinates: positive turns from +x towards +y, i.e. clockwise on screen)."""

    cx: float
    cy: float
    size: float
    angle: float = 0.0

    def to_roi(self, out_size: int) -> np.ndarray:
        """2x3 matrix taking continuous frame coordinates to continuous coordinates of the out_size crop."""
        a = out_size / self.size
        c, s = math.cos(self.angle), math.sin(self.angle)
        m = np.array([[c, s], [-s, c]]) * a  # rows: the region's x and y axes
        offset = np.array([out_size / 2, out_size / 2]) - m @ np.array([self.cx, self.cy])
        return np.hstack([m, offset[:, None]])

    def sample(self, image: np.ndarray, out_size: int) -> np.ndarray:
        """The region as an out_size x out_size RGB float32 image in [0, 1]; outside the frame is black."""
        m = self.to_roi(out_size)
        m[:, 2] += m[:, 0] * 0.5 + m[:, 1] * 0.5 - 0.5  # continuous → pixel-index convention of warpAffine
        crop = cv2.warpAffine(image, m, (out_size, out_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0

    def to_frame(self, points: np.ndarray, out_size: int) -> np.ndarray:
        """Points (N, 2+) in the crop's continuous coordinates → frame; a third column (depth) scales with x."""
        m = self.to_roi(out_size)
        inverse = cv2.invertAffineTransform(m)
        out = points.astype(np.float64).copy()
        out[:, :2] = points[:, :2] @ inverse[:, :2].T + inverse[:, 2]
        if points.shape[1] > 2:
            out[:, 2] = points[:, 2] * self.size / out_size
        return out


def roi_around(points: np.ndarray, scale: float, angle: float) -> Roi:
    """A square region around ``points`` (N, 2) in the frame rotated by ``angle``, side scale x their extent."""
    c, s = math.cos(angle), math.sin(angle)
    axes = np.array([[c, s], [-s, c]])  # the region's x and y axes in frame coordinates
    local = points[:, :2] @ axes.T
    lo, hi = local.min(axis=0), local.max(axis=0)
    centre = ((lo + hi) / 2) @ axes
    return Roi(float(centre[0]), float(centre[1]), float(max(hi - lo) * scale), angle)


def line_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Direction of the line a → b (radians, as :attr:`Roi.angle`)."""
    return math.atan2(float(b[1] - a[1]), float(b[0] - a[0]))


@dataclass(frozen=True)
class Detection:
    """A face box (frame pixels) with MediaPipe's six key points: eyes (subject's right, left), nose, mouth, ears."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    keypoints: np.ndarray  # (6, 2)

    @property
    def area(self) -> float:
        return (self.x1 - self.x0) * (self.y1 - self.y0)

    def roi(self) -> Roi:
        """Where the face mesh should look: MediaPipe's detection-to-region rule."""
        angle = line_angle(self.keypoints[0], self.keypoints[1])
        side = max(self.x1 - self.x0, self.y1 - self.y0) * DETECTION_ROI_SCALE
        return Roi((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2, side, angle)


LITERT_NOTICE = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
"""What LiteRT writes straight to the process's stderr when it makes its first interpreter."""


@contextlib.contextmanager
def _litert_notice_dropped() -> Iterator[None]:
    """The process's stderr (file descriptor 2) without LiteRT's notice: whatever else is written
    meanwhile, by any thread, comes out once the block is done."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True) if not line.startswith(LITERT_NOTICE)]
            if kept:
                os.write(2, b"".join(kept))


def _interpreter(path: str):  # noqa: ANN202 - LiteRT has no type stubs
    from ai_edge_litert.interpreter import Interpreter

    with _litert_notice_dropped():
        interpreter = Interpreter(model_path=path, num_threads=1)
        interpreter.allocate_tensors()
    return interpreter


class _Model:
    """One LiteRT model with one image input."""

    def __init__(self, path: str) -> None:
        self._it = _interpreter(path)
        self._input = self._it.get_input_details()[0]["index"]
        self.size = int(self._it.get_input_details()[0]["shape"][1])
        self._outputs = {d["name"]: d["index"] for d in self._it.get_output_details()}

    def run(self, image: np.ndarray) -> dict[str, np.ndarray]:
        self._it.set_tensor(self._input, image[None])
        self._it.invoke()
        return {name: self._it.get_tensor(index)[0] for name, index in self._outputs.items()}


def _anchors() -> np.ndarray:
    """Anchor centres (896, 2) of the short-range detector, in [0, 1] (SSD layout: strides 8, 16, 16, 16)."""
    centres = []
    for grid, per_cell in ((16, 2), (8, 6)):
        ys, xs = np.mgrid[0:grid, 0:grid]
        cells = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(cells, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


class FaceDetector:
    """MediaPipe's short-range face detector on the whole frame (letterboxed to 128 x 128)."""

    def __init__(self, models: LandmarkModels) -> None:
        self._model = _Model(str(models.detector))
        self._anchors = _anchors()

    def detect(self, image: np.ndarray, region: Roi | None = None) -> list[Detection]:
        """Faces in ``region`` (default: the whole frame, letterboxed), largest first. The model finds
        faces down to about a fifth of the region's side: smaller faces need a smaller region (:func:`tiles`)."""
        h, w = image.shape[:2]
        roi = region or Roi(w / 2, h / 2, float(max(h, w)))
        size = self._model.size
        tensor = roi.sample(image, size) * 2.0 - 1.0
        out = self._model.run(tensor)
        raw, logits = out["regressors"], out["classificators"][:, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100, 100)))
        keep = np.flatnonzero(scores >= DETECTION_SCORE)
        if keep.size == 0:
            return []
        boxes = raw[keep].reshape(len(keep), 8, 2) / size
        centre = self._anchors[keep] + boxes[:, 0]
        half = boxes[:, 1] / 2
        points = self._anchors[keep, None] + boxes[:, 2:]
        corners = np.concatenate([centre - half, centre + half], axis=1)
        faces = []
        for i in _weighted_nms(corners, scores[keep]):
            group, weights = i
            box = (corners[group] * weights[:, None]).sum(0) / weights.sum()
            kps = (points[group] * weights[:, None, None]).sum(0) / weights.sum()
            box_px = roi.to_frame(box.reshape(2, 2) * size, size).reshape(-1)
            kps_px = roi.to_frame(kps * size, size)
            faces.append(Detection(*map(float, box_px), float(scores[keep][group].max()), kps_px))
        return sorted(faces, key=lambda d: d.area, reverse=True)


def tiles(height: int, width: int) -> list[Roi]:
    """Square regions of half the frame's shorter side, overlapping by half, covering the frame:
    where the detector looks for faces too small to find in the whole frame."""
    side = min(height, width) / 2
    def starts(extent: int) -> list[float]:
        count = max(1, math.ceil((extent - side) / (side / 2)) + 1)
        return [min(i * side / 2, extent - side) for i in range(count)]
    return [Roi(x + side / 2, y + side / 2, side) for y in starts(height) for x in starts(width)]


def _weighted_nms(corners: np.ndarray, scores: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """MediaPipe's weighted non-maximum suppression: (members, weights) per face, best first."""
    order = np.argsort(-scores)
    groups = []
    while order.size:
        best = corners[order[0]]
        x0 = np.maximum(best[0], corners[order, 0])
        y0 = np.maximum(best[1], corners[order, 1])
        x1 = np.minimum(best[2], corners[order, 2])
        y1 = np.minimum(best[3], corners[order, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        area = (corners[order, 2] - corners[order, 0]) * (corners[order, 3] - corners[order, 1])
        iou = inter / (area[0] + area - inter + 1e-9)
        members = order[iou > DETECTION_IOU]
        members = members if members.size else order[:1]
        groups.append((members, scores[members]))
        order = order[iou <= DETECTION_IOU]
        order = order[~np.isin(order, members)]
    return groups


@dataclass(frozen=True)
class Mesh:
    """468 face landmarks (frame pixels; the third column is depth in the same units, smaller = nearer)
    and the model's probability that a face is in the region."""

    points: np.ndarray  # (468, 3)
    presence: float


class FaceMeshModel:
    """MediaPipe's 468-point face mesh on a region around the face."""

    def __init__(self, models: LandmarkModels) -> None:
        self._model = _Model(str(models.mesh))

    def run(self, image: np.ndarray, roi: Roi) -> Mesh:
        size = self._model.size
        out = self._model.run(roi.sample(image, size))
        landmarks = next(v for k, v in out.items() if v.size == 468 * 3).reshape(468, 3)
        logit = float(next(v for k, v in out.items() if v.size == 1).reshape(()))
        return Mesh(roi.to_frame(landmarks, size), 1.0 / (1.0 + math.exp(-max(min(logit, 60.0), -60.0))))

    @staticmethod
    def roi(mesh_points: np.ndarray) -> Roi:
        """Where to look in the next frame: MediaPipe's landmarks-to-region rule (eyes levelled, 1.5x the box)."""
        angle = line_angle(mesh_points[RIGHT_EYE_CORNERS[0]], mesh_points[LEFT_EYE_CORNERS[1]])
        return roi_around(mesh_points, MESH_ROI_SCALE, angle)


class IrisModel:
    """MediaPipe's iris model: the iris centre of each eye (frame pixels), from a region around the eye."""

    def __init__(self, models: LandmarkModels) -> None:
        self._model = _Model(str(models.iris))

    def centres(self, image: np.ndarray, mesh_points: np.ndarray) -> np.ndarray:
        """(2, 2): the subject's right iris centre, then the left. The model is trained on left eyes
        (image-right), so the subject's right eye is read from a mirrored region."""
        size = self._model.size
        result = []
        for corners, mirrored in ((RIGHT_EYE_CORNERS, True), (LEFT_EYE_CORNERS, False)):
            a, b = mesh_points[corners[0], :2], mesh_points[corners[1], :2]
            centre = (a + b) / 2
            roi = Roi(float(centre[0]), float(centre[1]), float(np.linalg.norm(b - a) * IRIS_ROI_SCALE), line_angle(a, b))
            crop = roi.sample(image, size)
            if mirrored:
                crop = np.ascontiguousarray(crop[:, ::-1])
            iris = next(v for k, v in self._model.run(crop).items() if v.size == 15).reshape(5, 3)[:1, :2].copy()
            if mirrored:
                iris[:, 0] = size - iris[:, 0]
            result.append(roi.to_frame(iris, size)[0, :2])
        return np.array(result)
