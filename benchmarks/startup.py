#!/usr/bin/env python3
"""Start-up time: process start → first rendered frame, and → full speed, for a first and later starts.

Each start is a fresh Python process that loads the model, opens the renderer the way a live app
start does (``start_renderer`` with the engines folder: the quick uncompiled stand-in first, its
convolution forms found in the engines folder), prepares a source and renders one frame from a
driving crop; then, as the app does in the background, it builds the compiled renderer (whose
kernels are saved in the engines folder and found again) and renders with it: "full speed". Each process gets its own
empty torch/Triton cache folders, so a later start can only reuse what vcam keeps in the engines
folder.

With ``--app CLIP`` each start is the app itself instead: ``vcam run --realtime`` from the clip into
the null sink, timed from the process's launch to its "first frame out" and "at full speed" lines,
then stopped with Ctrl-C (SIGINT). ``--weights`` must then be an installed weights folder.

    python benchmarks/startup.py --engines /tmp/engines --starts 3 --json benchmarks/results/startup.json
    python benchmarks/startup.py --app talk.mp4 --weights ~/.local/share/vcam/weights/liveportrait --engines /tmp/engines --starts 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def frame_time_ms(renderer: Any, model: Any, crop: Any, source: Any, frames: int = 30) -> float:
    """Median milliseconds of motion + render (downloaded), as the app runs a frame."""
    times = []
    for _ in range(frames):
        began = time.perf_counter()
        renderer.render(source, model.head_motion(renderer.extract_motion(crop)))
        times.append(1000 * (time.perf_counter() - began))
    return statistics.median(times)


def one_start(args: argparse.Namespace) -> None:
    """The child: import, load, open the renderer, render one frame; print the times as JSON."""
    started = float(os.environ["VCAM_STARTUP_T0"])
    marks = {"python": time.time() - started}
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    from vcam.render.bench import load_bench_model
    from vcam.render.select import start_renderer

    marks["imports"] = time.time() - started
    model, weights_id = load_bench_model(args.model, args.weights)
    marks["model"] = time.time() - started
    quick = start_renderer("torch-cuda", model, args.engines, weights_id, args.precision)
    marks["renderer"] = time.time() - started
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (2, model.cfg.input_size, model.cfg.input_size, 3), dtype=np.uint8)
    with quick.renderer as renderer:
        source = renderer.prepare_source(crops[0])
        head = model.head_motion(renderer.extract_motion(crops[1]))
        image = renderer.render(source, head)
        marks["first frame"] = time.time() - started
        frame_ms = {"quick": frame_time_ms(renderer, model, crops[1], source)}
        # As in the app, the stand-in is still open while the compiled renderer is built.
        full = quick.full_speed() if quick.full_speed is not None else None
    steps = {"quick": getattr(quick.renderer, "startup_s", {})}
    if full is not None:
        with full:
            full.render(source, head)
            marks["full speed"] = time.time() - started
            steps["full"] = getattr(full, "startup_s", {})
            frame_ms["full"] = frame_time_ms(full, model, crops[1], source)
    gpu_peak_mib = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps({"marks": marks, "renderer_steps": steps, "frame_ms": frame_ms, "gpu_peak_mib": gpu_peak_mib, "reason": quick.reason,
                      "image_mean": float(image.mean()), "gpu": torch.cuda.get_device_name()}))


def app_start(args: argparse.Namespace, scratch: str) -> dict[str, Any]:
    """One start of the app (see the module's docstring): seconds from launch to each line."""
    weights: Path = args.weights
    profiles = args.engines / "profiles"
    if not (profiles / "default").is_dir():  # the default avatar, kept with the engines between starts like a user's
        shutil.copytree(ROOT / "profiles" / "default", profiles / "default")
    env = os.environ | {
        "TORCHINDUCTOR_CACHE_DIR": f"{scratch}/inductor", "TRITON_CACHE_DIR": f"{scratch}/triton",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "VCAM_WEIGHTS_DIR": str(weights.parent), "VCAM_MODEL": weights.name, "VCAM_ENGINES_DIR": str(args.engines),
        "VCAM_PROFILES_DIR": str(profiles), "VCAM_SETTINGS_FILE": f"{scratch}/settings.toml", "VCAM_AUDIO": "false",
    }
    command = [sys.executable, "-m", "vcam.cli", "run", "--realtime", "--source", str(args.app), "--sink", "null"]
    launched = time.monotonic()
    child = subprocess.Popen(command, env=env | {"VCAM_PRECISION": args.precision}, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    marks: dict[str, float] = {}
    lines = []
    compiles_in_background = False
    assert child.stderr is not None
    for line in child.stderr:
        lines.append(line)
        if line.startswith("vcam: renderer "):
            compiles_in_background = compiles_in_background or "in the background" in line
        if (said := re.search(r"first frame out ([\d.]+) s after start", line)) and "first frame" not in marks:
            marks["first frame"] = time.monotonic() - launched
            marks["first frame (as vcam says)"] = float(said.group(1))
            if not compiles_in_background:
                child.send_signal(signal.SIGINT)
        elif "at full speed" in line:
            marks["full speed"] = time.monotonic() - launched
            child.send_signal(signal.SIGINT)
    if child.wait() not in (0, 130) or "first frame" not in marks or (compiles_in_background and "full speed" not in marks):
        raise RuntimeError("".join(lines[-20:]) + f"the app exited with status {child.returncode} before its first frame at full speed")
    return {"marks": marks, "lines": [line.strip() for line in lines if line.startswith("vcam:")]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="liveportrait")
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--engines", type=Path, required=True)
    parser.add_argument("--starts", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--app", type=Path, metavar="CLIP", help="time the app itself, live from this clip into the null sink")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        one_start(args)
        return 0
    runs = []
    for i in range(args.starts):
        if args.app:
            with tempfile.TemporaryDirectory(prefix="vcam-startup-") as scratch:
                run = app_start(args, scratch)
            runs.append(run)
            print(f"start {i + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in run["marks"].items()) + "\n  " + "\n  ".join(run["lines"]))
            continue
        with tempfile.TemporaryDirectory(prefix="vcam-startup-") as scratch:
            env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": f"{scratch}/inductor", "TRITON_CACHE_DIR": f"{scratch}/triton",
                                "VCAM_STARTUP_T0": repr(time.time())}
            child = [sys.executable, "-X", "faulthandler", __file__, "--child", "--engines", str(args.engines), "--model", args.model, "--precision", args.precision]
            if args.weights:
                child += ["--weights", str(args.weights)]
            done = subprocess.run(child, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout + done.stderr + f"\nstart {i + 1} failed: exit status {done.returncode}", file=sys.stderr)
            return 1
        run = json.loads(done.stdout.strip().splitlines()[-1])
        runs.append(run)
        steps = "; ".join(f"{part}: " + ", ".join(f"{k} {v:.2f}" for k, v in times.items()) for part, times in run["renderer_steps"].items())
        marks = ", ".join(f"{k} {v:.2f}" for k, v in run["marks"].items())
        frames = ", ".join(f"{k} {v:.2f} ms" for k, v in run["frame_ms"].items())
        print(f"start {i + 1}: first frame after {run['marks']['first frame']:.2f} s ({marks}; renderer: {steps}; a frame: {frames}; "
              f"GPU memory peak {run['gpu_peak_mib']:.0f} MiB)\n  {run['reason']}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
