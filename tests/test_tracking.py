"""vcam.tracking: crop geometry, the Haar detector on the bundled portrait, and a stable tracked box."""

from __future__ import annotations

import numpy as np
import pytest
from clips import PORTRAIT_FACE, blank, placed, placed_face, portrait

from vcam.tracking import (
    CENTRE_DEADZONE,
    FACE_EXPAND,
    SIZE_DEADZONE,
    CropBox,
    FaceDetector,
    FaceTracker,
    face_crop_box,
)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def noisy(image: np.ndarray, rng: np.random.Generator, sigma: float = 4.0) -> np.ndarray:
    """The image with webcam-like sensor noise."""
    return np.clip(image + rng.normal(0.0, sigma, image.shape), 0, 255).astype(np.uint8)


def test_crop_box_at_native_scale_is_an_exact_slice() -> None:
    image = portrait()
    x, y, w, h = PORTRAIT_FACE
    box = CropBox(x + w / 2, y + h / 2, w)
    assert np.array_equal(box.crop(image, w), image[y : y + h, x : x + w])


def test_crop_box_downscale_samples_pixel_areas() -> None:
    image = portrait()
    half = CropBox(256.0, 256.0, 512.0).crop(image, 256)
    reference = image.reshape(256, 2, 256, 2, 3).mean(axis=(1, 3))
    assert np.abs(half - reference).max() <= 1.0


def test_crop_box_outside_the_frame_repeats_edges_and_scales() -> None:
    image = portrait()
    corner = CropBox(0.0, 0.0, 64.0).crop(image, 64)
    assert np.array_equal(corner[:32, :32], np.broadcast_to(image[0, 0], (32, 32, 3)))
    assert CropBox(10.0, 20.0, 30.0).scaled(2.0) == CropBox(20.0, 40.0, 60.0)


def test_face_crop_box_expands_and_shifts_the_face() -> None:
    assert face_crop_box((100, 50, 80, 80), expand=2.0, shift_y=-0.1) == CropBox(140.0, 82.0, 160.0)
    default = face_crop_box(PORTRAIT_FACE)
    assert default.size == pytest.approx(FACE_EXPAND * 92)
    assert default.cy < PORTRAIT_FACE[1] + PORTRAIT_FACE[3] / 2  # more forehead than neck


def test_detector_finds_the_portrait_face(detector: FaceDetector) -> None:
    x, y, w, h = detector.detect(portrait())
    ex, ey, ew, _ = PORTRAIT_FACE
    assert abs(x + w / 2 - (ex + ew / 2)) < 6 and abs(y + h / 2 - (ey + ew / 2)) < 6
    assert abs(w - ew) < 0.12 * ew


@pytest.mark.parametrize("dx, dy, scale", [(0, 0, 0.75), (-100, -40, 0.9), (80, 30, 0.6)])
def test_detector_reports_frame_coordinates(detector: FaceDetector, dx: float, dy: float, scale: float) -> None:
    x, y, w, h = detector.detect(placed(dx, dy, scale))
    cx, cy, side = placed_face(dx, dy, scale)
    assert abs(x + w / 2 - cx) < 0.1 * side and abs(y + h / 2 - cy) < 0.1 * side
    assert abs(w - side) < 0.2 * side  # the cascade sizes faces in 10 % steps


def test_detector_finds_nothing_in_a_blank_frame(detector: FaceDetector) -> None:
    assert detector.detect(blank()) is None


def test_still_face_gives_a_perfectly_still_box(detector: FaceDetector) -> None:
    tracker = FaceTracker(detector)
    rng = np.random.default_rng(7)
    frame = placed()
    detections = {detector.detect(noisy(frame, rng)) for _ in range(5)}
    assert len(detections) > 1  # the detector itself jitters on a noisy still face
    results = [tracker.update(noisy(frame, rng)) for _ in range(15)]
    assert all(r.face_found and not r.lost for r in results)
    assert len({r.box for r in results}) == 1


def test_box_follows_a_moved_face_quickly_and_smoothly(detector: FaceDetector) -> None:
    tracker = FaceTracker(detector, smoothing=0.6)
    for _ in range(3):
        start = tracker.update(placed()).box
    moved = placed(dx=90, dy=40, scale=0.9)
    boxes = [tracker.update(moved).box for _ in range(10)]
    target = face_crop_box(detector.detect(moved))
    first_step = boxes[0].cx - start.cx
    assert 0.2 < first_step / (target.cx - start.cx) < 0.5  # smoothed: 40 % of the way, not a jump
    final = boxes[-1]
    assert abs(final.cx - target.cx) <= CENTRE_DEADZONE * final.size + 1
    assert abs(final.cy - target.cy) <= CENTRE_DEADZONE * final.size + 1
    assert abs(final.size - target.size) <= SIZE_DEADZONE * final.size + 1


def test_face_lost_after_blank_frames_then_recovered(detector: FaceDetector) -> None:
    tracker = FaceTracker(detector, lost_after=3)
    found = tracker.update(placed())
    assert found.face_found and found.box is not None
    missing = [tracker.update(blank()) for _ in range(4)]
    assert [r.lost for r in missing] == [False, False, False, True]
    assert all(not r.face_found for r in missing)
    assert [r.box for r in missing[:3]] == [found.box] * 3  # merely missing: keeps the last box
    assert missing[3].box is None
    elsewhere = placed(dx=-120, dy=-50)
    back = tracker.update(elsewhere)
    assert back.face_found and not back.lost
    assert back.box == face_crop_box(detector.detect(elsewhere))  # jumps to the face, no stale smoothing


class CountingDetector(FaceDetector):
    """The real detector, counting how often it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def detect(self, image: np.ndarray) -> tuple[int, int, int, int] | None:
        self.calls += 1
        return super().detect(image)


def test_detect_every_skips_frames_but_never_while_the_face_is_missing() -> None:
    detector = CountingDetector()
    tracker = FaceTracker(detector, detect_every=3)
    face = placed()
    results = [tracker.update(face) for _ in range(6)]
    assert detector.calls == 2
    assert len({r.box for r in results}) == 1 and all(r.face_found for r in results)
    tracker.update(blank())  # frame 7 is scheduled: the face is missing
    tracker.update(blank())
    assert detector.calls == 4
    tracker.reset()
    assert tracker.update(face).box == face_crop_box(detector.detect(face))
