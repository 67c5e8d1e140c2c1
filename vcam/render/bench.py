"""Render benchmark: per-frame throughput, latency, GPU memory and accuracy of each backend.

The per-frame path timed is what the pipeline runs for every camera frame: motion extraction
from the driving crop + driving keypoints (transform, retargeting, stitching) + warp + decode,
through the :class:`Renderer` API (uploads and downloads included). Every backend is compared
with plain eager torch float32 measured in the same run: speed as a ratio of medians, images as
differences in uint8 levels on the same source and head motion.
"""

from __future__ import annotations

import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from vcam.errors import VcamError
from vcam.fileio import atomic_write_text
from vcam.models import CONFIGS, HeadMotion, SourceState, TalkingHeadModel, build_model, config_by_name

from .base import Renderer
from .registry import Target, backends
from .select import select_renderer
from .torch_backend import TorchRenderer

BASELINE = "eager-fp32"


@dataclass
class BenchResult:
    """One backend's row: per-frame timing, memory, and its distance from eager float32."""

    backend: str
    model: str
    crop: int
    output: int
    frames: int
    setup_s: float
    median_ms: float
    p90_ms: float
    fps: float
    gpu_mib: float | None  # peak torch allocation; for tensorrt, device memory taken (it allocates outside torch)
    speedup: float | None  # eager float32 median / this median
    max_abs_diff: int | None  # uint8 levels, against eager float32 on the same source and head
    mean_abs_diff: float | None
    psnr_db: float | None
    pose_diff_deg: float | None  # max |pitch, yaw, roll − eager float32|
    note: str = ""


def _renderer(spec: str, model: TalkingHeadModel, engines_dir: Path, weights_id: str) -> tuple[Renderer, str]:
    """``eager-fp32``, or ``BACKEND[:PRECISION][+OPTION…]`` (``torch-cuda:fp16+compile``, ``tensorrt:fp16``…).

    Options are the backend's own (:attr:`Backend.options`): torch-cuda's ``+compile`` adds
    torch.compile, ``+plain`` leaves out the :mod:`vcam.render.fast` rewrites.
    """
    if spec == BASELINE:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return TorchRenderer(model, device, "fp32", channels_last=False, cuda_graphs=False, fast=False), f"plain eager torch float32 on {device}"
    kind, _, options = spec.partition(":")
    precision, *flags = (options or "fp16").split("+")
    return select_renderer(kind, model, engines_dir, weights_id, precision, frozenset(flags))


def default_backends(engines_dir: Path, model: TalkingHeadModel, weights_id: str) -> list[str]:
    """The eager baseline and, for every registered backend that can run here, each precision it
    has benchmarked by default (:attr:`Backend.bench`)."""
    specs = [BASELINE]
    for backend in backends():
        for precision in backend.bench:
            if backend.availability(Target(model, engines_dir, weights_id, precision)).make is not None:
                specs.append(backend.name if len(backend.precisions) == 1 else f"{backend.name}:{precision}")
    return specs


def _crops(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8), rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def frame_counts(cuda: bool) -> tuple[int, int]:
    """(timed frames, warm-up frames) per backend when the user names none: a GPU renders a frame in
    milliseconds, a CPU takes about a second per frame of the full model, so it gets fewer."""
    return (100, 10) if cuda else (12, 2)


FrameProgress = Callable[[int, int], None]
"""Called with (frames done, frames in all) while a backend is measured."""


@dataclass
class TerminalFrameProgress:
    """One line redrawn in place: "bench: eager-fp32 [#####.......] 5/14 frames, 9 s left"."""

    label: str
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    redraw_every: float = 0.1
    _started: float | None = field(default=None, init=False)
    _last_draw: float = field(default=float("-inf"), init=False)

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self._started is None or done == 0:
            self._started = now
        if done < total and now - self._last_draw < self.redraw_every:
            return
        self._last_draw = now
        width = 20
        filled = width * done // max(total, 1)
        left = f", {(now - self._started) / done * (total - done):.0f} s left" if 0 < done < total else ""
        end = "\n" if done >= total else ""
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} frames{left}\x1b[K{end}")
        self.stream.flush()


def _measure(
    renderer: Renderer, source_crop: np.ndarray, driving_crop: np.ndarray, head: HeadMotion, frames: int, warmup: int,
    progress: FrameProgress | None = None,
) -> list[float]:
    source = renderer.prepare_source(source_crop)
    times = []
    for i in range(warmup + frames):
        start = time.perf_counter()
        renderer.extract_motion(driving_crop)
        renderer.render(source, head)
        if i >= warmup:
            times.append(time.perf_counter() - start)
        if progress is not None:
            progress(i + 1, warmup + frames)
    return times


def _gpu_used() -> int:
    free, total = torch.cuda.mem_get_info()
    return total - free


@dataclass
class Reference:
    """Eager float32's results on the shared inputs, once measured."""

    image: np.ndarray
    pose: torch.Tensor
    median_ms: float


def bench_backend(
    spec: str, model: TalkingHeadModel, engines_dir: Path, weights_id: str, crops: tuple[np.ndarray, np.ndarray],
    source: SourceState, head: HeadMotion, frames: int, warmup: int, reference: Reference | None,
    progress: FrameProgress | None = None,
) -> tuple[BenchResult, Reference]:
    """Time ``spec``'s per-frame path, then render ``source`` (the same for every backend) with ``head``."""
    cuda = torch.cuda.is_available()
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        used_before, allocated_before = _gpu_used(), torch.cuda.memory_allocated()
    start = time.perf_counter()
    renderer, note = _renderer(spec, model, engines_dir, weights_id)
    setup = time.perf_counter() - start
    with renderer:
        times = _measure(renderer, *crops, head, frames, warmup, progress)
        motion = renderer.extract_motion(crops[1])
        image = renderer.render(source, head)
        gpu_mib = None
        if cuda:
            torch.cuda.synchronize()
            # TensorRT allocates outside torch: count the device memory that went into use instead.
            used = _gpu_used() - used_before if renderer.name == "tensorrt" else torch.cuda.max_memory_allocated() - allocated_before
            gpu_mib = used / 2**20
    pose = torch.stack([motion.pitch, motion.yaw, motion.roll])
    median = statistics.median(times)
    result = BenchResult(
        backend=spec, model=model.cfg.name, crop=model.cfg.input_size, output=model.cfg.output_size, frames=frames,
        setup_s=setup, median_ms=median * 1e3, p90_ms=float(np.percentile(times, 90)) * 1e3, fps=len(times) / sum(times),
        gpu_mib=gpu_mib, speedup=None, max_abs_diff=None, mean_abs_diff=None, psnr_db=None, pose_diff_deg=None, note=note,
    )
    if reference is None:
        return result, Reference(image, pose, result.median_ms)
    diff = np.abs(image.astype(np.int16) - reference.image.astype(np.int16))
    mse = float((diff.astype(np.float64) ** 2).mean())
    result.speedup = reference.median_ms / result.median_ms
    result.max_abs_diff, result.mean_abs_diff = int(diff.max()), float(diff.mean())
    result.psnr_db = float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))
    result.pose_diff_deg = float((pose - reference.pose).abs().max())
    return result, reference


def format_table(results: Sequence[BenchResult]) -> str:
    header = ["backend", "model", "crop→out", "median ms", "p90 ms", "fps", "GPU MiB", "× eager fp32", "max Δ", "mean Δ", "PSNR dB", "pose Δ°"]

    def cell(value: float | int | None, fmt: str) -> str:
        return "—" if value is None else format(value, fmt)

    rows = [
        [r.backend, r.model, f"{r.crop}→{r.output}", f"{r.median_ms:.2f}", f"{r.p90_ms:.2f}", f"{r.fps:.1f}", cell(r.gpu_mib, ".0f"),
         cell(r.speedup, ".2f"), cell(r.max_abs_diff, "d"), cell(r.mean_abs_diff, ".3f"), cell(r.psnr_db, ".1f"), cell(r.pose_diff_deg, ".3f")]
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(text.ljust(w) for text, w in zip(row, widths)) for row in [header, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def environment() -> dict[str, str | int | None]:
    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()) if cuda else None,
        "tf32": f"cudnn conv {torch.backends.cudnn.allow_tf32}, matmul {torch.backends.cuda.matmul.allow_tf32}",
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def load_bench_model(model_name: str, weights_dir: Path | None, seed: int = 0) -> tuple[TalkingHeadModel, str]:
    """Installed weights when ``weights_dir`` holds some, else seeded random weights of full size."""
    from vcam import weights

    if weights_dir is not None and (weights_dir / weights.MANIFEST).is_file():
        return weights.load_model(weights_dir), weights.weights_id(weights_dir)
    cfg = config_by_name(model_name)
    if cfg is None:
        raise VcamError(f"unknown model {model_name!r}: choose {', '.join(CONFIGS)} (or any with -demo)")
    return build_model(cfg, seed=seed), f"random-{cfg.name}-seed{seed}"


def run_bench(
    model_name: str = "liveportrait",
    backends: Sequence[str] | None = None,
    frames: int | None = None,
    warmup: int | None = None,
    weights_dir: Path | None = None,
    engines_dir: Path = Path("engines"),
    json_path: Path | None = None,
    out: Callable[[str], None] = print,
    progress: Callable[[str], FrameProgress] | None = None,
) -> list[BenchResult]:
    """Benchmark ``backends`` (default: the eager float32 baseline and every backend usable here).

    Prints a table through ``out`` and, with ``json_path``, writes the results and the machine.
    Backend specs: ``eager-fp32``, ``torch-cuda:fp16``, ``torch-cuda:fp16+compile``, ``torch-cuda:fp16+plain``, ``tensorrt:fp16``,
    ``onnxruntime``, ``torch-cpu``. The baseline always runs first. ``frames``/``warmup`` default to
    :func:`frame_counts` for this machine; ``progress`` makes a per-backend frame progress callback.
    """
    default_frames, default_warmup = frame_counts(torch.cuda.is_available())
    frames = default_frames if frames is None else frames
    warmup = default_warmup if warmup is None else warmup
    if frames < 1:
        raise VcamError(f"--frames must be 1 or more (got {frames})")
    model, weights_id = load_bench_model(model_name, weights_dir)
    specs = list(backends) if backends else default_backends(engines_dir, model, weights_id)
    specs = [BASELINE] + [s for s in specs if s != BASELINE]
    crops = _crops(model.cfg.input_size, seed=1)
    source_image, driving_image = (torch.from_numpy(c).permute(2, 0, 1)[None].float() / 255 for c in crops)
    with torch.no_grad():
        source = SourceState(**model.prepare_source(source_image).tensors())
        head = model.head_motion(model.extract_motion(driving_image))
    head.eye_open, head.mouth_open = 0.3, 0.2
    results: list[BenchResult] = []
    reference = None
    for spec in specs:
        out(f"bench: {spec} …")
        try:
            result, reference = bench_backend(
                spec, model, engines_dir, weights_id, crops, source, head, frames, warmup, reference,
                progress(f"bench: {spec}") if progress else None,
            )
        except VcamError as exc:
            if reference is None:
                raise
            out(f"bench: {spec} skipped: {exc}")
            continue
        results.append(result)
        out(f"bench: {spec}: median {result.median_ms:.2f} ms, p90 {result.p90_ms:.2f} ms ({result.note})")
    out(format_table(results))
    if json_path is not None:
        report = {"environment": environment(), "weights_id": weights_id, "results": [asdict(r) for r in results]}
        atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
    return results
