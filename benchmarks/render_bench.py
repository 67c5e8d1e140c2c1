#!/usr/bin/env python3
"""Render benchmark: per-frame latency and throughput of each backend against eager torch float32.

    python benchmarks/render_bench.py --model liveportrait --json benchmarks/results/h100.json

``run_bench`` (re-exported here from :mod:`vcam.render.bench`) is what ``vcam bench`` calls.
Without installed weights (``--weights``) the model gets seeded random weights of full size:
speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vcam.errors import VcamError  # noqa: E402
from vcam.render.bench import run_bench  # noqa: E402

__all__ = ["run_bench"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="liveportrait", help="liveportrait or facevid2vid (-demo for the small variants)")
    parser.add_argument("--backends", nargs="*", help="eager-fp32, torch-cuda:fp16, torch-cuda:bf16+compile, tensorrt:fp16, onnxruntime, torch-cpu (default: all usable here)")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--weights", type=Path, help="installed weights folder (default: random weights)")
    parser.add_argument("--engines", type=Path, default=Path("engines"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    try:
        run_bench(args.model, args.backends, args.frames, args.warmup, args.weights, args.engines, args.json)
    except VcamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
