#!/usr/bin/env python3
"""Paste-back benchmark: the time from a rendered image to the output frame on the host, per path
and sink pixel format, for the bundled default avatar at 1280x720 with the demo banner.

    python benchmarks/compose_bench.py [--frames 200] [--json benchmarks/results/compose.json]

``opencv``: the CPU path (download of the render as ``render`` does it, OpenCV paste-back, banner,
one conversion into the format). ``device``: :class:`vcam.device_compose.DeviceCompositor` on the
GPU from the render left there (paste-back, banner, conversion, one download); CUDA only. Each row
gives the median and 90th percentile over the frames, after warm-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vcam.app import DEMO_BANNER  # noqa: E402
from vcam.compose import Compositor, PasteLayout, draw_banner  # noqa: E402
from vcam.device_compose import DeviceCompositor  # noqa: E402
from vcam.pixel_formats import PixelFormat, from_bgr  # noqa: E402
from vcam.profiles import ProfileStore  # noqa: E402
from vcam.render.base import to_host  # noqa: E402


def timed(step: Callable[[], object], frames: int) -> tuple[float, float]:
    """Median and 90th percentile milliseconds of ``step`` over ``frames`` calls, after 10 of warm-up."""
    for _ in range(10):
        step()
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times)), float(np.percentile(times, 90))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", type=int, default=512, help="side of the rendered image")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    profile = ProfileStore(ROOT / "profiles").load("default")
    layout = PasteLayout(profile.keyframe, profile.box, (1280, 720))
    compositor = Compositor(layout)
    rendered = torch.from_numpy(cv2.cvtColor(profile.box.crop(profile.keyframe, args.size), cv2.COLOR_BGR2RGB))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda") if cuda else torch.device("cpu")
    on_device = rendered.to(device)
    gpu = DeviceCompositor(layout, device, DEMO_BANNER) if cuda else None

    def opencv(fmt: PixelFormat) -> np.ndarray:
        image = compositor.compose(cv2.cvtColor(to_host(on_device), cv2.COLOR_RGB2BGR))
        draw_banner(image, DEMO_BANNER)
        return from_bgr(image, fmt)

    rows = []
    device_name = torch.cuda.get_device_name() if cuda else "CPU"
    for fmt in PixelFormat:
        paths: dict[str, Callable[[], object]] = {"opencv": lambda fmt=fmt: opencv(fmt)}
        if gpu is not None:
            paths["device"] = lambda fmt=fmt: gpu.compose(on_device, fmt)
        for path, step in paths.items():
            median, p90 = timed(step, args.frames)
            rows.append({"path": path, "format": fmt.name, "median_ms": round(median, 3), "p90_ms": round(p90, 3), "device": device_name})
            print(f"{path:7} {fmt.name:5} median {median:6.3f} ms  p90 {p90:6.3f} ms  ({device_name}, torch {torch.__version__})", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
