"""The pixel formats a sink takes, and the conversions into them on the CPU and on any torch device.

A sink takes frames in its device's own format, so nothing downstream converts again: the Linux
virtual camera (v4l2loopback) stores I420, OBS's virtual camera NV12 on Windows and UYVY on macOS,
video files BGR (OpenCV encoders) or I420 (.y4m). The YUV formats are BT.601 limited range (Y in
16..235, chroma in 16..240), as pyvirtualcam's own conversions (libyuv) and OpenCV's produce them.
Chroma is subsampled as each producer does it: I420 as OpenCV's ``COLOR_BGR2YUV_I420`` (the top-left
pixel of each 2×2 block; the .y4m files vcam wrote before), NV12 and UYVY as libyuv (the average of
each 2×2 block, each horizontal pair). Every format's buffer is one uint8 array of
:func:`buffer_shape`; the torch conversion gives the CPU one's result within one level.
"""

from __future__ import annotations

from enum import Enum

import cv2
import numpy as np
import torch

from .errors import VcamError


class PixelFormat(Enum):
    BGR = "bgr"
    """(H, W, 3): blue, green, red per pixel (OpenCV's order)."""
    I420 = "i420"
    """(H·3/2, W): the Y plane, then the U and V planes at half width and height."""
    NV12 = "nv12"
    """(H·3/2, W): the Y plane, then one plane of interleaved U, V pairs at half width and height."""
    UYVY = "uyvy"
    """(H, W, 2): U Y0 V Y1 for each horizontal pair of pixels."""


# BT.601 limited range for 8-bit RGB, the (R, G, B) weights and offset of Y, U (Cb) and V (Cr).
_KR, _KB = 0.299, 0.114
_Y = (219 / 255 * _KR, 219 / 255 * (1 - _KR - _KB), 219 / 255 * _KB, 16.0)
_U = tuple(224 / 255 / (2 * (1 - _KB)) * w for w in (-_KR, -(1 - _KR - _KB), 1 - _KB)) + (128.0,)
_V = tuple(224 / 255 / (2 * (1 - _KR)) * w for w in (1 - _KR, -(1 - _KR - _KB), -_KB)) + (128.0,)

_TO_BGR = {PixelFormat.I420: cv2.COLOR_YUV2BGR_I420, PixelFormat.NV12: cv2.COLOR_YUV2BGR_NV12, PixelFormat.UYVY: cv2.COLOR_YUV2BGR_UYVY}


def buffer_shape(fmt: PixelFormat, width: int, height: int) -> tuple[int, ...]:
    """The shape of one width × height frame in ``fmt``; a VcamError for sizes the format cannot hold."""
    if fmt is PixelFormat.BGR:
        return (height, width, 3)
    if width % 2 or (height % 2 and fmt is not PixelFormat.UYVY):
        raise VcamError(f"{fmt.name} frames need an even width and height, got {width}x{height}: choose another output size")
    if fmt is PixelFormat.UYVY:
        return (height, width, 2)
    return (height * 3 // 2, width)


def from_bgr(image: np.ndarray, fmt: PixelFormat) -> np.ndarray:
    """A BGR uint8 (H, W, 3) image in ``fmt``, on the CPU."""
    height, width = image.shape[:2]
    buffer_shape(fmt, width, height)
    if fmt is PixelFormat.BGR:
        return image
    if fmt is PixelFormat.I420:
        return cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
    luma = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)[:height]
    # halving with INTER_LINEAR averages each pair (2x2 block) of pixels
    if fmt is PixelFormat.NV12:
        blocks = cv2.resize(image, (width // 2, height // 2), interpolation=cv2.INTER_LINEAR)
        chroma = cv2.transform(blocks, _bgr_matrix(_U, _V))
        return np.concatenate([luma, chroma.reshape(height // 2, width)])
    pairs = cv2.resize(image, (width // 2, height), interpolation=cv2.INTER_LINEAR)
    chroma = cv2.transform(pairs, _bgr_matrix(_U, _V))
    packed = np.stack([chroma[..., 0], luma[:, 0::2], chroma[..., 1], luma[:, 1::2]], axis=-1)
    return packed.reshape(height, width, 2)


def to_bgr(buffer: np.ndarray, fmt: PixelFormat) -> np.ndarray:
    """A frame in ``fmt`` as a BGR uint8 (H, W, 3) image, on the CPU (for the preview window)."""
    if fmt is PixelFormat.BGR:
        return buffer
    if fmt is PixelFormat.UYVY:
        return cv2.cvtColor(buffer.reshape(buffer.shape[0], -1, 2), _TO_BGR[fmt])
    return cv2.cvtColor(buffer, _TO_BGR[fmt])


def convert(image: torch.Tensor, fmt: PixelFormat, order: str = "rgb") -> torch.Tensor:
    """An (H, W, 3) uint8 image (``order`` "rgb" or "bgr") in ``fmt``, on the image's device:
    :func:`from_bgr`'s result within one level."""
    height, width = image.shape[:2]
    buffer_shape(fmt, width, height)
    if fmt is PixelFormat.BGR:
        return (image if order == "bgr" else image.flip(-1)).contiguous()
    rgb = image if order == "rgb" else image.flip(-1)
    planes = rgb.permute(2, 0, 1).float()
    luma = _levels(planes, _Y)
    if fmt is PixelFormat.I420:
        chroma = planes[:, 0::2, 0::2]
        return torch.cat([luma.flatten(), _levels(chroma, _U).flatten(), _levels(chroma, _V).flatten()]).view(height * 3 // 2, width)
    if fmt is PixelFormat.NV12:
        chroma = planes.view(3, height // 2, 2, width // 2, 2).mean(dim=(2, 4))
        interleaved = torch.stack([_levels(chroma, _U), _levels(chroma, _V)], dim=-1)
        return torch.cat([luma.flatten(), interleaved.flatten()]).view(height * 3 // 2, width)
    chroma = planes.view(3, height, width // 2, 2).mean(dim=3)
    pairs = luma.view(height, width // 2, 2)
    packed = torch.stack([_levels(chroma, _U), pairs[..., 0], _levels(chroma, _V), pairs[..., 1]], dim=-1)
    return packed.view(height, width, 2)


def _levels(planes: torch.Tensor, weights: tuple[float, ...]) -> torch.Tensor:
    """One YUV channel from (3, h, w) float R, G, B planes, rounded to uint8."""
    r, g, b, offset = weights
    value = planes[0] * r + planes[1] * g + planes[2] * b + (offset + 0.5)
    return value.clamp_(0, 255).to(torch.uint8)


def _bgr_matrix(*rows: tuple[float, ...]) -> np.ndarray:
    """cv2.transform's matrix for YUV channels from B, G, R (plus offset)."""
    return np.array([[b, g, r, offset] for r, g, b, offset in rows], dtype=np.float64)
