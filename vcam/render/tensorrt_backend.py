"""The TensorRT backend: plans from ``engines/`` run on one CUDA stream, every buffer on the GPU.

Each plan's inputs and outputs are bound once to fixed device tensors; graphs that feed each
other share them (``driving_keypoints``'s ``x_d`` output *is* ``warp_decode``'s ``x_d`` input), so a
frame is one upload, the plans and a few torch kernels enqueued on the stream, and one download —
no host round-trip between networks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from vcam.errors import VcamError
from vcam.models import HeadMotion, MotionEstimate, SourceState, TalkingHeadModel

from .base import Renderer, SourceUpload, check_crop, image_from_uint8, image_to_uint8, on_own_stream
from .contract import GraphIO, graph_io
from .graphs import head_layout, head_tensors, motion_estimate, motion_layout
from .manifest import EngineManifest


def torch_dtype(trt: ModuleType, dtype: object) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int64: torch.int64, trt.bool: torch.bool}
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if dtype not in table:
        raise VcamError(f"a TensorRT plan uses tensor type {dtype}, which vcam cannot bind: rebuild the plans with `vcam engines build`")
    return table[dtype]


class TrtGraph:
    """One deserialised plan with an execution context and a device tensor bound to each I/O tensor.

    The plan's tensors must be those of ``io`` (its graph in :mod:`vcam.render.contract`).
    ``shared`` supplies tensors (by name) that other graphs or the renderer own; the rest are allocated.
    """

    def __init__(
        self, trt: ModuleType, runtime: object, plan: bytes, device: torch.device, io: GraphIO, shared: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.engine = runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise VcamError("a TensorRT plan could not be loaded by this TensorRT: rebuild the plans with `vcam engines build`")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        found = {name: tuple(self.engine.get_tensor_shape(name)) for name in names}
        if found != io.inputs | io.outputs:
            raise VcamError(f"a TensorRT plan has tensors {found}, not this vcam's {io.inputs | io.outputs}: rebuild the plans with `vcam engines build`")
        self.context = self.engine.create_execution_context()
        self.tensors: dict[str, torch.Tensor] = {}
        self.inputs: list[str] = []
        for name, shape in found.items():
            dtype = torch_dtype(trt, self.engine.get_tensor_dtype(name))
            tensor = (shared or {}).get(name)
            if tensor is None:
                tensor = torch.empty(shape, dtype=dtype, device=device)
            elif tuple(tensor.shape) != shape or tensor.dtype != dtype:
                raise VcamError(f"TensorRT plan tensor {name} is {shape} {dtype}, not {tuple(tensor.shape)} {tensor.dtype}: rebuild the plans with `vcam engines build`")
            self.context.set_tensor_address(name, tensor.data_ptr())
            self.tensors[name] = tensor
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(name)

    def run(self, stream: torch.cuda.Stream) -> None:
        """Enqueue the plan on ``stream`` (returns at once; the work runs after what is queued before)."""
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise VcamError("TensorRT failed to run a plan: see the log above; rebuilding the plans may help")


class TensorRTRenderer(Renderer):
    """The four plans of a :func:`vcam.render.engines.build_engines` folder."""

    name = "tensorrt"

    def __init__(self, model: TalkingHeadModel, folder: Path) -> None:
        import tensorrt as trt

        cfg = model.cfg
        manifest = EngineManifest.load(folder)
        if manifest is None or manifest.kind != "tensorrt" or manifest.model != cfg.name or manifest.stale:
            raise VcamError(f"no usable TensorRT plans of {cfg.name} in {folder}: run `vcam engines build`")
        self._io = graph_io(cfg)
        device = torch.device("cuda", torch.cuda.current_device())
        self.device = str(device)
        self._size = cfg.input_size
        self._stream = torch.cuda.Stream(device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._motion_layout, self._head_layout = motion_layout(model), head_layout(model)
        self._crop = torch.zeros((self._size, self._size, 3), dtype=torch.uint8, device=device)
        self._motion = torch.zeros(self._motion_layout.size, device=device)
        self._head = torch.zeros(self._head_layout.size, device=device)
        self._image = torch.zeros((cfg.output_size, cfg.output_size, 3), dtype=torch.uint8, device=device)
        self._upload = SourceUpload(cfg, device)
        self._source_buffers = self._upload.buffers
        self._host = {buf: torch.zeros_like(buf, device="cpu").pin_memory() for buf in (self._crop, self._motion, self._head)}
        self._head_sent = torch.cuda.Event()
        """Recorded when the head has left its pinned buffer for the device (the next frame's waits for it)."""

        def load(graph: str, shared: dict[str, torch.Tensor] | None = None) -> TrtGraph:
            return TrtGraph(trt, self._runtime, (folder / manifest.graphs[graph].file).read_bytes(), device, self._io[graph], shared)

        self._source = load("source")
        self._motion_plan = load("motion", self._motion_layout.views(self._motion))
        self._drive = load("driving_keypoints", self._head_layout.views(self._head) | self._source_buffers)
        self._warp = load("warp_decode", self._source_buffers | {"x_d": self._drive.tensors["x_d"]})
        self._closed = False

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        if self._closed:
            raise VcamError("this renderer was closed: create a new one")
        with torch.no_grad(), on_own_stream(self._stream):
            yield

    def _run_on_crop(self, plan: TrtGraph, crop_rgb: np.ndarray) -> None:
        self._host[self._crop].copy_(torch.from_numpy(check_crop(crop_rgb, self._size)))
        self._crop.copy_(self._host[self._crop], non_blocking=True)
        plan.tensors["image"].copy_(image_from_uint8(self._crop))
        plan.run(self._stream)

    def _receive(self, buffer: torch.Tensor) -> torch.Tensor:
        host = self._host[buffer]
        host.copy_(buffer, non_blocking=True)
        self._stream.synchronize()
        return host

    def prepare_source(self, crop_rgb: np.ndarray) -> SourceState:
        with self._running():
            self._run_on_crop(self._source, crop_rgb)
            outputs = {name: self._source.tensors[name].float().cpu() for name in self._io["source"].outputs}
        return SourceState(**outputs)

    def extract_motion(self, crop_rgb: np.ndarray) -> MotionEstimate:
        with self._running():
            self._run_on_crop(self._motion_plan, crop_rgb)
            packed = self._receive(self._motion)
        return motion_estimate(self._motion_layout.views(packed))

    def render_device(self, source: SourceState, head: HeadMotion) -> torch.Tensor:
        """The image in the renderer's own buffer on the GPU, drawn on the renderer's stream."""
        with self._running():
            self._upload.bind(source)
            self._head_sent.synchronize()
            self._head_layout.pack(head_tensors(head), self._host[self._head])
            self._head.copy_(self._host[self._head], non_blocking=True)
            self._head_sent.record(self._stream)
            self._drive.run(self._stream)
            self._warp.run(self._stream)
            self._image.copy_(image_to_uint8(self._warp.tensors["image"]))
        return self._image

    def close(self) -> None:
        if not self._closed:
            self._stream.synchronize()
        # Contexts and engines go before the runtime that made them.
        self._source = self._motion_plan = self._drive = self._warp = None  # type: ignore[assignment]
        self._runtime = None
        self._upload.forget()
        self._closed = True
