"""Every render backend, declared once: its name, precisions, whether it needs CUDA, how to probe it.

The settings (``backend``, ``precision``), the command line's ``--backend`` choices, ``auto``
selection and ``vcam bench`` all read this registry, so a new backend is one
:func:`register_backend` call (the built-in ones are at the end of this module). Registration
order is ``auto``'s order: the fastest first, the one that always works last. Nothing here
imports torch or a backend's module until a backend is probed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from vcam.errors import VcamError

if TYPE_CHECKING:
    from vcam.models import TalkingHeadModel

    from .base import Renderer

PRECISIONS = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}
"""Every precision a backend may render in, and the torch dtype it names."""


@dataclass(frozen=True)
class Target:
    """What a backend is asked to render: the model, its weights, where engines live, how precisely,
    and backend options (``vcam bench``'s ``+compile``, ``+plain``)."""

    model: TalkingHeadModel
    engines_dir: Path
    weights_id: str
    precision: str
    options: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Availability:
    """One backend as it stands on this machine: a factory when usable, else why not and the fix."""

    reason: str
    make: Callable[[], Renderer] | None = None
    fix: str = ""
    quick: Callable[[], Renderer] | None = None
    """A renderer that starts in seconds and runs slower, for the first frames while ``make``
    builds the full-speed one (None when ``make`` is already quick). ``make`` may take over what the
    stand-in prepared, such as its copy of the networks."""


@dataclass(frozen=True)
class Backend:
    """One render backend.

    ``choice`` is the ``backend`` setting that asks for it (several backends may share one: ``torch``
    is torch-cuda where CUDA works, else torch-cpu). ``packages`` maps a module it imports to the pip
    extra that installs it. ``probe`` runs only once the packages import and CUDA is there when
    ``needs_cuda``; it gets the target in a precision the backend supports. ``bench`` lists the
    precisions ``vcam bench`` measures by default, ``options`` the ``+option`` flags it accepts.
    """

    name: str
    precisions: tuple[str, ...]
    needs_cuda: bool
    probe: Callable[[Target], Availability]
    choice: str = ""
    packages: dict[str, str] = field(default_factory=dict)
    bench: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if not self.precisions or unknown:
            raise ValueError(f"backend {self.name}: precisions must be some of {', '.join(PRECISIONS)}, got {self.precisions}")
        if not self.choice:
            object.__setattr__(self, "choice", self.name)

    def availability(self, target: Target) -> Availability:
        """Whether this backend can render ``target`` here; a backend with one precision renders in it
        whatever ``target`` asks for (the CPU backends render in float32)."""
        for package, extra in self.packages.items():
            try:
                importlib.import_module(package)
            except (ImportError, OSError):
                where = " on a machine with an NVIDIA GPU" if self.needs_cuda else ""
                return Availability(f"{package} not installed", fix=f"install it with `pip install vcam[{extra}]`{where}")
        if self.needs_cuda:
            import torch

            if not torch.cuda.is_available():
                return Availability("no CUDA device", fix="use a machine with an NVIDIA GPU and a CUDA build of torch")
        if len(self.precisions) == 1:
            target = replace(target, precision=self.precisions[0])
        elif target.precision not in self.precisions:
            return Availability(
                f"{self.name} renders in {' or '.join(self.precisions)}, not {target.precision}",
                fix=f"set precision to one of {', '.join(self.precisions)}",
            )
        unknown = target.options - set(self.options)
        if unknown:
            takes = ", ".join(f"+{o}" for o in self.options) or "none"
            return Availability(f"{self.name} has no option {', '.join(f'+{o}' for o in sorted(unknown))}", fix=f"its options are {takes}")
        return self.probe(target)


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend, *, before: str | None = None) -> Backend:
    """Add ``backend`` to the registry, last in ``auto``'s order or just before the backend ``before``."""
    if backend.name in _BACKENDS or backend.name == "auto":
        raise ValueError(f"a render backend named {backend.name!r} is already registered")
    names = list(_BACKENDS)
    at = names.index(before) if before is not None else len(names)
    entries = list(_BACKENDS.values())
    entries.insert(at, backend)
    _BACKENDS.clear()
    _BACKENDS.update((b.name, b) for b in entries)
    return backend


def unregister_backend(name: str) -> None:
    del _BACKENDS[name]


def backends() -> tuple[Backend, ...]:
    """Every registered backend in ``auto``'s order."""
    return tuple(_BACKENDS.values())


def backend_choices() -> tuple[str, ...]:
    """The values of the ``backend`` setting: ``auto`` and each backend's choice."""
    return ("auto", *dict.fromkeys(b.choice for b in backends()))


def renderer_kinds() -> tuple[str, ...]:
    """What :func:`select_renderer` accepts: the setting's values and every backend's own name."""
    return tuple(dict.fromkeys([*backend_choices(), *_BACKENDS]))


def precision_choices() -> tuple[str, ...]:
    """The values of the ``precision`` setting: every precision some backend renders in."""
    used = {p for b in backends() for p in b.precisions}
    return tuple(p for p in PRECISIONS if p in used)


def get_backend(name: str) -> Backend:
    if name not in _BACKENDS:
        raise VcamError(f"unknown render backend {name!r}: choose one of {', '.join(_BACKENDS)}")
    return _BACKENDS[name]


def candidates(kind: str) -> tuple[Backend, ...]:
    """The backends ``kind`` may mean, in ``auto``'s order: all for ``auto``, one for its own name,
    those sharing the choice otherwise (``torch``: torch-cuda, then torch-cpu)."""
    if kind == "auto":
        return backends()
    if kind in _BACKENDS:
        return (_BACKENDS[kind],)
    found = tuple(b for b in backends() if b.choice == kind)
    if not found:
        raise VcamError(f"unknown renderer {kind!r}: choose one of {', '.join(renderer_kinds())}")
    return found


def _builtin(probe: str) -> Callable[[Target], Availability]:
    """``probe`` of :mod:`vcam.render.backends`, imported when first called."""

    def run(target: Target) -> Availability:
        module = importlib.import_module("vcam.render.backends")
        result: Availability = getattr(module, probe)(target)
        return result

    return run


register_backend(Backend(
    "tensorrt", ("fp16", "fp32"), needs_cuda=True, probe=_builtin("tensorrt"),
    packages={"tensorrt": "tensorrt"}, bench=("fp16",),
))
register_backend(Backend(
    "torch-cuda", ("fp16", "bf16", "fp32"), needs_cuda=True, probe=_builtin("torch_cuda"),
    choice="torch", bench=("fp16", "bf16"), options=("compile", "plain"),
))
register_backend(Backend(
    "onnxruntime", ("fp32",), needs_cuda=False, probe=_builtin("onnxruntime"),
    packages={"onnxruntime": "onnx"}, bench=("fp32",),
))
register_backend(Backend("torch-cpu", ("fp32",), needs_cuda=False, probe=_builtin("torch_cpu"), choice="torch"))
