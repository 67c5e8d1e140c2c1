"""Choosing a backend: ``auto`` takes the fastest one that works here and says which and why."""

from __future__ import annotations

from pathlib import Path

from vcam.errors import VcamError
from vcam.models import TalkingHeadModel

from .base import Renderer
from .registry import Target, candidates


def select_renderer(
    kind: str, model: TalkingHeadModel, engines_dir: Path, weights_id: str, precision: str = "fp16",
    options: frozenset[str] = frozenset(),
) -> tuple[Renderer, str]:
    """The renderer ``kind`` asks for and a line saying which it is and why.

    ``auto`` tries the registered backends in order (tensorrt with plans built here for these
    weights, torch on CUDA, onnxruntime when an ONNX export exists, torch on the CPU) and names why
    it passed over each faster one ("torch-cpu: no CUDA device; tensorrt not installed"). A setting
    that several backends share (``torch``) takes the first that can run. A kind that cannot run
    here raises :class:`VcamError` with the reason and the fix. ``precision`` applies to backends
    that render in several; the CPU backends render in float32.
    """
    backends = candidates(kind)
    target = Target(model, engines_dir, weights_id, precision, options)
    passed_over: list[str] = []
    first_fix = ""
    for backend in backends:
        option = backend.availability(target)
        if option.make is None:
            passed_over.append(option.reason)
            first_fix = first_fix or f"{backend.name} renderer cannot run here: {option.reason} — {option.fix}"
            continue
        if kind != "auto":
            return option.make(), f"{backend.name}: {option.reason}"
        try:
            renderer = option.make()
        except VcamError as exc:
            passed_over.append(f"{backend.name} failed: {exc}")
            continue
        # The last backend is the fallback: its line says why the faster ones were passed over.
        reasons = passed_over if backend is backends[-1] and passed_over else [option.reason, *passed_over]
        return renderer, f"{backend.name}: {'; '.join(dict.fromkeys(reasons))}"
    if kind != "auto":
        raise VcamError(f"the {first_fix}")
    raise VcamError(f"no renderer can run here: {'; '.join(dict.fromkeys(passed_over))}")
