"""The torch backend: float32 on the CPU; on CUDA fp16/bf16 with channels-last weights and CUDA graphs.

On CUDA the per-frame work is two fixed sequences of kernels over fixed buffers: motion (crop →
motion estimate) and render (head → driving keypoints → warp → decode → uint8 image). Each is
captured once into a CUDA graph and replayed, so a frame costs one upload and one replay; the
image stays on the GPU for the compositor (:meth:`TorchRenderer.render_device`). Motion runs on a
stream of its own: it needs nothing but its crop, so the next frame's motion is read while the
GPU still draws (and composes) the last one. The heavy
networks (motion extractor, warping network, generator) hold weights in the reduced dtype and run
under autocast, which keeps the geometry (sparse motions, heatmaps, softmax, sampling grids) in
float32; the keypoint math and retargeting MLPs stay float32.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from vcam.errors import VcamError
from vcam.models import HeadMotion, MotionEstimate, SourceState, TalkingHeadModel

from .base import Renderer, SourceUpload, check_crop, image_from_uint8, image_to_uint8, on_own_stream, precision_dtype
from .compile_cache import CompileCache
from .fast import autotune_convs, conv_modes, set_conv_modes, speed_up
from .graphs import (
    DrivingKeypointsGraph,
    MotionGraph,
    WarpDecodeGraph,
    head_layout,
    head_tensors,
    inference_copy,
    motion_estimate,
    motion_layout,
)
from .registry import get_backend


class _Autocast(nn.Module):
    """Runs ``inner`` under CUDA autocast (inside the module, so torch.compile traces it too)."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = inner
        self.dtype = dtype

    def forward(self, *args: torch.Tensor) -> object:
        with torch.autocast("cuda", dtype=self.dtype, cache_enabled=False):
            return self.inner(*args)


def _channels_last(module: nn.Module) -> None:
    """Store conv weights channels-last, so cuDNN picks its NHWC/NDHWC kernels throughout."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
        elif isinstance(conv, nn.Conv3d):
            conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last_3d)


def _capture(step: Callable[[], None], stream: torch.cuda.Stream, cudnn_benchmark: bool) -> Callable[[], None]:
    """``step`` warmed up (cuDNN autotuning, compilation) and captured into a CUDA graph. The capture
    forbids unsafe CUDA calls in this thread only: another renderer may go on rendering meanwhile."""
    with torch.backends.cudnn.flags(enabled=True, benchmark=cudnn_benchmark, deterministic=False):
        with torch.cuda.stream(stream):
            for _ in range(3):
                step()
        stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
            step()
    return graph.replay


def _frame_networks(model: TalkingHeadModel, target: torch.device, dtype: torch.dtype, fast: bool, channels_last: bool) -> TalkingHeadModel:
    """An inference copy of ``model``'s per-frame networks on ``target``: the rewrites of
    :mod:`vcam.render.fast` when ``fast``, conv weights channels-last, the heavy networks in ``dtype``."""
    # prepare_source runs the caller's model: the per-frame copy needs no source-side networks.
    nets = inference_copy(model, device=target, without=("appearance_feature_extractor", "canonical_keypoint_detector"))
    if fast:
        speed_up(nets.warping_module)
        speed_up(nets.spade_generator)
    if channels_last:
        _channels_last(nets)
    if dtype != torch.float32:
        for network in (nets.motion_extractor, nets.warping_module, nets.spade_generator):
            network.to(dtype)
    return nets


class TorchRenderer(Renderer):
    """The model in torch. ``device`` "cpu" renders float32; on CUDA, ``precision`` (fp16, bf16 or
    fp32), ``channels_last``, ``cuda_graphs``, ``fast`` (the rewrites of :mod:`vcam.render.fast`,
    tuned on the device) and ``compile_mode`` (a torch.compile mode, or None) choose how the
    per-frame path runs. ``cache`` (used when compiling with CUDA graphs) keeps the convolution
    forms and the compiled kernels between starts; its ``status`` says whether they were loaded or
    rebuilt. ``saved_conv_modes`` are convolution forms chosen before (:meth:`CompileCache.saved_conv_modes`),
    which spare an uncompiled renderer the timing of every layer. ``cudnn_benchmark`` lets cuDNN time
    its algorithms for every convolution before the graphs are captured (a slower start for faster
    frames). ``share_networks_with`` takes the prepared networks of another open renderer of the same
    device, precision and rewrites instead of preparing a copy of its own (the compiled renderer built
    while the quick stand-in renders: one copy of the weights on the GPU, its convolution forms
    already chosen). ``startup_s`` holds the seconds each start-up step took."""

    def __init__(
        self,
        model: TalkingHeadModel,
        device: str = "cpu",
        precision: str = "fp32",
        *,
        channels_last: bool = True,
        cuda_graphs: bool = True,
        compile_mode: str | None = None,
        fast: bool = True,
        cache: CompileCache | None = None,
        saved_conv_modes: dict[str, str] | None = None,
        cudnn_benchmark: bool = True,
        share_networks_with: TorchRenderer | None = None,
    ) -> None:
        began = time.perf_counter()
        self.startup_s: dict[str, float] = {}

        def step_done(name: str) -> None:
            nonlocal began
            now = time.perf_counter()
            self.startup_s[name] = now - began
            began = now

        target = torch.device(device)
        cuda = target.type == "cuda"
        if cuda and target.index is None:
            target = torch.device("cuda", torch.cuda.current_device())
        self.name = "torch-cuda" if cuda else "torch-cpu"
        allowed = get_backend(self.name).precisions
        if precision not in allowed:
            raise VcamError(f"torch on {target.type} cannot render in {precision!r}: choose {', '.join(allowed)}")
        self.device = str(target)
        self.precision = precision
        self._model = model
        self._cuda = cuda
        cfg = model.cfg
        self._size = cfg.input_size

        fast = cuda and fast
        dtype = precision_dtype(precision)
        self._prepared_as = (self.device, dtype, fast, cuda and channels_last)
        if share_networks_with is not None:
            if share_networks_with._prepared_as != self._prepared_as:
                raise ValueError("a renderer shares networks only with one of the same device, precision and rewrites")
            if share_networks_with._nets is None:
                raise VcamError("the renderer to share networks with was closed")
            nets = share_networks_with._nets
        else:
            nets = _frame_networks(model, target, *self._prepared_as[1:])
        self._nets: TalkingHeadModel | None = nets
        motion: nn.Module = MotionGraph(nets)
        warp: nn.Module = WarpDecodeGraph(nets)
        self._drive = DrivingKeypointsGraph(nets)
        if dtype != torch.float32:
            motion, warp = _Autocast(motion, dtype), _Autocast(warp, dtype)
        self._motion_net, self._warp_net = motion, warp

        self._motion_layout = motion_layout(nets)
        self._head_layout = head_layout(nets)

        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=target)

        self._crop = zeros(self._size, self._size, 3, dtype=torch.uint8)
        self._motion = zeros(self._motion_layout.size)
        self._head = zeros(self._head_layout.size)
        self._image = zeros(cfg.output_size, cfg.output_size, 3, dtype=torch.uint8)
        self._upload = SourceUpload(cfg, target)
        self._source_buffers = self._upload.buffers
        # Pinned host copies let uploads and downloads run asynchronously on the renderer's stream.
        self._host = {buf: torch.zeros_like(buf, device="cpu").pin_memory() if cuda else buf for buf in (self._crop, self._motion, self._head)}
        self._stream = torch.cuda.Stream(target) if cuda else None
        self._motion_stream = torch.cuda.Stream(target) if cuda else None
        self._head_sent = torch.cuda.Event() if cuda else None
        """Recorded when the head has left its pinned buffer for the device (the next frame's waits for it)."""

        step_done("networks")
        cache = cache if cuda and cuda_graphs and compile_mode is not None else None
        if cache is not None:
            cache.load()
        self.conv_timings: dict[str, dict[str, float]] = {}
        known_modes = cache.conv_modes if cache is not None else saved_conv_modes
        if share_networks_with is not None and known_modes is None:
            known_modes = conv_modes(nets)  # chosen by the renderer that prepared them
        if fast and not (known_modes is not None and set_conv_modes(nets, known_modes)):
            self._source_buffers["f_s"].normal_()
            with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False):
                self.conv_timings = autotune_convs(nets, self._render_pass)
            self._source_buffers["f_s"].zero_()
        step_done("conv forms")
        if cuda and compile_mode is not None:
            self._motion_net = torch.compile(motion, mode=compile_mode, dynamic=False)
            self._warp_net = torch.compile(warp, mode=compile_mode, dynamic=False)
        self._motion_step: Callable[[], None] = self._motion_pass
        self._render_step: Callable[[], None] = self._render_pass
        if cuda and cuda_graphs:
            with torch.no_grad():
                self._motion_step = _capture(self._motion_pass, self._stream, cudnn_benchmark)
                step_done("motion graph")
                self._render_step = _capture(self._render_pass, self._stream, cudnn_benchmark)
                step_done("render graph")
        if cache is not None and not cache.hit:
            cache.save(conv_modes(nets))
            step_done("cache saved")

    # -- the two per-frame passes: fixed buffers in, fixed buffers out ----------------------------

    def _motion_pass(self) -> None:
        outputs = self._motion_net(image_from_uint8(self._crop))
        for view, value in zip(self._motion_layout.views(self._motion).values(), outputs):
            view.copy_(value)

    def _render_pass(self) -> None:
        given = self._source_buffers | self._head_layout.views(self._head)
        x_d = self._drive(*(given[name] for name in self._drive.input_names))
        image = self._warp_net(given["f_s"], given["x_s"], x_d)
        self._image.copy_(image_to_uint8(image))

    # -- Renderer ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _running(self, alone_on: torch.cuda.Stream | None = None) -> Iterator[None]:
        """The body, on CUDA on the render stream after the caller's work, or on ``alone_on``
        without waiting for anything (for work whose inputs come from the host)."""
        if self._motion_net is None:
            raise VcamError("this renderer was closed: create a new one")
        if not self._cuda:
            on: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        else:
            on = torch.cuda.stream(alone_on) if alone_on is not None else on_own_stream(self._stream)
        with torch.no_grad(), on:
            yield

    def _send(self, buffer: torch.Tensor) -> None:
        """Host copy → device buffer (a no-op on the CPU, where they are one tensor)."""
        host = self._host[buffer]
        if host is not buffer:
            buffer.copy_(host, non_blocking=True)

    def _receive(self, buffer: torch.Tensor, stream: torch.cuda.Stream | None) -> torch.Tensor:
        """Device buffer → its host copy, once ``stream``'s work is done."""
        host = self._host[buffer]
        if host is not buffer:
            host.copy_(buffer, non_blocking=True)
            stream.synchronize()
        return host

    def prepare_source(self, crop_rgb: np.ndarray) -> SourceState:
        """Runs the model itself (float32, on the device the caller keeps it on)."""
        image = image_from_uint8(torch.from_numpy(check_crop(crop_rgb, self._size)))
        device = next(self._model.parameters()).device
        with self._running():
            return SourceState(**self._model.prepare_source(image.to(device)).tensors())

    def extract_motion(self, crop_rgb: np.ndarray) -> MotionEstimate:
        crop = torch.from_numpy(check_crop(crop_rgb, self._size))
        # Alone on its stream: the crop comes from the host and the last motion pass was waited for.
        with self._running(alone_on=self._motion_stream):
            self._host[self._crop].copy_(crop)
            self._send(self._crop)
            self._motion_step()
            packed = self._receive(self._motion, self._motion_stream)
        return motion_estimate(self._motion_layout.views(packed))

    def render_device(self, source: SourceState, head: HeadMotion) -> torch.Tensor:
        """The image in the renderer's own buffer on its device, drawn on the renderer's stream."""
        with self._running():
            self._upload.bind(source)
            if self._head_sent is not None:
                self._head_sent.synchronize()
            self._head_layout.pack(head_tensors(head), self._host[self._head])
            self._send(self._head)
            if self._head_sent is not None:
                self._head_sent.record(self._stream)
            self._render_step()
        return self._image

    def close(self) -> None:
        if self._cuda:
            for stream in (self._stream, self._motion_stream):
                stream.synchronize()
        self._motion_step = self._render_step = None  # type: ignore[assignment]
        self._motion_net = self._warp_net = None  # type: ignore[assignment]
        self._nets = None
        self._upload.forget()
