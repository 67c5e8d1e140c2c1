#!/usr/bin/env python3
"""Motion stream bandwidth against H.264 on the same face crops, and the render error of quantising.

    python benchmarks/stream_motion.py --out /tmp/carphone-motion.npz
    python benchmarks/stream_bench.py --motion /tmp/carphone-motion.npz --json benchmarks/results/stream-carphone.json

Bandwidth: every frame's motion packed as vcam sends it (10-byte header + body + 10-byte tag;
a delta frame referring back ``distance`` frames, a key frame every 2 s), at several
quantisation levels, in bytes per frame and kbit/s at 30 fps. H.264: ffmpeg's libx264 on the
same 256² crops, tuned for calls (``-preset veryfast -tune zerolatency``, no B-frames, one
keyframe every 2 s like the motion stream) at several CRFs, with PSNR/SSIM against the crops.
IP/UDP headers (28 bytes a packet) are left out of both.

Render error: a few frames rendered by LivePortrait's full-size network with *seeded random
weights* on the CPU from the exact motion and from the quantised motion, mean |Δ| in levels of
255 (scale renormalised, see ``render_error``). Also the largest keypoint displacement quantising causes, in pixels of the 256² crop, for a
LivePortrait-like scale of 1.7 (independent of the weights).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vcam.models import LIVEPORTRAIT, build_model, geometry  # noqa: E402
from vcam.profiles import ProfileStore  # noqa: E402
from vcam.render.torch_backend import TorchRenderer  # noqa: E402
from vcam.stream import codec  # noqa: E402
from vcam.stream.motion_vector import vector_to_motion  # noqa: E402
from vcam.stream.packet import HEADER, TAG_SIZE  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FPS = 30.0
KEY_EVERY = 60
OVERHEAD = HEADER.size + TAG_SIZE


def stream_sizes(vectors: np.ndarray, level: int, distance: int) -> list[int]:
    q = [codec.quantise(v, codec.Quantiser(), level) for v in vectors]
    sizes = []
    for i, frame in enumerate(q):
        delta = i >= distance and i % KEY_EVERY
        body = codec.encode(frame, q[i - distance], distance) if delta else codec.encode(frame)
        sizes.append(len(body) + OVERHEAD)
    return sizes


def h264(crops: np.ndarray, crf: int) -> dict[str, float]:
    n, h, w, _ = crops.shape
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "crops.264"
        encode = ["ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}", "-r", str(FPS), "-i", "-",
                  "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-crf", str(crf), "-bf", "0",
                  "-g", str(KEY_EVERY), "-pix_fmt", "yuv420p", "-f", "h264", str(out)]
        subprocess.run(encode, input=crops.tobytes(), check=True)
        size = out.stat().st_size
        decode = ["ffmpeg", "-v", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "bgr24", "-"]
        decoded = np.frombuffer(subprocess.run(decode, capture_output=True, check=True).stdout, np.uint8).reshape(n, h, w, 3)
    from skimage.metrics import structural_similarity

    mse = np.mean((decoded.astype(np.float64) - crops) ** 2)
    ssim = np.mean([structural_similarity(a, b, channel_axis=2) for a, b in zip(crops, decoded)])
    return {"crf": crf, "bytes_per_frame": size / n, "kbit_s": 8 * size / n * FPS / 1000,
            "psnr_db": 10 * math.log10(255**2 / mse), "ssim": float(ssim)}


def keypoint_error_px(vectors: np.ndarray, level: int, scale: float = 1.7) -> float:
    """Largest keypoint displacement from quantising, in 256² crop pixels, at a LivePortrait-like scale."""
    x_c = torch.rand(1, LIVEPORTRAIT.num_kp, 3) * 1.2 - 0.6
    worst = 0.0
    for v in vectors:
        v = v.copy()
        v[6] = math.log(scale)
        exact = vector_to_motion(v)
        approx = vector_to_motion(codec.dequantise(codec.quantise(v, codec.Quantiser(), level), codec.Quantiser()))
        a = geometry.transform_keypoints(x_c, exact.R, exact.t, exact.exp, exact.scale, LIVEPORTRAIT.convention)
        b = geometry.transform_keypoints(x_c, approx.R, approx.t, approx.exp, approx.scale, LIVEPORTRAIT.convention)
        worst = max(worst, float((a - b)[..., :2].abs().max()) * 128)
    return worst


def render_error(vectors: np.ndarray, levels: list[int], frames: list[int]) -> dict[str, float]:
    """Mean |Δ| of the render from quantised motion against the render from exact motion, per
    level, and (to show the render does follow the motion) between consecutive exact frames.

    With seeded weights the clip's first frame, the neutral reference, reads a scale near zero,
    so the relative scale explodes (~1e5) and every keypoint leaves the picture: the render then
    ignores the motion (it measures 0.0). The scale is therefore renormalised to the size of the
    keyframe's own (|scale_s|: the seeded network reads it negative, which would mirror the face;
    its frame-to-frame change kept); rotation, translation and expression are the clip's.
    """
    torch.set_num_threads(2)
    renderer = TorchRenderer(build_model(LIVEPORTRAIT, seed=0), "cpu")
    profile = ProfileStore(REPO / "profiles").load("default")
    source = renderer.prepare_source(profile.face_crop(LIVEPORTRAIT.input_size))
    vectors = vectors.copy()
    vectors[:, 6] += math.log(abs(float(source.scale_s))) - np.median(vectors[:, 6])
    errors: dict[str, list[float]] = {str(level): [] for level in levels} | {"next_frame": []}
    for i in frames:
        exact = renderer.render(source, vector_to_motion(vectors[i])).astype(np.float64)
        following = renderer.render(source, vector_to_motion(vectors[i + 1]))
        errors["next_frame"].append(float(np.abs(following - exact).mean()))
        for level in levels:
            v = codec.dequantise(codec.quantise(vectors[i], codec.Quantiser(), level), codec.Quantiser())
            errors[str(level)].append(float(np.abs(renderer.render(source, vector_to_motion(v)) - exact).mean()))
        print(i, {k: round(e[-1], 3) for k, e in errors.items()}, flush=True)
    return {key: float(np.mean(e)) for key, e in errors.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--motion", type=Path, required=True, help="the output of stream_motion.py")
    parser.add_argument("--levels", type=int, nargs="*", default=[0, 4, 6, 8, 10, 12])
    parser.add_argument("--render-levels", type=int, nargs="*", default=[6, 8, 10])
    parser.add_argument("--render-frames", type=int, nargs="*", default=[10, 40, 70, 100])
    parser.add_argument("--crfs", type=int, nargs="*", default=[23, 28, 33])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    data = np.load(args.motion)
    vectors, crops = data["vectors"], data["crops"]
    results: dict[str, object] = {"frames": len(vectors), "fps": FPS, "header_and_tag_bytes": OVERHEAD}
    stream = []
    for level in args.levels:
        for distance in (1, 3):
            sizes = stream_sizes(vectors, level, distance)
            stream.append({"level": level, "distance": distance, "bytes_per_frame": float(np.mean(sizes)),
                           "kbit_s": 8 * float(np.mean(sizes)) * FPS / 1000, "key_bytes": sizes[0],
                           "keypoint_error_px": keypoint_error_px(vectors, level)})
            print(json.dumps(stream[-1]))
    results["vcam"] = stream
    results["h264"] = [h264(crops, crf) for crf in args.crfs]
    for row in results["h264"]:  # type: ignore[union-attr]
        print(json.dumps(row))
    start = time.monotonic()
    results["render_mean_abs_diff"] = render_error(vectors, args.render_levels, args.render_frames)
    results["render_note"] = f"LivePortrait full size, seeded random weights (seed 0), CPU, frames {args.render_frames}, {time.monotonic() - start:.0f} s"
    print(json.dumps(results["render_mean_abs_diff"]), results["render_note"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
