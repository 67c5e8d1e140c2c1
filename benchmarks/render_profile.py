#!/usr/bin/env python3
"""Where the torch CUDA backend spends a frame.

Prints the GPU time of each captured pass, every convolution of the per-frame networks timed on
its own (shape, GFLOP, ms, achieved TFLOP/s: which layers run far from the tensor cores' rate),
and the top kernels of one compiled frame.

    python benchmarks/render_profile.py --model liveportrait --precision fp16
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vcam.render.bench import load_bench_model  # noqa: E402
from vcam.render.fast import FastConv, PointwiseConv, TapConv, layer_inputs, median_ms, module_inputs  # noqa: E402
from vcam.render.torch_backend import TorchRenderer, _Autocast, _capture  # noqa: E402

NETWORKS = ("motion_extractor", "warping_module", "spade_generator")


def gpu_ms(stream: torch.cuda.Stream, step: Callable[[], object], repeats: int = 30) -> float:
    """Median GPU time of ``step`` on ``stream``, by CUDA events."""
    with torch.no_grad(), torch.cuda.stream(stream):
        return median_ms(step, cuda=True, repeats=repeats)


def conv_gflop(conv: nn.Module, out: torch.Tensor) -> float:
    """Multiply-adds ×2 the layer really does for ``out`` (channel padding included)."""
    return 2 * out.numel() * conv.weight.numel() / out.shape[1] / 1e9


def layer_table(renderer: TorchRenderer, rows: int) -> None:
    """Time each convolution of the per-frame networks alone, on the input one frame feeds it."""
    nets = renderer._warp_net.inner.nets if hasattr(renderer._warp_net, "inner") else renderer._warp_net.nets
    convs = {
        f"{net}.{name}": module
        for net in NETWORKS
        for name, module in getattr(nets, net).named_modules()
        if isinstance(module, (nn.Conv2d, nn.Conv3d, FastConv, PointwiseConv, TapConv))
    }

    def one_frame() -> None:
        renderer._motion_pass()
        renderer._render_pass()

    with torch.no_grad(), torch.cuda.stream(renderer._stream):
        inputs = layer_inputs(convs, one_frame)
    results = []
    with torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False):
        for name, x in inputs.items():
            conv = convs[name]
            out = conv(x)
            ms = gpu_ms(renderer._stream, functools.partial(conv, x), repeats=10)
            gflop = conv_gflop(conv, out)
            results.append((ms, name, tuple(x.shape), tuple(conv.weight.shape), gflop))
    total_ms = sum(r[0] for r in results)
    by_net: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for ms, name, *_, gflop in results:
        by_net[name.split(".")[0]][0] += ms
        by_net[name.split(".")[0]][1] += gflop
    print(f"\nconvolutions alone: {len(results)} layers, {total_ms:.3f} ms, "
          f"{sum(r[4] for r in results):.0f} GFLOP")
    for net, (ms, gflop) in by_net.items():
        print(f"  {net:20s} {ms:7.3f} ms {gflop:7.1f} GFLOP {gflop / ms:6.0f} TFLOP/s")
    print(f"\n{'ms':>7} {'GFLOP':>7} {'TFLOP/s':>7}  layer  input → weight")
    for ms, name, shape, weight, gflop in sorted(results, reverse=True)[:rows]:
        print(f"{ms:7.3f} {gflop:7.2f} {gflop / ms:7.0f}  {name}  {shape} → {weight}")


def module_table(renderer: TorchRenderer, compile_mode: str | None) -> None:
    """GPU time of each part of a frame, each compiled and captured on its own like the frame.

    Warping is the whole warping network (dense motion included); "warp" is its remainder.
    """
    def unwrap(module: nn.Module) -> nn.Module:
        return getattr(module, "inner", module)  # the graph inside _Autocast

    nets = unwrap(renderer._warp_net).nets
    dtype = getattr(renderer._warp_net, "dtype", torch.float32)
    parts = {
        "motion extractor + keypoint math": unwrap(renderer._motion_net),
        "keypoints + retargeting + stitching": renderer._drive,
        "dense motion": nets.warping_module.dense_motion_network,
        "warping network": nets.warping_module,
        "generator": nets.spade_generator,
    }

    def one_frame() -> None:
        renderer._motion_pass()
        renderer._render_pass()

    with torch.no_grad(), torch.cuda.stream(renderer._stream):
        inputs = module_inputs(parts, one_frame)
    times = {}
    for name, module in parts.items():
        wrapped: nn.Module = module if name.startswith("keypoints") or dtype == torch.float32 else _Autocast(module, dtype)
        if compile_mode is not None:
            wrapped = torch.compile(wrapped, mode=compile_mode, dynamic=False)
        args = inputs[name]
        with torch.no_grad():
            step = _capture(functools.partial(wrapped, *args), renderer._stream)
        times[name] = gpu_ms(renderer._stream, step)
    times["warp (warping network − dense motion)"] = times["warping network"] - times["dense motion"]
    print(f"\nper part, {compile_mode or 'eager'}, CUDA graphs, GPU ms:")
    for name in ("motion extractor + keypoint math", "keypoints + retargeting + stitching", "dense motion",
                 "warp (warping network − dense motion)", "generator"):
        print(f"  {name:40s} {times[name]:7.3f}")
    total = sum(times[n] for n in parts if n != "dense motion")
    print(f"  {'sum':40s} {total:7.3f}")


def kernel_table(renderer: TorchRenderer, rows: int) -> None:
    with torch.no_grad(), torch.cuda.stream(renderer._stream):
        for _ in range(3):
            renderer._motion_pass()
            renderer._render_pass()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            renderer._motion_pass()
            renderer._render_pass()
            torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=rows, max_name_column_width=100))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="liveportrait")
    parser.add_argument("--precision", default="fp16", choices=["fp16", "bf16", "fp32"])
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--rows", type=int, default=40, help="rows of the layer and kernel tables")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode of the kernel table ('none': eager)")
    parser.add_argument("--parts-only", action="store_true", help="only the per-part table")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: the profile needs a CUDA device", file=sys.stderr)
        return 1
    model, _ = load_bench_model(args.model, args.weights)
    mode = None if args.compile_mode == "none" else args.compile_mode
    if args.parts_only:
        with TorchRenderer(model, "cuda", args.precision, cuda_graphs=False) as eager:
            module_table(eager, mode)
        return 0
    with TorchRenderer(model, "cuda", args.precision, cuda_graphs=False) as eager:
        print(f"eager GPU time per pass: motion {gpu_ms(eager._stream, eager._motion_pass):.3f} ms, "
              f"render {gpu_ms(eager._stream, eager._render_pass):.3f} ms")
        layer_table(eager, args.rows)
        module_table(eager, mode)
    with TorchRenderer(model, "cuda", args.precision, compile_mode=mode) as compiled:
        print(f"\ncompiled ({mode}), CUDA graphs, GPU time per pass: motion {gpu_ms(compiled._stream, compiled._motion_step):.3f} ms, "
              f"render {gpu_ms(compiled._stream, compiled._render_step):.3f} ms")
        kernel_table(compiled, args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
