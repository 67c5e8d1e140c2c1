"""Choosing a backend: ``auto`` takes the fastest one that works here and says which and why."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vcam.errors import VcamError
from vcam.models import TalkingHeadModel

from .base import Renderer
from .registry import Target, candidates


@dataclass(frozen=True)
class StartedRenderer:
    """A renderer to start with, why it was chosen, and — when it is the quick stand-in of a backend
    that compiles (see :attr:`Availability.quick`) — the slow call that builds the full-speed one."""

    renderer: Renderer
    reason: str
    full_speed: Callable[[], Renderer] | None = None


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
    started = _select(kind, Target(model, engines_dir, weights_id, precision, options), quick=False)
    return started.renderer, started.reason


def start_renderer(kind: str, model: TalkingHeadModel, engines_dir: Path, weights_id: str, precision: str = "fp16") -> StartedRenderer:
    """As :func:`select_renderer`, but a backend that compiles first gives its quick stand-in, so
    the first frame comes in seconds; the caller builds the full-speed renderer with
    :attr:`StartedRenderer.full_speed` (in the background) and swaps it in."""
    return _select(kind, Target(model, engines_dir, weights_id, precision), quick=True)


def _select(kind: str, target: Target, quick: bool) -> StartedRenderer:
    backends = candidates(kind)
    passed_over: list[str] = []
    first_fix = ""
    for backend in backends:
        option = backend.availability(target)
        if option.make is None:
            passed_over.append(option.reason)
            first_fix = first_fix or f"{backend.name} renderer cannot run here: {option.reason} — {option.fix}"
            continue
        stand_in = option.quick if quick else None
        make = stand_in or option.make
        full_speed = option.make if stand_in is not None else None
        line = f"{option.reason}; full speed once compiled in the background" if stand_in is not None else option.reason
        if kind != "auto":
            return StartedRenderer(make(), f"{backend.name}: {line}", full_speed)
        try:
            renderer = make()
        except VcamError as exc:
            passed_over.append(f"{backend.name} failed: {exc}")
            continue
        # The last backend is the fallback: its line says why the faster ones were passed over.
        reasons = passed_over if backend is backends[-1] and passed_over else [line, *passed_over]
        return StartedRenderer(renderer, f"{backend.name}: {'; '.join(dict.fromkeys(reasons))}", full_speed)
    if kind != "auto":
        raise VcamError(f"the {first_fix}")
    raise VcamError(f"no renderer can run here: {'; '.join(dict.fromkeys(passed_over))}")
