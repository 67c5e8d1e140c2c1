"""vcam.pixel_formats: each format's layout as pyvirtualcam and OpenCV take it, the CPU conversions as
they make them, and the torch conversion within one level of the CPU one on every device."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import pyvirtualcam
import torch
from clips import portrait

from vcam.errors import VcamError
from vcam.pixel_formats import PixelFormat, buffer_shape, convert, from_bgr, to_bgr

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"))]


def images() -> list[np.ndarray]:
    """A photo (smooth areas and edges) and noise (every pixel unlike its neighbours), 96 x 64 BGR."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    return [cv2.resize(portrait(), (96, 64), interpolation=cv2.INTER_AREA), noise]


def libyuv_reference(bgr: np.ndarray, fmt: PixelFormat) -> np.ndarray:
    """NV12 or UYVY as pyvirtualcam's libyuv makes them from BGR (RGB24ToI420 + I420ToNV12 for OBS on
    Windows, ARGBToUYVY for OBS on macOS): 8-bit BT.601 limited-range integer formulas, chroma from
    the rounded average of each 2x2 block (NV12) or horizontal pair (UYVY)."""
    b, g, r = (bgr[..., i].astype(np.int64) for i in range(3))
    y = (66 * r + 129 * g + 25 * b + 0x1080) >> 8

    def average(a: np.ndarray, c: np.ndarray) -> np.ndarray:
        return (a + c + 1) >> 1

    if fmt is PixelFormat.NV12:
        def pool(p: np.ndarray) -> np.ndarray:
            return average(average(p[0::2, 0::2], p[1::2, 0::2]), average(p[0::2, 1::2], p[1::2, 1::2]))
    else:
        def pool(p: np.ndarray) -> np.ndarray:
            return average(p[:, 0::2], p[:, 1::2])
    rb, gb, bb = pool(r), pool(g), pool(b)
    u = (112 * bb - 74 * gb - 38 * rb + 0x8080) >> 8
    v = (112 * rb - 94 * gb - 18 * bb + 0x8080) >> 8
    height, width = y.shape
    if fmt is PixelFormat.NV12:
        return np.concatenate([y, np.stack([u, v], axis=-1).reshape(height // 2, width)]).astype(np.uint8)
    return np.stack([u, y[:, 0::2], v, y[:, 1::2]], axis=-1).reshape(height, width, 2).astype(np.uint8)


def levels_apart(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@pytest.mark.parametrize("fmt", list(PixelFormat))
def test_buffers_hold_what_pyvirtualcam_expects(fmt: PixelFormat) -> None:
    shape = buffer_shape(fmt, 640, 480)
    assert int(np.prod(shape)) == int(np.prod(pyvirtualcam.camera.FrameShapes[pyvirtualcam.PixelFormat[fmt.name]](640, 480)))
    for image in images():
        assert from_bgr(image, fmt).shape == buffer_shape(fmt, 96, 64)


def test_subsampled_formats_need_even_sizes() -> None:
    assert buffer_shape(PixelFormat.BGR, 641, 481) == (481, 641, 3)
    assert buffer_shape(PixelFormat.UYVY, 640, 481) == (481, 640, 2)
    for fmt, (width, height) in [(PixelFormat.I420, (641, 480)), (PixelFormat.NV12, (640, 481)), (PixelFormat.UYVY, (641, 480))]:
        with pytest.raises(VcamError, match="even width and height"):
            buffer_shape(fmt, width, height)


def test_i420_is_opencvs() -> None:
    for image in images():
        assert np.array_equal(from_bgr(image, PixelFormat.I420), cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420))
    assert np.array_equal(from_bgr(images()[0], PixelFormat.BGR), images()[0])


@pytest.mark.parametrize("fmt", [PixelFormat.NV12, PixelFormat.UYVY])
def test_nv12_and_uyvy_are_pyvirtualcams_within_a_level(fmt: PixelFormat) -> None:
    for image in images():
        assert levels_apart(from_bgr(image, fmt), libyuv_reference(image, fmt)) <= 1


@pytest.mark.parametrize("fmt", list(PixelFormat))
def test_back_to_bgr_for_the_preview(fmt: PixelFormat) -> None:
    photo = portrait()
    back = to_bgr(from_bgr(photo, fmt), fmt)
    assert back.shape == photo.shape and back.dtype == np.uint8
    assert np.abs(back.astype(float) - photo).mean() < 3


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fmt", list(PixelFormat))
def test_torch_conversion_is_the_cpu_ones_within_a_level(fmt: PixelFormat, device: str) -> None:
    for image in images():
        expected = from_bgr(image, fmt)
        for order, pixels in (("bgr", image), ("rgb", image[..., ::-1])):
            got = convert(torch.from_numpy(np.ascontiguousarray(pixels)).to(device), fmt, order)
            assert got.device.type == device and got.dtype == torch.uint8 and got.is_contiguous()
            assert tuple(got.shape) == expected.shape
            assert levels_apart(got.cpu().numpy(), expected) <= 1
