#!/usr/bin/env python3
"""Where the torch CUDA backend spends a frame: GPU time per captured pass, the depth-folding
choice per 3-D convolution, and the top kernels of one frame (with and without vcam.render.fast).

    python benchmarks/render_profile.py --model liveportrait --precision fp16
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vcam.render.bench import load_bench_model  # noqa: E402
from vcam.render.torch_backend import TorchRenderer  # noqa: E402


def gpu_ms(renderer: TorchRenderer, step: Callable[[], None], repeats: int = 50) -> float:
    times = []
    with torch.no_grad(), torch.cuda.stream(renderer._stream):
        for i in range(repeats + 5):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            if i >= 5:
                times.append(start.elapsed_time(end))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="liveportrait")
    parser.add_argument("--precision", default="fp16", choices=["fp16", "bf16", "fp32"])
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--kernels", type=int, default=30, help="rows of the kernel table")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: the profile needs a CUDA device", file=sys.stderr)
        return 1
    model, _ = load_bench_model(args.model, args.weights)
    with TorchRenderer(model, "cuda", args.precision) as renderer:
        print("3-D convolutions, ms (direct / depth-folded → chosen):")
        for name, t in sorted(renderer.conv_timings.items(), key=lambda kv: -min(kv[1].values())):
            print(f"  {name:64s} {t['direct']:7.3f} {t['folded']:7.3f} → {min(t, key=t.__getitem__)}")
        print(f"GPU time per captured pass: motion {gpu_ms(renderer, renderer._motion_step):.3f} ms, "
              f"render {gpu_ms(renderer, renderer._render_step):.3f} ms")
    for fast in (True, False):
        with TorchRenderer(model, "cuda", args.precision, cuda_graphs=False, fast=fast) as eager, torch.no_grad():
            with torch.cuda.stream(eager._stream):
                for _ in range(3):
                    eager._motion_pass()
                    eager._render_pass()
                torch.cuda.synchronize()
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    eager._motion_pass()
                    eager._render_pass()
                    torch.cuda.synchronize()
        print(f"\nkernels of one frame, {args.precision}, {'with' if fast else 'without'} vcam.render.fast:")
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=args.kernels, max_name_column_width=90))
    return 0


if __name__ == "__main__":
    sys.exit(main())
