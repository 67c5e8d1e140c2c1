"""The :class:`Renderer` protocol every backend implements, and the image conversions they share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import numpy as np
import torch

from vcam.errors import VcamError
from vcam.models import HeadMotion, ModelConfig, MotionEstimate, SourceState

from .contract import source_shapes
from .registry import PRECISIONS


class Renderer(Protocol):
    """Draws the avatar: the source side once per profile, motion and render once per frame.

    Crops are (input_size, input_size, 3) uint8 RGB; rendered images are (output_size,
    output_size, 3) uint8 RGB. Tensors handed in and out live on the CPU, but for
    :meth:`render_device`'s image; a GPU backend keeps the last bound source on its device, so a
    source is uploaded once, not per frame. Backends subclass this protocol to inherit
    :meth:`render` and the context-manager methods, which always call ``close``.
    """

    name: str
    device: str

    def prepare_source(self, crop_rgb: np.ndarray) -> SourceState:
        """The keyframe's source state (appearance volume, keypoints, pose) as CPU tensors."""
        ...

    def extract_motion(self, crop_rgb: np.ndarray) -> MotionEstimate:
        """The head pose and expression of a driving crop, as float32 CPU tensors."""
        ...

    def render_device(self, source: SourceState, head: HeadMotion) -> torch.Tensor:
        """The avatar with ``source``'s appearance and ``head``'s pose and expression, where the
        backend drew it: on its device (a CPU backend: the CPU), valid until the next render. Work
        the caller queues afterwards on its current CUDA stream is ordered after the render, and the
        next render after that work (see :func:`on_own_stream`)."""
        ...

    def render(self, source: SourceState, head: HeadMotion) -> np.ndarray:
        """:meth:`render_device`'s image downloaded to an array of the caller's own."""
        return to_host(self.render_device(source, head))

    def close(self) -> None:
        """Release the device resources; the renderer is unusable afterwards."""
        ...

    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()


@dataclass(frozen=True)
class Download:
    """An image on its way to the host: ``array`` (the caller's own) holds it once :meth:`wait` returns."""

    array: np.ndarray
    copied: torch.cuda.Event | None = None
    """Recorded after the copy on the GPU's stream; None when the array is already complete."""

    def wait(self) -> np.ndarray:
        if self.copied is not None:
            self.copied.synchronize()
        return self.array


def start_download(image: torch.Tensor) -> Download:
    """A copy of ``image`` (ready on the current stream) for the host; from a GPU one asynchronous
    copy into pinned memory, which the caller waits for (:meth:`Download.wait`) when it reads it."""
    if image.device.type != "cuda":
        return Download(image.numpy().copy())
    host = torch.empty(image.shape, dtype=image.dtype, pin_memory=True)
    host.copy_(image, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record(torch.cuda.current_stream(image.device))
    return Download(host.numpy(), copied)


def to_host(image: torch.Tensor) -> np.ndarray:
    """A copy of ``image`` (ready on the current stream) as an array of the caller's own, waiting
    for that copy alone."""
    return start_download(image).wait()


@contextlib.contextmanager
def on_own_stream(stream: torch.cuda.Stream) -> Iterator[None]:
    """Runs the body on a backend's own ``stream``, after the work the caller queued so far on its
    current stream (which may still read the last image), and orders the caller's later work after
    the body's: the image the body renders is ready for the caller's stream at once."""
    caller = torch.cuda.current_stream(stream.device)
    stream.wait_stream(caller)
    with torch.cuda.stream(stream):
        yield
    caller.wait_stream(stream)


def check_crop(crop_rgb: np.ndarray, size: int) -> np.ndarray:
    """The crop as a contiguous (size, size, 3) uint8 array, or a VcamError saying what is wrong."""
    if not isinstance(crop_rgb, np.ndarray) or crop_rgb.dtype != np.uint8 or crop_rgb.shape != (size, size, 3):
        got = f"{crop_rgb.dtype} {crop_rgb.shape}" if isinstance(crop_rgb, np.ndarray) else type(crop_rgb).__name__
        raise VcamError(f"the renderer needs a {size}×{size}×3 uint8 RGB face crop, got {got}: crop and resize the frame first")
    return np.ascontiguousarray(crop_rgb)


def precision_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a precision name of :data:`vcam.render.registry.PRECISIONS` (``fp16`` …)."""
    dtype: torch.dtype = getattr(torch, PRECISIONS[precision])
    return dtype


def image_from_uint8(crop: torch.Tensor) -> torch.Tensor:
    """(S, S, 3) uint8 RGB → (1, 3, S, S) float32 in [0, 1], on ``crop``'s device."""
    return crop.permute(2, 0, 1).unsqueeze(0).float() / 255


def image_to_uint8(image: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1] → (H, W, 3) uint8 RGB, rounded to the nearest level."""
    return (image[0].float() * 255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)


class SourceUpload:
    """The source side's device buffers (f_s, x_c, x_s), uploaded again only when another avatar
    is rendered: a profile's tensors cross to the device once, not per frame."""

    def __init__(self, cfg: ModelConfig, device: torch.device | str) -> None:
        shapes = source_shapes(cfg)
        self.buffers = {name: torch.zeros(shapes[name], device=device) for name in ("f_s", "x_c", "x_s")}
        self._bound: SourceState | None = None

    def bind(self, source: SourceState) -> None:
        """Copy ``source`` into the buffers unless it is the one already there, checking shapes."""
        if source is self._bound:
            return
        for name, buffer in self.buffers.items():
            value = getattr(source, name)
            if tuple(value.shape) != tuple(buffer.shape):
                raise VcamError(f"the avatar profile was made for another model ({name} is {tuple(value.shape)}, not {tuple(buffer.shape)}): recreate the profile")
            buffer.copy_(value)
        self._bound = source

    def forget(self) -> None:
        self._bound = None
