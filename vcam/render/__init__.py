"""Render backends behind one :class:`Renderer` protocol: tensorrt, torch (CUDA or CPU), onnxruntime.

:func:`select_renderer` picks one (``auto``: the fastest that works here) and says why; the
backends are declared in :mod:`vcam.render.registry`. Both names are imported on first use, so
the registry can be read (settings, command-line choices) without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Renderer
    from .select import select_renderer

__all__ = ["Renderer", "select_renderer"]


def __getattr__(name: str) -> Any:
    if name == "Renderer":
        from .base import Renderer

        return Renderer
    if name == "select_renderer":
        from .select import select_renderer

        return select_renderer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
