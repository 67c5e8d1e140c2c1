"""Relative motion, smoothing, frontalization and the face-lost behaviour."""

import numpy as np
import pytest
import torch

from vcam.models import LIVEPORTRAIT, MotionEstimate, SourceState
from vcam.models import geometry as g
from vcam.motion import (
    EYEBALL_KEYPOINTS,
    GAZE_UP_PER_DEGREE,
    MIC_LIP_RANGE,
    KeyframeRatios,
    MotionSettings,
    MotionStage,
    OneEuroFilter,
    hull_area,
)
from vcam.tracking import FaceMeasures

CONV = LIVEPORTRAIT.convention
K = 21


def rot(pitch=0.0, yaw=0.0, roll=0.0):
    return g.euler_to_rotation(torch.tensor([pitch]), torch.tensor([yaw]), torch.tensor([roll]), CONV)


def angle_between(a, b):
    cos = ((a.transpose(1, 2) @ b).diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2
    return torch.rad2deg(torch.acos(cos.clamp(-1, 1))).item()


@pytest.fixture
def source():
    gen = torch.Generator().manual_seed(0)
    return SourceState(
        f_s=torch.zeros(1, 2, 2, 2, 2), x_c=torch.rand(1, K, 3, generator=gen), x_s=torch.rand(1, K, 3, generator=gen),
        R_s=rot(5, -10, 2), t_s=torch.tensor([[0.02, -0.01, 0.3]]), exp_s=torch.rand(1, K, 3, generator=gen) * 0.01,
        scale_s=torch.tensor([[1.4]]), pose_s=torch.tensor([[5.0, -10.0, 2.0]]),
    )


def estimate(yaw=0.0, pitch=0.0, tx=0.0, mouth=0.0, scale=1.2):
    exp = torch.zeros(1, K, 3)
    exp[0, 19, 1] = mouth
    return MotionEstimate(
        pitch=torch.tensor([pitch + 3.0]), yaw=torch.tensor([yaw - 4.0]), roll=torch.tensor([1.0]),
        t=torch.tensor([[tx, 0.05, 0.2]]), exp=exp, scale=torch.tensor([[scale]]),
    )


def stage(source, **settings):
    base = dict(smoothing_min_cutoff=1e7, smoothing_beta=0.0, face_lost_hold_s=0.5, ease_s=1.0, idle_motion_degrees=0.0)
    return MotionStage(CONV, source, MotionSettings(**{**base, **settings}), has_retargeting=True)


def test_one_euro_is_still_for_still_input_and_follows_a_step():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    assert np.allclose(f(np.array([1.0, 2.0]), 0.0), [1, 2])
    for i in range(1, 5):
        assert np.allclose(f(np.array([1.0, 2.0]), i / 30), [1, 2])
    outs = [f(np.array([5.0, 2.0]), 5 / 30 + i / 30)[0] for i in range(60)]
    assert outs[0] < 5.0 and outs[-1] == pytest.approx(5.0, abs=1e-2)
    assert all(a <= b + 1e-12 for a, b in zip(outs, outs[1:]))


def test_one_euro_reduces_jitter():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    noisy = rng.normal(0, 1, 300)
    smooth = np.array([f(np.array([x]), i / 30)[0] for i, x in enumerate(noisy)])
    assert smooth[30:].std() < 0.5 * noisy[30:].std()


def test_neutral_frame_renders_the_keyframe_motion(source):
    m = stage(source)
    head = m.update(estimate(), 0.0)
    assert torch.allclose(head.R, source.R_s, atol=1e-6)
    assert torch.allclose(head.exp, source.exp_s)
    assert torch.allclose(head.scale, source.scale_s)
    assert torch.allclose(head.t, torch.tensor([[0.02, -0.01, 0.0]]))  # LivePortrait ignores t_z


def test_user_motion_is_applied_relative_to_the_neutral_frame(source):
    m = stage(source)
    m.update(estimate(), 0.0)
    head = m.update(estimate(yaw=20.0, tx=0.1, mouth=0.05, scale=1.32), 0.1)
    assert angle_between(head.R, source.R_s) == pytest.approx(20.0, abs=1e-3)
    assert head.t[0, 0].item() == pytest.approx(0.12)
    assert head.exp[0, 19, 1].item() == pytest.approx(source.exp_s[0, 19, 1].item() + 0.05)
    assert head.scale.item() == pytest.approx(1.4 * 1.1)


def test_recalibrate_takes_the_next_frame_as_neutral(source):
    m = stage(source)
    m.update(estimate(), 0.0)
    m.recalibrate()
    head = m.update(estimate(yaw=25.0), 0.1)
    assert torch.allclose(head.R, source.R_s, atol=1e-6)


def test_frontalize_faces_the_camera_with_strength(source):
    m = stage(source, frontalize=True, frontalize_strength=1.0)
    m.update(estimate(), 0.0)
    head = m.update(estimate(yaw=30.0), 0.1)
    assert torch.allclose(head.R, torch.eye(3)[None], atol=1e-5)
    half = stage(source, frontalize=True, frontalize_strength=0.5)
    half.update(estimate(), 0.0)
    driven = angle_between(rot(), stage(source).update(estimate(), 0.0).R)
    assert angle_between(half.update(estimate(), 0.1).R, torch.eye(3)[None]) == pytest.approx(driven / 2, abs=1e-3)


def test_frontalize_towards_the_keyframe_pose_and_reaims_eyes(source):
    m = stage(source, frontalize=True, frontalize_target="keyframe", eye_reaim_degrees=10.0)
    m.update(estimate(), 0.0)
    head = m.update(estimate(yaw=-25.0), 0.1)
    assert torch.allclose(head.R, source.R_s, atol=1e-5)
    for k in EYEBALL_KEYPOINTS:
        assert head.exp[0, k, 1] < source.exp_s[0, k, 1]  # gaze moved up (y grows downwards)


def test_face_lost_holds_then_eases_to_neutral_and_resumes_without_a_jump(source):
    m = stage(source)
    m.update(estimate(), 0.0)
    tracked = m.update(estimate(yaw=30.0), 0.1)
    held = m.update(None, 0.2, mouth_open=0.0)
    assert torch.allclose(held.R, tracked.R)
    still_held = m.update(None, 0.65, mouth_open=0.0)
    assert torch.allclose(still_held.R, tracked.R)
    halfway = m.update(None, 0.2 + 0.5 + 0.5, mouth_open=0.0)
    assert 5 < angle_between(halfway.R, source.R_s) < 25
    neutral = m.update(None, 0.2 + 0.5 + 1.0, mouth_open=0.4)
    assert torch.allclose(neutral.R, source.R_s, atol=1e-5)
    assert neutral.mouth_open == pytest.approx(0.4 * MIC_LIP_RANGE)  # the voice on the lip-ratio scale
    back = m.update(estimate(yaw=30.0), 2.0)
    assert torch.allclose(back.R, neutral.R, atol=1e-5)  # no jump on the first frame back
    later = m.update(estimate(yaw=30.0), 2.5)
    assert 0 < angle_between(later.R, source.R_s) < 30
    done = m.update(estimate(yaw=30.0), 3.1)
    assert angle_between(done.R, source.R_s) == pytest.approx(30.0, abs=1e-3)


def test_voice_and_idle_motion_without_a_face(source):
    m = MotionStage(CONV, source, MotionSettings(idle_motion_degrees=3.0), has_retargeting=True)
    a = m.update(None, 1.0, mouth_open=0.7)
    b = m.update(None, 3.0, mouth_open=0.1)
    assert a.mouth_open == pytest.approx(0.7 * MIC_LIP_RANGE) and b.mouth_open == pytest.approx(0.1 * MIC_LIP_RANGE)
    assert 0.1 < angle_between(a.R, b.R) < 8.0


# -- measured eyes, lips and gaze; LivePortrait's driving options ------------------------------------

KEYFRAME = KeyframeRatios(eye_open=(0.3, 0.28), lip_open=0.15)


def face(eye=0.3, lip=0.05, gaze_pitch=0.0):
    return FaceMeasures(eye_open=(eye, eye), lip_open=lip, pose=(0.0, 0.0, 0.0), gaze=(gaze_pitch, 0.0))


def test_measured_blinks_and_speech_drive_retargeting_from_the_keyframes_own_ratios(source):
    m = MotionStage(CONV, source, MotionSettings(smoothing_min_cutoff=1e7, smoothing_beta=0.0), True, KEYFRAME)
    neutral = m.update(estimate(), 0.0, face=face())
    assert neutral.source_eye_open == KEYFRAME.eye_open and neutral.source_lip_open == KEYFRAME.lip_open
    assert neutral.eye_open == pytest.approx(0.29) and neutral.mouth_open == pytest.approx(0.15)  # no change yet
    blink = m.update(estimate(), 0.1, face=face(eye=0.05, lip=0.45))
    assert blink.eye_open == pytest.approx(0.29 - 0.25) and blink.mouth_open == pytest.approx(0.15 + 0.4)
    closed_harder = m.update(estimate(), 0.2, face=face(eye=0.0, lip=0.0))
    assert closed_harder.eye_open == pytest.approx(0.0) and closed_harder.mouth_open == pytest.approx(0.1)


def test_microphone_maps_onto_the_users_own_lip_range_when_the_face_is_lost(source):
    m = MotionStage(CONV, source, MotionSettings(smoothing_min_cutoff=1e7, smoothing_beta=0.0, face_lost_hold_s=0.0, ease_s=0.0), True, KEYFRAME)
    m.update(estimate(), 0.0, face=face(lip=0.05))
    assert m.update(None, 0.5, mouth_open=0.5).mouth_open == pytest.approx(KEYFRAME.lip_open + 0.5 * MIC_LIP_RANGE)
    m.update(estimate(), 1.0, face=face(lip=0.35))  # the widest the user opened: 0.3 above neutral
    voice = m.update(None, 1.5, mouth_open=0.5)
    assert voice.mouth_open == pytest.approx(KEYFRAME.lip_open + 0.5 * 0.3)
    assert voice.source_lip_open == KEYFRAME.lip_open
    silent = m.update(None, 1.6, mouth_open=0.0)
    assert silent.mouth_open == pytest.approx(KEYFRAME.lip_open)


def test_driving_multiplier_scales_expression_and_expression_friendly_scales_pose_too(source):
    mouth = 0.02
    outputs = {}
    for option, k in (("pose-friendly", 1.0), ("pose-friendly", 2.0), ("expression-friendly", 2.0)):
        m = stage(source, driving_option=option, driving_multiplier=k)
        m.update(estimate(), 0.0)
        outputs[option, k] = m.update(estimate(yaw=10.0, mouth=mouth), 0.1)
    base, doubled, friendly = outputs["pose-friendly", 1.0], outputs["pose-friendly", 2.0], outputs["expression-friendly", 2.0]
    assert (doubled.exp - source.exp_s)[0, 19, 1].item() == pytest.approx(2 * (base.exp - source.exp_s)[0, 19, 1].item())
    assert angle_between(doubled.R, base.R) < 0.1  # pose-friendly: the head turns 1:1
    assert angle_between(friendly.R, source.R_s) == pytest.approx(2 * angle_between(base.R, source.R_s), rel=0.02)


def test_expression_friendly_scales_by_the_ratio_of_keypoint_hull_areas(source):
    m = stage(source, driving_option="expression-friendly")
    user = estimate()
    user = MotionEstimate(user.pitch, user.yaw, user.roll, user.t, user.exp, user.scale, kp=source.x_s * 0.5)
    m.update(user, 0.0)
    posed = g.transform_keypoints(user.kp, g.euler_to_rotation(user.pitch, user.yaw, user.roll, CONV), user.t, user.exp, user.scale, CONV)
    assert m.motion_multiplier() == pytest.approx((hull_area(source.x_s) / hull_area(posed)) ** 0.5)
    assert hull_area(torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 5.0], [0.0, 2.0, 1.0], [0.2, 0.2, 0.0]]])) == pytest.approx(1.0)


def test_eye_reaim_starts_from_where_the_user_looks(source):
    m = stage(source, frontalize=True, eye_reaim_degrees=12.0)
    assert m.reaim_degrees() == 12.0  # gaze not measured yet: the full setting
    m.update(estimate(), 0.0, face=face(gaze_pitch=-5.0))  # looking 5 degrees below the camera
    assert m.reaim_degrees() == pytest.approx(5.0)
    looking = m.update(estimate(), 0.1, face=face(gaze_pitch=-5.0))
    m.update(estimate(), 0.2, face=face(gaze_pitch=3.0))  # already looking above it
    assert m.reaim_degrees() == 0.0
    straight = m.update(estimate(), 0.3, face=face(gaze_pitch=3.0))
    k = EYEBALL_KEYPOINTS[0]
    assert (straight.exp - looking.exp)[0, k, 1].item() == pytest.approx(5.0 * GAZE_UP_PER_DEGREE, abs=1e-6)


def test_a_frame_without_landmarks_keeps_the_last_measurements(source):
    m = MotionStage(CONV, source, MotionSettings(smoothing_min_cutoff=1e7, smoothing_beta=0.0), True, KEYFRAME)
    m.update(estimate(), 0.0, face=face())
    talking = m.update(estimate(), 0.1, face=face(lip=0.35))
    gap = m.update(estimate(), 0.2, face=None)  # the crop still shows a face, the mesh missed it
    assert gap.mouth_open == talking.mouth_open and gap.eye_open == talking.eye_open
