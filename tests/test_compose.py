"""vcam.compose: the render lands exactly where it was cropped, fades in smoothly, and fits the output."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from clips import PORTRAIT_CROP, portrait

from vcam.compose import Compositor, PasteLayout, draw_banner
from vcam.tracking import CropBox

BOX = CropBox(*PORTRAIT_CROP[:3])  # upright, so the pasted region is an exact pixel rectangle


def output_rect(box: CropBox, scale: float, left: int, top: int) -> tuple[int, int, int, int]:
    """The box's pixel rectangle in the output, for a keyframe scaled by `scale` at (left, top)."""
    half = box.size / 2 / box.axis_aligned_shrink
    return (
        max(0, int(left + (box.cx - half) * scale)),
        max(0, int(top + (box.cy - half) * scale)),
        int(np.ceil(left + (box.cx + half) * scale)),
        int(np.ceil(top + (box.cy + half) * scale)),
    )


def test_keyframe_fills_the_height_with_blurred_dimmed_side_bars() -> None:
    keyframe = portrait()
    frame = Compositor(PasteLayout(keyframe, BOX, (1280, 720))).keyframe_output()
    assert frame.shape == (720, 1280, 3) and frame.dtype == np.uint8
    assert np.array_equal(frame[:, 280:1000], cv2.resize(keyframe, (720, 720), interpolation=cv2.INTER_LINEAR))
    bars = np.concatenate([frame[:, :280], frame[:, 1000:]], axis=1).astype(float)
    assert 5 < bars.mean() < 0.7 * keyframe.mean()  # dimmed, not black
    assert np.abs(np.diff(bars, axis=1)).mean() < 1.0  # blurred: no detail left


def test_wider_keyframe_is_letterboxed_top_and_bottom() -> None:
    wide = np.hstack([portrait(), portrait()])  # 1024 x 512
    frame = Compositor(PasteLayout(wide, BOX, (640, 480))).keyframe_output()
    assert frame.shape == (480, 640, 3)
    assert np.array_equal(frame[80:400], cv2.resize(wide, (640, 320), interpolation=cv2.INTER_AREA))
    assert 5 < frame[:80].mean() < 0.7 * wide.mean()


@pytest.mark.parametrize("render_size", [256, 512])
def test_render_of_the_crop_pastes_back_in_place(render_size: int) -> None:
    keyframe = portrait()
    compositor = Compositor(PasteLayout(keyframe, BOX, (1280, 720)))
    expected = compositor.keyframe_output().astype(float)
    aligned = compositor.compose(BOX.crop(keyframe, render_size))
    shifted = compositor.compose(CropBox(BOX.cx + 2, BOX.cy, BOX.size).crop(keyframe, render_size))
    x0, y0, x1, y1 = output_rect(BOX, 720 / 512, 280, 0)
    aligned_error = np.abs(aligned - expected)[y0:y1, x0:x1].mean()
    shifted_error = np.abs(shifted - expected)[y0:y1, x0:x1].mean()
    assert aligned_error < 1.0
    assert shifted_error > 5 * aligned_error  # a 2-pixel misplacement would show


def test_render_of_a_rotated_crop_pastes_back_in_place() -> None:
    keyframe = portrait()
    box = CropBox(*PORTRAIT_CROP[:3], angle=12.0)
    compositor = Compositor(PasteLayout(keyframe, box, (1280, 720)))
    expected = compositor.keyframe_output().astype(float)
    aligned = compositor.compose(box.crop(keyframe, 256)).astype(float)
    unrotated = compositor.compose(BOX.crop(keyframe, 256)).astype(float)
    x0, y0, x1, y1 = output_rect(box, 720 / 512, 280, 0)
    aligned_error = np.abs(aligned - expected)[y0:y1, x0:x1].mean()
    assert aligned_error < 1.5
    assert np.abs(unrotated - expected)[y0:y1, x0:x1].mean() > 5 * aligned_error
    assert not np.array_equal(aligned, expected)  # the render region was really written


def test_centre_is_the_render_and_outside_the_box_is_the_keyframe() -> None:
    compositor = Compositor(PasteLayout(portrait(), BOX, (1280, 720)))
    red = np.zeros((256, 256, 3), np.uint8)
    red[:] = (0, 0, 255)
    frame = compositor.compose(red)
    x0, y0, x1, y1 = output_rect(BOX, 720 / 512, 280, 0)
    inner = int(0.12 * BOX.size * 720 / 512) + 1
    assert np.all(frame[y0 + inner : y1 - inner, x0 + inner : x1 - inner] == (0, 0, 255))
    outside = np.ones(frame.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(frame[outside], compositor.keyframe_output()[outside])


@pytest.mark.parametrize("feather", [0.05, 0.12, 0.3])
def test_seam_fades_smoothly_over_the_feather_width(feather: float) -> None:
    black = np.zeros((512, 512, 3), np.uint8)
    compositor = Compositor(PasteLayout(black, BOX, (1280, 720), feather=feather))
    frame = compositor.compose(np.full((256, 256, 3), 255, np.uint8))
    x0, y0, x1, y1 = output_rect(BOX, 720 / 512, 280, 0)
    row = frame[(y0 + y1) // 2, x0 - 2 : (x0 + x1) // 2, 0].astype(float) / 255
    feather_px = feather * BOX.size * 720 / 512
    ramp = np.flatnonzero((row > 0.01) & (row < 0.99))
    assert row[0] == 0 and row[-1] == 1
    assert np.all(np.diff(row) >= 0)
    assert len(ramp) == pytest.approx(feather_px, rel=0.2)  # the fade spans the feather width
    assert np.diff(row).max() < 2.0 / feather_px  # without a step


def test_mirror_flips_the_whole_output() -> None:
    keyframe = portrait()
    render = cv2.bitwise_not(BOX.crop(keyframe, 256))
    plain = Compositor(PasteLayout(keyframe, BOX, (1280, 720)))
    mirrored = Compositor(PasteLayout(keyframe, BOX, (1280, 720), mirror=True))
    assert np.array_equal(mirrored.keyframe_output(), cv2.flip(plain.keyframe_output(), 1))
    difference = mirrored.compose(render).astype(int) - cv2.flip(plain.compose(render), 1)
    assert np.abs(difference).max() <= 3  # warpAffine samples at 1/32 pixel steps
    assert np.abs(difference).mean() < 0.05


def test_box_reaching_past_the_keyframe_edge_stays_inside_it() -> None:
    keyframe = portrait()
    compositor = Compositor(PasteLayout(keyframe, CropBox(20.0, 20.0, 120.0), (1280, 720)))
    frame = compositor.compose(np.full((256, 256, 3), 255, np.uint8))
    assert np.array_equal(frame[:, :280], compositor.keyframe_output()[:, :280])  # side bar untouched
    assert frame[30, 300].min() == 255


def test_bad_arguments_raise() -> None:
    compositor = Compositor(PasteLayout(portrait(), BOX))
    with pytest.raises(ValueError, match="square"):
        compositor.compose(np.zeros((256, 200, 3), np.uint8))
    with pytest.raises(ValueError, match="outside"):
        Compositor(PasteLayout(portrait(), CropBox(-500.0, 100.0, 100.0)))
    with pytest.raises(ValueError, match="feather"):
        Compositor(PasteLayout(portrait(), BOX, feather=0.0))


@pytest.mark.parametrize("size", [(1280, 720), (320, 180)])
def test_banner_darkens_a_bottom_strip_and_writes_inside_it(size: tuple[int, int]) -> None:
    frame = Compositor(PasteLayout(portrait(), BOX, size)).keyframe_output()
    original = frame.copy()
    draw_banner(frame, "DEMO MODEL (random weights) - run `vcam weights fetch` for real avatars")
    changed_rows = np.flatnonzero((frame != original).any(axis=(1, 2)))
    assert changed_rows.min() > 0.9 * size[1] and changed_rows.max() == size[1] - 1
    strip = frame[changed_rows.min() :]
    text = strip.min(axis=2) > 200
    assert text.any() and not text[:, 0].any() and not text[:, -1].any()  # the text fits across
    margin = size[0] // 25  # left of the centred text, which spans at most 90 % of the width
    assert np.array_equal(strip[:, :margin], original[changed_rows.min() :, :margin] // 2)  # dimmed
