"""How each built-in backend finds what it needs here (plans, an ONNX export, Triton) and is made.

The registry (:mod:`vcam.render.registry`) has already checked each backend's packages, CUDA and
precision before these probes run.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

import torch

from .base import Renderer
from .manifest import EngineManifest, onnx_folder
from .registry import Availability, Target

if TYPE_CHECKING:
    from .compile_cache import CompileCache
    from .torch_backend import TorchRenderer


def tensorrt(target: Target) -> Availability:
    from .engines import find_plans

    folder, reason = find_plans(target.engines_dir, target.model, target.weights_id, target.precision)
    if folder is None:
        return Availability(reason, fix="build them with `vcam engines build`")

    def make() -> Renderer:
        from .tensorrt_backend import TensorRTRenderer

        return TensorRTRenderer(target.model, folder)

    return Availability(reason, make)


def torch_cuda(target: Target) -> Availability:
    # torch.compile (Triton kernels) made the per-frame path 2.2× faster again on an H100; it
    # compiles once at start-up, and is skipped where Triton is missing. With options (vcam bench)
    # it runs only for +compile; +plain leaves out the vcam.render.fast rewrites.
    if target.options:
        compile_mode = "default" if "compile" in target.options else None
    else:
        compile_mode = "default" if importlib.util.find_spec("triton") is not None else None
    fast = "plain" not in target.options

    # The app's compiled path keeps its kernels and convolution choices in the engines folder for
    # the next start, and can start uncompiled meanwhile; bench rows (options) compile afresh.
    cached = compile_mode is not None and not target.options

    def cache() -> CompileCache:
        from .compile_cache import CompileCache, CompileKey, compile_folder

        key = CompileKey.here(torch.device("cuda", torch.cuda.current_device()), target.weights_id, target.precision)
        return CompileCache(compile_folder(target.engines_dir, target.model.cfg.name, target.precision), key)

    stand_in: TorchRenderer | None = None
    """The quick renderer, once made: the full-speed one takes over its networks."""

    def make() -> Renderer:
        from .torch_backend import TorchRenderer

        return TorchRenderer(target.model, "cuda", target.precision, compile_mode=compile_mode, fast=fast, cache=cache() if cached else None,
                             share_networks_with=stand_in)

    def quick() -> Renderer:
        from .torch_backend import TorchRenderer

        nonlocal stand_in
        # For the seconds until the compiled renderer takes over: no timing of any kind at start.
        stand_in = TorchRenderer(target.model, "cuda", target.precision, fast=fast, saved_conv_modes=cache().saved_conv_modes(), cudnn_benchmark=False)
        return stand_in

    compiled = ", torch.compile" if compile_mode else ", no Triton so no torch.compile" if not target.options else ""
    plain = "" if fast else ", without vcam.render.fast"
    return Availability(f"{torch.cuda.get_device_name()}, {target.precision}, CUDA graphs{compiled}{plain}", make, quick=quick if cached else None)


def onnxruntime(target: Target) -> Availability:
    folder = onnx_folder(target.engines_dir, target.weights_id)
    manifest = EngineManifest.load(folder)
    if manifest is None or manifest.model != target.model.cfg.name:
        return Availability(f"no ONNX export of weights {target.weights_id} in {target.engines_dir}", fix="export it with `vcam engines build --onnx-only`")
    if manifest.stale:
        return Availability(f"the ONNX export of weights {target.weights_id} in {target.engines_dir} is {manifest.stale}", fix="export it again with `vcam engines build --onnx-only`")

    def make() -> Renderer:
        from .onnxruntime_backend import OnnxRuntimeRenderer

        return OnnxRuntimeRenderer(target.model, folder)

    return Availability(f"ONNX export of weights {target.weights_id} found", make)


def torch_cpu(target: Target) -> Availability:
    def make() -> Renderer:
        from .torch_backend import TorchRenderer

        return TorchRenderer(target.model, "cpu")

    return Availability("float32 on the CPU", make)
