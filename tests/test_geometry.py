import math

import pytest
import torch

from vcam.models import FACEVID2VID, LIVEPORTRAIT
from vcam.models import geometry as g

LP = LIVEPORTRAIT.convention
FV = FACEVID2VID.convention


def deg(x: float) -> torch.Tensor:
    return torch.tensor([x], dtype=torch.float64)


def test_bins_to_degrees_is_the_softmax_expectation():
    peaked = torch.full((1, 66), -1e4, dtype=torch.float64)
    peaked[0, 33] = 0
    assert g.bins_to_degrees(peaked, LP).item() == pytest.approx(33 * 3 - 97.5)
    assert g.bins_to_degrees(peaked, FV).item() == pytest.approx(0.0)
    uniform = torch.zeros(1, 66, dtype=torch.float64)
    assert g.bins_to_degrees(uniform, LP).item() == pytest.approx(32.5 * 3 - 97.5)
    two = torch.full((1, 66), -1e4, dtype=torch.float64)
    two[0, [10, 20]] = 0
    assert g.bins_to_degrees(two, FV).item() == pytest.approx(15 * 3 - 99)


@pytest.mark.parametrize("conv", [LP, FV])
def test_identity_pose_is_identity_matrix(conv):
    R = g.euler_to_rotation(deg(0), deg(0), deg(0), conv)
    assert torch.allclose(R, torch.eye(3, dtype=torch.float64)[None])


def test_ninety_degree_yaw_turns_x_into_minus_z():
    R = g.euler_to_rotation(deg(0), deg(90), deg(0), LP)[0]
    assert torch.allclose(R @ torch.tensor([1.0, 0, 0], dtype=torch.float64), torch.tensor([0, 0, -1.0], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(R @ torch.tensor([0, 0, 1.0], dtype=torch.float64), torch.tensor([1.0, 0, 0], dtype=torch.float64), atol=1e-12)


def test_composition_order_matches_each_layout():
    # Hand-computed: pitch 90°, yaw 90°. LivePortrait R = Ry·Rx, face-vid2vid R = Rx·Ry.
    lp = g.euler_to_rotation(deg(90), deg(90), deg(0), LP)[0]
    assert torch.allclose(lp, torch.tensor([[0, 1, 0], [0, 0, -1], [-1, 0, 0]], dtype=torch.float64), atol=1e-12)
    fv = g.euler_to_rotation(deg(90), deg(90), deg(0), FV)[0]  # trained with pi ≈ 3.14
    assert torch.allclose(fv, torch.tensor([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=torch.float64), atol=2e-3)


def test_liveportrait_row_vector_form_agrees():
    pitch, yaw, roll = deg(12), deg(-30), deg(7)
    R = g.euler_to_rotation(pitch, yaw, roll, LP)
    x = torch.randn(1, 5, 3, dtype=torch.float64)
    # LivePortrait multiplies row vectors by the transposed matrix (Rz·Ry·Rx)ᵀ.
    assert torch.allclose(x @ R.transpose(1, 2), (R @ x.transpose(1, 2)).transpose(1, 2))


@pytest.mark.parametrize("conv", [LP, FV])
def test_euler_round_trip(conv):
    pitch, yaw, roll = deg(-17), deg(33), deg(8)
    back = g.rotation_to_euler(g.euler_to_rotation(pitch, yaw, roll, conv), conv)
    assert [round(v.item(), 6) for v in back] == [-17, 33, 8]


def test_keypoint_transforms():
    x_c = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.float64)
    R = g.euler_to_rotation(deg(0), deg(90), deg(0), LP)
    t = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)
    delta = torch.tensor([[[0.01, 0.02, 0.03]]], dtype=torch.float64)
    s = torch.tensor([[2.0]], dtype=torch.float64)
    rotated = torch.tensor([3.0, 2.0, -1.0], dtype=torch.float64)  # Ry(90°)·(1, 2, 3)
    lp = g.transform_keypoints(x_c, R, t, delta, s, LP)[0, 0]
    assert torch.allclose(lp, 2 * (rotated + delta[0, 0]) + torch.tensor([0.1, 0.2, 0.0], dtype=torch.float64))
    fv = g.transform_keypoints(x_c, R, t, delta, None, FV)[0, 0]
    assert torch.allclose(fv, rotated + t[0] + delta[0, 0])


def test_jacobian_transform():
    R = g.euler_to_rotation(deg(10), deg(20), deg(30), LP)
    J_c = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    J = g.transform_jacobians(J_c, R)
    for k in range(4):
        assert torch.allclose(J[0, k], R[0] @ J_c[0, k])


def test_free_view_composes_user_rotation_on_the_left():
    R_u = g.euler_to_rotation(deg(0), deg(90), deg(0), LP)
    R_d = g.euler_to_rotation(deg(90), deg(0), deg(0), LP)
    R, t = g.compose_free_view(R_u, R_d, torch.ones(1, 3), torch.zeros(1, 3))
    assert torch.allclose(R, R_u @ R_d)
    assert not torch.allclose(R, R_d @ R_u)
    assert torch.equal(t, torch.ones(1, 3))


def test_relative_rotation_is_source_at_neutral_and_follows_the_change():
    R_s = g.euler_to_rotation(deg(5), deg(-20), deg(3), LP)
    R_0 = g.euler_to_rotation(deg(-4), deg(10), deg(1), LP)
    assert torch.allclose(g.relative_rotation(R_s, R_0, R_0), R_s)
    R_d = R_0 @ g.euler_to_rotation(deg(0), deg(15), deg(0), LP)
    assert torch.allclose(g.relative_rotation(R_s, R_0, R_d), R_s @ g.euler_to_rotation(deg(0), deg(15), deg(0), LP))


def test_slerp_halves_the_angle():
    R_a = torch.eye(3, dtype=torch.float64)[None]
    R_b = g.euler_to_rotation(deg(0), deg(80), deg(0), LP)
    assert torch.allclose(g.slerp_rotation(R_a, R_b, 0.0), R_a, atol=1e-9)
    assert torch.allclose(g.slerp_rotation(R_a, R_b, 1.0), R_b, atol=1e-9)
    mid = g.slerp_rotation(R_a, R_b, 0.5)
    assert torch.allclose(mid, g.euler_to_rotation(deg(0), deg(40), deg(0), LP), atol=1e-9)
    assert torch.allclose(g.slerp_rotation(R_b, R_b, 0.3), R_b, atol=1e-9)


def test_quaternion_round_trip_for_large_rotations():
    for angles in [(170, 10, -5), (0, 179, 0), (-90, 45, 120)]:
        R = g.euler_to_rotation(*(deg(a) for a in angles), LP)
        assert torch.allclose(g.quaternion_to_rotation(g.rotation_to_quaternion(R)), R, atol=1e-9)
        assert math.isclose(torch.linalg.det(R[0]).item(), 1.0)
