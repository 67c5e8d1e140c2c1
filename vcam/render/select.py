"""Choosing a backend: ``auto`` takes the fastest one that works here and says which and why."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vcam.errors import VcamError
from vcam.models import TalkingHeadModel

from .base import Renderer
from .compile_cache import CompileCache, CompileKey, compile_folder
from .manifest import EngineManifest, onnx_folder

KINDS = ("auto", "tensorrt", "torch", "torch-cuda", "torch-cpu", "onnxruntime")
AUTO_ORDER = ("tensorrt", "torch-cuda", "onnxruntime", "torch-cpu")


@dataclass
class Option:
    """One backend as it stands on this machine: a factory when usable, else why not and the fix."""

    reason: str
    make: Callable[[], Renderer] | None = None
    fix: str = ""


def _tensorrt(model: TalkingHeadModel, engines_dir: Path, weights_id: str, precision: str) -> Option:
    from .engines import find_plans

    folder, reason = find_plans(engines_dir, model, weights_id, precision)
    if folder is None:
        fixes = {
            "tensorrt not installed": "install it with `pip install vcam[tensorrt]` on a machine with an NVIDIA GPU",
            "no CUDA device": "TensorRT needs an NVIDIA GPU and a CUDA build of torch",
        }
        return Option(reason, fix=fixes.get(reason, "build them with `vcam engines build`"))

    def make() -> Renderer:
        from .tensorrt_backend import TensorRTRenderer

        return TensorRTRenderer(model, folder)

    return Option(reason, make)


def _torch_cuda(model: TalkingHeadModel, engines_dir: Path, weights_id: str, precision: str) -> Option:
    if not torch.cuda.is_available():
        return Option("no CUDA device", fix="use a machine with an NVIDIA GPU and a CUDA build of torch")

    # torch.compile (Triton kernels) made the per-frame path 2.2× faster again on an H100; it
    # compiles once at start-up, and is skipped where Triton is missing.
    compile_mode = "default" if importlib.util.find_spec("triton") is not None else None

    # Its kernels and convolution choices are kept in the engines folder for the next start.
    def make() -> Renderer:
        from .torch_backend import TorchRenderer

        cache = None
        if compile_mode is not None:
            key = CompileKey.here(torch.device("cuda", torch.cuda.current_device()), weights_id, precision)
            cache = CompileCache(compile_folder(engines_dir, model.cfg.name, precision), key)
        renderer = TorchRenderer(model, "cuda", precision, compile_mode=compile_mode, cache=cache)
        if cache is not None:
            option.reason += f"; {cache.status}"
        return renderer

    compiled = ", torch.compile" if compile_mode else ", no Triton so no torch.compile"
    option = Option(f"{torch.cuda.get_device_name()}, {precision}, CUDA graphs{compiled}", make)
    return option


def _onnxruntime(model: TalkingHeadModel, engines_dir: Path, weights_id: str) -> Option:
    if importlib.util.find_spec("onnxruntime") is None:
        return Option("onnxruntime not installed", fix="install it with `pip install vcam[onnx]`")
    folder = onnx_folder(engines_dir, weights_id)
    manifest = EngineManifest.load(folder)
    if manifest is None or manifest.model != model.cfg.name:
        return Option(f"no ONNX export of weights {weights_id} in {engines_dir}", fix="export it with `vcam engines build --onnx-only`")

    def make() -> Renderer:
        from .onnxruntime_backend import OnnxRuntimeRenderer

        return OnnxRuntimeRenderer(model, folder)

    return Option(f"ONNX export of weights {weights_id} found", make)


def _torch_cpu(model: TalkingHeadModel) -> Option:
    def make() -> Renderer:
        from .torch_backend import TorchRenderer

        return TorchRenderer(model, "cpu")

    return Option("float32 on the CPU", make)


def select_renderer(
    kind: str, model: TalkingHeadModel, engines_dir: Path, weights_id: str, precision: str = "fp16"
) -> tuple[Renderer, str]:
    """The renderer ``kind`` asks for and a line saying which it is and why.

    ``auto`` tries tensorrt (plans built here for these weights), torch on CUDA, onnxruntime (when
    an ONNX export exists) and torch on the CPU, in that order, and names why it passed over each
    faster one ("torch-cpu: no CUDA device; tensorrt not installed"). An explicit kind that cannot
    run here raises :class:`VcamError` with the reason and the fix. ``precision`` applies to
    tensorrt and torch on CUDA; the CPU backends render in float32.
    """
    if kind not in KINDS:
        raise VcamError(f"unknown renderer {kind!r}: choose one of {', '.join(KINDS)}")
    options: dict[str, Callable[[], Option]] = {
        "tensorrt": lambda: _tensorrt(model, engines_dir, weights_id, precision),
        "torch-cuda": lambda: _torch_cuda(model, engines_dir, weights_id, precision),
        "onnxruntime": lambda: _onnxruntime(model, engines_dir, weights_id),
        "torch-cpu": lambda: _torch_cpu(model),
    }
    if kind == "torch":
        kind = "torch-cuda" if torch.cuda.is_available() else "torch-cpu"
    if kind != "auto":
        option = options[kind]()
        if option.make is None:
            raise VcamError(f"the {kind} renderer cannot run here: {option.reason} — {option.fix}")
        return option.make(), f"{kind}: {option.reason}"
    passed_over: list[str] = []
    for name in AUTO_ORDER[:-1]:
        option = options[name]()
        if option.make is None:
            passed_over.append(option.reason)
            continue
        try:
            renderer = option.make()
        except VcamError as exc:
            passed_over.append(f"{name} failed: {exc}")
            continue
        return renderer, f"{name}: {'; '.join(dict.fromkeys([option.reason, *passed_over]))}"
    fallback = options["torch-cpu"]()
    assert fallback.make is not None
    return fallback.make(), f"torch-cpu: {'; '.join(dict.fromkeys(passed_over))}"
