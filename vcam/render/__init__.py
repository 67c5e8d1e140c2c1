"""Render backends behind one :class:`Renderer` protocol: tensorrt, torch (CUDA or CPU), onnxruntime.

:func:`select_renderer` picks one (``auto``: the fastest that works here) and says why;
:func:`build_engines` exports the model to ONNX and builds TensorRT plans into ``engines/``.
"""

from .base import Renderer
from .bench import BenchResult, run_bench
from .engines import build_engines
from .gridsample import grid_sample_3d_gather
from .manifest import EngineManifest, GraphRecord
from .onnx_export import export_onnx
from .select import KINDS, select_renderer

__all__ = [
    "BenchResult", "EngineManifest", "GraphRecord", "KINDS", "Renderer",
    "build_engines", "export_onnx", "grid_sample_3d_gather", "run_bench", "select_renderer",
]
