"""``vcam track``: how well the tracker follows a face in a clip or camera, for diagnosis.

Writes one record per frame (the driving crop in source pixels, eye and lip ratios, head pose
from the face mesh, tracking time) and sums it up in one line: share of frames with a usable
face, crop-centre jitter (median |second difference| of the centre, in % of the crop side) and
median tracking time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import VcamError
from .fileio import atomic_write_text
from .tracking import FaceTracker


@dataclass(frozen=True)
class TrackSummary:
    frames: int
    found_percent: float
    jitter_percent: float | None  # None: fewer than three consecutive frames with a face
    median_ms: float

    def line(self) -> str:
        jitter = f"{self.jitter_percent:.2f} % of the crop" if self.jitter_percent is not None else "n/a"
        return (
            f"{self.frames} frame{'s' if self.frames != 1 else ''}: face found in {self.found_percent:.1f} %, crop jitter {jitter}, "
            f"tracking {self.median_ms:.1f} ms per frame (median)"
        )


def open_source(source: str) -> tuple[cv2.VideoCapture, float]:
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        raise VcamError(f"cannot open {source}: give a video file, an image or a camera index")
    fps = capture.get(cv2.CAP_PROP_FPS)
    return capture, fps if fps and fps > 0 else 30.0


def track_frames(frames: Iterable[np.ndarray], fps: float, tracker: FaceTracker, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Track each BGR frame of the iterable; one JSON-ready record per frame."""
    for index, image in enumerate(frames):
        if limit is not None and index >= limit:
            break
        t = index / fps
        start = time.perf_counter()
        result = tracker.update(image, t)
        ms = (time.perf_counter() - start) * 1000
        face = result.face if result.face_found else None
        box = result.box
        yield {
            "t": round(t, 4),
            "face": face is not None,
            "box": [round(box.cx, 2), round(box.cy, 2), round(box.size, 2), round(box.angle, 3)] if box else None,
            "eye_open": [round(v, 4) for v in face.eye_open] if face else None,
            "lip_open": round(face.lip_open, 4) if face else None,
            "pitch": round(face.pose[0], 2) if face else None,
            "yaw": round(face.pose[1], 2) if face else None,
            "roll": round(face.pose[2], 2) if face else None,
            "ms": round(ms, 3),
        }


def summarize(records: list[dict[str, Any]]) -> TrackSummary:
    if not records:
        raise VcamError("no frames could be read from the source")
    found = [r["face"] for r in records]
    jitters = []
    for a, b, c in zip(records, records[1:], records[2:]):
        if a["face"] and b["face"] and c["face"]:
            centres = np.array([r["box"][:2] for r in (a, b, c)])
            jitters.append(np.linalg.norm(centres[0] - 2 * centres[1] + centres[2]) / b["box"][2])
    return TrackSummary(
        frames=len(records),
        found_percent=100.0 * sum(found) / len(found),
        jitter_percent=100.0 * float(np.median(jitters)) if jitters else None,
        median_ms=float(np.median([r["ms"] for r in records])),
    )


def _read(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, image = capture.read()
        if not ok:
            return
        yield image


def run_track(source: str, json_path: Path | None, frames: int | None, tracker: FaceTracker | None = None) -> TrackSummary:
    capture, fps = open_source(source)
    records: list[dict[str, Any]] = []
    try:
        for record in track_frames(_read(capture), fps, tracker or FaceTracker(), frames):
            records.append(record)
    except KeyboardInterrupt:  # a camera runs until Ctrl-C: keep what was tracked
        pass
    finally:
        capture.release()
    summary = summarize(records)
    if json_path is not None:
        atomic_write_text(json_path, json.dumps({"frames": records}))
    return summary
