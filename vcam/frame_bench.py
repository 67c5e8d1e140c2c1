"""End-to-end benchmark: the whole frame path as ``vcam run`` runs it, from a clip to an output.

Every row uses the same model and renderer, opened (and compiled) once, the user's settings
(backend, output size, profile) and the same clip:

- *unpaced → null*: frames as fast as the machine makes them, each one rendered and handed to a
  sink that discards it (the throughput of capture, tracking, motion, render, compose and send);
  on a GPU, first with the output composed by OpenCV on the CPU (the baseline of the ``×`` column),
  then on the GPU with one download (the app's way);
- *unpaced → mp4*: the same into an .mp4 file (OpenCV's mp4v encoder, on the CPU);
- *live → null*: the clip played at its own rate like a webcam, late frames dropped as in a call:
  capture-to-sink latency, median and p99.

Without installed weights the model has seeded random weights of full size (as ``vcam bench``):
speed does not depend on their values. Without ``source`` the clip is the profile's keyframe,
a real face, played as a still.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import torch

from .app import LoadedModel, open_renderer, pipeline_over, profile_store, weights_folder
from .capture import ClipSource
from .errors import VcamError
from .fileio import atomic_write_text
from .pipeline import Pipeline
from .render.base import Renderer
from .render.bench import environment, load_bench_model
from .settings import Settings

FRAMES = {"cuda": (300, 30), "cpu": (12, 2)}
"""(timed, warm-up) frames per row when the user names none: a CPU renders the full model in seconds."""

POLL_S = 0.005
"""How often the benchmark reads the frame count (its timing error per row is at most this)."""


@dataclass(frozen=True)
class FrameRow:
    path: str
    output: str
    frames: int
    fps: float
    speedup: float | None
    """This row's rate over the baseline row's (measured in the same run), if there is one."""
    ms_per_frame: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    stage_ms: dict[str, float]


@dataclass(frozen=True)
class Row:
    """One way of running the frame path."""

    path: str
    sink: str
    live: bool
    gpu_compose: bool = True


def rows(folder: Path, gpu: bool) -> list[Row]:
    """The rows to time; the first is the baseline of the others' speed-up."""
    baseline = [Row("unpaced → null, composed on the CPU", "null", live=False, gpu_compose=False)] if gpu else []
    return [
        *baseline,
        Row("unpaced → null", "null", live=False),
        Row("unpaced → mp4 (OpenCV mp4v encoder)", f"file:{folder / 'bench.mp4'}", live=False),
        Row("live → null", "null", live=True),
    ]


def run_frame_bench(
    settings: Settings, model_name: str, source: Path | None, frames: int | None, json_path: Path | None,
    out: Callable[[str], None] = print,
) -> list[FrameRow]:
    """Time every row of :func:`rows` with ``model_name``'s networks (installed weights, else seeded)."""
    model, weights_id = load_bench_model(model_name, weights_folder(settings))
    loaded = LoadedModel(model, weights_id, demo=False)
    renderer, reason = open_renderer(settings, loaded)
    out(f"bench: renderer {reason}")
    gpu = renderer.device.startswith("cuda")
    timed, warmup = FRAMES["cuda" if gpu else "cpu"]
    timed = frames or timed
    results = []
    with renderer, tempfile.TemporaryDirectory(prefix="vcam-bench-") as folder:
        clip = source
        if clip is None:
            clip = Path(folder) / "keyframe.png"
            cv2.imwrite(str(clip), profile_store(settings).load(settings.profile).keyframe)
        for row in rows(Path(folder), gpu):
            out(f"bench: {row.path} …")
            row_settings = settings.model_copy(update=dict(sink=row.sink, audio=False, preview=False, camera=str(clip), gpu_compose=row.gpu_compose))
            with _running(row_settings, loaded, renderer, clip, row.live) as pipeline:
                result = _measure(pipeline, row, warmup, timed, row_settings, baseline=results[0].fps if results else None)
            results.append(result)
            latency = "" if result.latency_p50_ms is None else f", latency {result.latency_p50_ms:.1f} ms median, {result.latency_p99_ms:.1f} ms p99"
            out(f"bench: {row.path}: {result.fps:.1f} fps ({result.ms_per_frame:.2f} ms a frame){latency}")
    out(format_rows(results))
    gpu_peak_mib = torch.cuda.max_memory_allocated() / 2**20 if gpu else None
    if gpu_peak_mib is not None:
        out(f"bench: GPU memory peak {gpu_peak_mib:.0f} MiB (torch's allocations: the renderer and every row)")
    if json_path is not None:
        report = {"environment": environment(), "weights_id": weights_id, "renderer": reason, "clip": str(source or "keyframe"),
                  "gpu_peak_mib": gpu_peak_mib, "results": [asdict(r) for r in results]}
        atomic_write_text(json_path, json.dumps(report, indent=2) + "\n")
    return results


@contextmanager
def _running(settings: Settings, loaded: LoadedModel, renderer: Renderer, clip: Path, live: bool) -> Iterator[Pipeline]:
    """The pipeline on ``clip``, looped: paced like a webcam when live, else as fast as it is read."""
    with ClipSource(clip, loop=True, realtime=live) as source, pipeline_over(settings, loaded, lambda: renderer, lossless=not live, source=source) as pipeline:
        yield pipeline


def _measure(pipeline: Pipeline, row: Row, warmup: int, frames: int, settings: Settings, baseline: float | None) -> FrameRow:
    """Rate over ``frames`` output frames after ``warmup`` ones."""
    pipeline.max_frames = warmup + frames
    began = counted = None
    while not pipeline.wait(timeout=POLL_S):
        done = pipeline.status().frames_out
        if began is None and done >= warmup:
            began, counted = time.perf_counter(), done
            pipeline.forget_latencies()
    ended, status = time.perf_counter(), pipeline.status()
    if status.state.value == "error" or began is None or counted is None:
        raise VcamError(f"the {row.path} run failed: {status.message or f'it ended before {warmup} frames'}")
    fps = (status.frames_out - counted) / max(ended - began, 1e-9)
    return FrameRow(
        path=row.path, output=f"{settings.output_width}x{settings.output_height}", frames=status.frames_out - counted,
        fps=fps, speedup=fps / baseline if baseline else None, ms_per_frame=1000 / fps if fps else float("inf"),
        latency_p50_ms=status.latency_p50_ms if row.live else None,
        latency_p99_ms=status.latency_p99_ms if row.live else None,
        stage_ms=dict(status.stage_ms),
    )


def format_rows(results: list[FrameRow]) -> str:
    stages = list(dict.fromkeys(name for r in results for name in r.stage_ms))
    header = ["path", "output", "frames", "fps", "× first row", "ms/frame", "latency p50", "latency p99", *(f"{s} ms" for s in stages)]

    def ms(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f}"

    table = [header] + [
        [r.path, r.output, str(r.frames), f"{r.fps:.1f}", "—" if r.speedup is None else f"{r.speedup:.2f}", f"{r.ms_per_frame:.2f}",
         ms(r.latency_p50_ms), ms(r.latency_p99_ms),
         *(ms(r.stage_ms.get(s)) for s in stages)]
        for r in results
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = [" | ".join(text.ljust(w) for text, w in zip(line, widths)) for line in table]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
