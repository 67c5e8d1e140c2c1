"""Paste-back on the render's device: the frame stays there from the render to one download.

:class:`DeviceCompositor` draws what :class:`vcam.compose.Compositor` draws, from the same
:class:`vcam.compose.PasteLayout`, with torch on the device the renderer drew on: the render warped
into the box's region through a sampling grid computed once per render size, blended into the
keyframe (uploaded once) with the feather mask, the demo banner laid over, the colour conversion
into the sink's pixel format, and one download into pinned host memory. The banner is
:func:`vcam.compose.draw_banner`'s own, drawn once on the CPU for every level a pixel can have.
On a GPU that takes the per-frame image work off the CPU; on the CPU, OpenCV's compositor is the
faster one.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .compose import PasteLayout, draw_banner
from .pixel_formats import PixelFormat, convert
from .render.base import Download, start_download

SUBPIXEL_STEPS = 32
"""cv2.warpAffine's bilinear sampling positions are fixed point, in 1/32 of a pixel; the grid here
takes the same positions, so both compositors draw the same image."""

_AB_SCALE = 1024
"""cv2.warpAffine's fixed-point scale of the mapped coordinates before they are cut to 1/32."""


class DeviceCompositor:
    """Blends square renders into the keyframe on ``device`` following ``layout``; ``banner``: the
    text drawn along the bottom of every frame (the demo model's notice), or None."""

    def __init__(self, layout: PasteLayout, device: torch.device | str, banner: str | None = None) -> None:
        self.layout = layout
        self.device = torch.device(device)
        width, height = layout.output_size
        self._base = torch.from_numpy(np.ascontiguousarray(layout.base[..., ::-1])).to(self.device)
        """The output frame without the render, RGB."""
        self._mask = torch.from_numpy(layout.mask).to(self.device).unsqueeze(-1)
        self._grids: dict[int, torch.Tensor] = {}
        self._banner = BannerLookup(banner, width, height, self.device) if banner else None

    def compose(self, rendered: torch.Tensor, fmt: PixelFormat) -> np.ndarray:
        """The output frame in ``fmt`` on the host (an array of the caller's own), with ``rendered``
        ((S, S, 3) uint8 RGB on any device, ready on the current stream) pasted at the box."""
        return self.start(rendered, fmt).wait()

    def start(self, rendered: torch.Tensor, fmt: PixelFormat) -> Download:
        """As :meth:`compose`, returning as soon as the work is queued: the frame's download runs
        while the caller goes on (to the next frame's motion, say)."""
        return start_download(convert(self.frame(rendered), fmt, "rgb"))

    def frame(self, rendered: torch.Tensor) -> torch.Tensor:
        """The output frame, (H, W, 3) uint8 RGB on the device."""
        size = rendered.shape[0]
        if rendered.shape != (size, size, 3):
            raise ValueError(f"rendered crop must be square RGB, got {tuple(rendered.shape)}")
        image = rendered.to(self.device).permute(2, 0, 1).unsqueeze(0).float()
        warped = F.grid_sample(image, self._grid(size), mode="bilinear", padding_mode="border", align_corners=False)
        warped = warped[0].permute(1, 2, 0).round_()  # OpenCV warps into uint8 before it blends
        out = self._base.clone()
        x0, y0, x1, y1 = self.layout.roi
        region = out[y0:y1, x0:x1]
        blended = warped * self._mask + region.float() * (1.0 - self._mask)
        region.copy_(blended.add_(0.5).clamp_(0, 255).to(torch.uint8))
        if self._banner is not None:
            self._banner.draw(out)
        return out

    def _grid(self, size: int) -> torch.Tensor:
        """grid_sample's (1, h, w, 2) grid: for each region pixel, where it samples a size x size render."""
        if size not in self._grids:
            x0, y0, x1, y1 = self.layout.roi
            inverse = cv2.invertAffineTransform(self.layout.paste_matrix(size))
            ys, xs = np.mgrid[0 : y1 - y0, 0 : x1 - x0].astype(np.float64)
            step = _AB_SCALE // SUBPIXEL_STEPS
            points = []
            for row in inverse:  # as cv2.warpAffine: the x and the (y, offset) terms rounded to 1/1024, the sum to 1/32
                fixed = np.round(row[0] * xs * _AB_SCALE) + np.round((row[1] * ys + row[2]) * _AB_SCALE)
                points.append(np.floor((fixed + step // 2) / step) / SUBPIXEL_STEPS)
            # pixel index i of the render is grid coordinate (2i + 1) / size - 1 (align_corners=False)
            grid = np.stack([(2.0 * p + 1.0) / size - 1.0 for p in points], axis=-1)
            self._grids[size] = torch.from_numpy(grid).float().unsqueeze(0).to(self.device)
        return self._grids[size]


class BannerLookup:
    """:func:`~vcam.compose.draw_banner` as a table, to draw it on the device: the banner halves each
    pixel of its strip and blends the text's pixels towards white, so a pixel's result depends on its
    own value alone. Drawn once on the CPU for each of the 128 halved levels, that gives, for every
    pixel the text touches, its result per level; other pixels of the strip are only halved."""

    def __init__(self, text: str, width: int, height: int, device: torch.device) -> None:
        probe = np.full((height, width, 3), 254, np.uint8)
        draw_banner(probe, text)
        self.top = int(np.argmax((probe != 254).any(axis=(1, 2))))
        """The strip's first row."""
        results = np.empty((128, height - self.top, width), np.uint8)
        for level in range(128):
            probe[:] = 2 * level
            draw_banner(probe, text)
            results[level] = probe[self.top :, :, 0]  # white text: the three channels are alike
        results = results.reshape(128, -1)
        touched = np.flatnonzero((results != np.arange(128, dtype=np.uint8)[:, None]).any(axis=0))
        self._pixels = torch.from_numpy(touched).to(device)
        self._table = torch.from_numpy(np.ascontiguousarray(results[:, touched].T)).to(device)
        """(touched pixels, 128): each one's result for each halved level."""

    def draw(self, frame: torch.Tensor) -> None:
        """The banner on a contiguous (H, W, 3) uint8 frame, in place."""
        strip = frame[self.top :]
        strip.div_(2, rounding_mode="floor")
        pixels = strip.view(-1, 3)
        pixels[self._pixels] = self._table.gather(1, pixels[self._pixels].long())
