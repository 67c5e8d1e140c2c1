"""Paste-back: the rendered face crop blended into the avatar keyframe, fitted to the output size."""

from __future__ import annotations

import math

import cv2
import numpy as np

from .tracking import CropBox

FILL_DIM = 0.5
"""Brightness of the blurred copy of the keyframe that fills the bars beside (or above) it."""

FILL_DOWNSCALE = 16
"""The fill is blurred at 1/16 of the output size: a wide blur for the cost of a small one."""


class PasteLayout:
    """Where renders of the crop `box` land in the output frame, computed once per avatar and output size.

    The keyframe keeps its aspect ratio: it is scaled to fit the output, and the bars are filled
    with a blurred, dimmed copy of itself scaled to cover (the "fill" look of video-call apps).
    The render's edges fade into the keyframe over `feather` of the box side. ``base`` is the output
    frame without the render (BGR), ``roi`` (x0, y0, x1, y1) the region a render changes, ``mask``
    the render's weight in it; :meth:`paste_matrix` maps a render's pixels into the region.
    Both compositors (:class:`Compositor`, :class:`vcam.device_compose.DeviceCompositor`) draw from it.
    """

    def __init__(
        self,
        keyframe: np.ndarray,
        box: CropBox,
        output_size: tuple[int, int] = (1280, 720),
        mirror: bool = False,
        feather: float = 0.12,
    ) -> None:
        if not 0.0 < feather <= 0.5:
            raise ValueError(f"feather must be in (0, 0.5], got {feather}")
        width, height = output_size
        kh, kw = keyframe.shape[:2]
        scale = min(width / kw, height / kh)
        fit_w, fit_h = min(width, round(kw * scale)), min(height, round(kh * scale))
        left, top = (width - fit_w) // 2, (height - fit_h) // 2
        base = _fill(keyframe, width, height)
        interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        base[top : top + fit_h, left : left + fit_w] = cv2.resize(keyframe, (fit_w, fit_h), interpolation=interpolation)

        # keyframe -> output in continuous coordinates (pixel centres at +0.5), mirror included
        to_output = np.array([[fit_w / kw, 0.0, left], [0.0, fit_h / kh, top], [0.0, 0.0, 1.0]])
        if mirror:
            to_output = np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ to_output
            base = cv2.flip(base, 1)
        self.base = base
        self.output_size = output_size
        self._to_output = to_output
        self._box = box

        half = box.size / 2 / box.axis_aligned_shrink  # the upright square inside a rotated box
        bx0, by0, bx1, by1 = _bounds(to_output, box.cx - half, box.cy - half, box.cx + half, box.cy + half)
        kx0, ky0, kx1, ky1 = _bounds(to_output, 0.0, 0.0, kw, kh)
        x0, y0 = math.floor(max(bx0, kx0)), math.floor(max(by0, ky0))
        x1, y1 = math.ceil(min(bx1, kx1)), math.ceil(min(by1, ky1))
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"{box} lies outside the {kw}x{kh} keyframe")
        self.roi = (x0, y0, x1, y1)

        feather_px = feather * (bx1 - bx0)
        ramp_x = _ramp(np.arange(x0, x1) + 0.5, bx0, bx1, feather_px)
        ramp_y = _ramp(np.arange(y0, y1) + 0.5, by0, by1, feather_px)
        self.mask = np.outer(ramp_y, ramp_x).astype(np.float32)
        self._paste_matrices: dict[int, np.ndarray] = {}

    def paste_matrix(self, size: int) -> np.ndarray:
        """2x3 matrix from pixel indices of a size x size render to pixel indices of the output region."""
        if size not in self._paste_matrices:
            x0, y0 = self.roi[:2]
            crop_to_keyframe = np.vstack([cv2.invertAffineTransform(self._box.affine(size)), [0.0, 0.0, 1.0]])
            to_continuous = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
            to_region = np.array([[1.0, 0.0, -0.5 - x0], [0.0, 1.0, -0.5 - y0], [0.0, 0.0, 1.0]])
            self._paste_matrices[size] = (to_region @ self._to_output @ to_continuous @ crop_to_keyframe)[:2]
        return self._paste_matrices[size]


class Compositor:
    """Blends square renders into the keyframe at the output size on the CPU (OpenCV), following a
    :class:`PasteLayout`. Everything but the box's own region is computed once; compose() warps and
    blends only that region."""

    def __init__(self, layout: PasteLayout) -> None:
        self.layout = layout
        self._inverse_mask = 1.0 - self.layout.mask

    def compose(self, rendered: np.ndarray) -> np.ndarray:
        """The output frame with `rendered` (square BGR uint8, any size) pasted at the box."""
        size = rendered.shape[0]
        if rendered.shape[1] != size:
            raise ValueError(f"rendered crop must be square, got {rendered.shape[1]}x{size}")
        x0, y0, x1, y1 = self.layout.roi
        warped = cv2.warpAffine(
            rendered,
            self.layout.paste_matrix(size),
            (x1 - x0, y1 - y0),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        out = self.layout.base.copy()
        out[y0:y1, x0:x1] = cv2.blendLinear(warped, out[y0:y1, x0:x1], self.layout.mask, self._inverse_mask)
        return out

    def keyframe_output(self) -> np.ndarray:
        """The keyframe alone at the output size (shown while paused)."""
        return self.layout.base.copy()


def _bounds(matrix: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    """Axis-aligned bounds of a rectangle mapped by a 3x3 scale/translate/flip matrix."""
    xs, ys = matrix[:2] @ np.array([[x0, x1], [y0, y1], [1.0, 1.0]])
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def _ramp(centres: np.ndarray, start: float, end: float, width: float) -> np.ndarray:
    """1 inside [start, end] farther than width from its ends, easing (smoothstep) to 0 at the ends."""
    t = np.clip(np.minimum(centres - start, end - centres) / width, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _fill(keyframe: np.ndarray, width: int, height: int) -> np.ndarray:
    """A blurred, dimmed copy of the keyframe scaled to cover width x height."""
    kh, kw = keyframe.shape[:2]
    small_w, small_h = max(1, round(width / FILL_DOWNSCALE)), max(1, round(height / FILL_DOWNSCALE))
    cover = max(small_w / kw, small_h / kh)
    small = cv2.resize(keyframe, (math.ceil(kw * cover), math.ceil(kh * cover)), interpolation=cv2.INTER_AREA)
    left, top = (small.shape[1] - small_w) // 2, (small.shape[0] - small_h) // 2
    small = cv2.GaussianBlur(small[top : top + small_h, left : left + small_w], (0, 0), 1.5)
    return cv2.convertScaleAbs(cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR), alpha=FILL_DIM)


def draw_banner(image: np.ndarray, text: str) -> None:
    """Write text in white on a darkened strip along the bottom of image (in place), sized to fit."""
    height, width = image.shape[:2]
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, max(1, round(height / 360))
    (text_w, text_h), _ = cv2.getTextSize(text, font, 1.0, thickness)
    scale = min(0.9 * width / text_w, 0.035 * height / text_h)
    strip_h = round(2.2 * text_h * scale)
    strip = image[height - strip_h :]
    strip //= 2
    origin = (round((width - text_w * scale) / 2), height - round(0.6 * text_h * scale))
    cv2.putText(image, text, origin, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
