"""Profiles are created atomically from a photo, cached per weights, and damage is reported, not fatal."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from vcam.errors import VcamError
from vcam.models import LIVEPORTRAIT, build_model, demo_config
from vcam.profiles import ProfileStore

PORTRAIT = Path(__file__).resolve().parents[1] / "profiles" / "default" / "keyframe.jpg"
MODEL = build_model(demo_config(LIVEPORTRAIT), seed=2)
SIZE = MODEL.cfg.input_size


class CountingPrepare:
    """The model's source side, counting how often it runs."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, crop_rgb: np.ndarray):
        self.calls += 1
        assert crop_rgb.shape == (SIZE, SIZE, 3) and crop_rgb.dtype == np.uint8
        x = torch.from_numpy(crop_rgb).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            return MODEL.prepare_source(x)


def test_create_list_show_and_cache(tmp_path):
    store = ProfileStore(tmp_path)
    prepare = CountingPrepare()
    profile = store.create("alice", PORTRAIT, prepare, "w1", SIZE, credit="NASA")
    assert store.names() == ["alice"]
    assert 150 < profile.box.size < 300 and 150 < profile.box.cx < 300
    assert {p.name for p in profile.folder.iterdir()} == {"profile.toml", "keyframe.jpg", "source.safetensors"}
    assert store.load("alice").eye_open == pytest.approx(profile.eye_open) and 0.2 < profile.eye_open[0] < 0.35
    assert store.load("alice").lip_open == pytest.approx(profile.lip_open) and profile.lip_open > 0.1  # open smile
    assert store.load("alice").box == profile.box and profile.box.angle != 0.0  # levelled on the eyes
    assert prepare.calls == 1
    state = store.source_state(store.load("alice"), prepare, "w1", SIZE)
    assert prepare.calls == 1  # cached
    assert torch.allclose(state.x_s, MODEL.prepare_source(torch.from_numpy(profile.face_crop(SIZE)).permute(2, 0, 1)[None].float() / 255).x_s, atol=1e-6)
    store.source_state(store.load("alice"), prepare, "w2", SIZE)
    assert prepare.calls == 2  # recomputed for new weights
    assert store.load("alice").credit == "NASA"


def test_a_profile_from_before_the_face_was_measured_still_loads(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    shutil.copyfile(PORTRAIT, folder / "keyframe.jpg")
    (folder / "profile.toml").write_text('name = "old"\nkeyframe = "keyframe.jpg"\n[box]\ncx = 223.0\ncy = 106.14\nsize = 215.6\n')
    profile = ProfileStore(tmp_path).load("old")
    assert profile.box.angle == 0.0 and profile.eye_open is None and profile.lip_open is None


def test_photo_without_a_face_and_bad_names(tmp_path):
    store = ProfileStore(tmp_path)
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((300, 300, 3), 128, np.uint8))
    with pytest.raises(VcamError, match="no face found"):
        store.create("wall", blank, CountingPrepare(), "w", SIZE)
    cameraman = tmp_path / "cameraman.png"  # scikit-image's photographer, looking sideways
    cv2.imwrite(str(cameraman), skimage.data.camera())
    with pytest.raises(VcamError, match=r"cameraman.png: the face is turned away \(\+\d+° yaw; at most ±30°\)") as error:
        store.create("cameraman", cameraman, CountingPrepare(), "w", SIZE)
    assert "\n" not in str(error.value)
    with pytest.raises(VcamError, match="not allowed"):
        store.create("../evil", PORTRAIT, CountingPrepare(), "w", SIZE)
    with pytest.raises(VcamError, match="cannot read image"):
        store.create("nofile", tmp_path / "missing.jpg", CountingPrepare(), "w", SIZE)
    assert store.names() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cameraman.png", "wall.png"]  # no half-made folders


def test_failed_creation_leaves_the_old_profile_intact(tmp_path):
    store = ProfileStore(tmp_path)
    store.create("bob", PORTRAIT, CountingPrepare(), "w", SIZE)

    def broken(_crop):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.create("bob", PORTRAIT, broken, "w", SIZE, replace=True)
    assert store.load("bob").keyframe.shape == (512, 512, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bob"]
    with pytest.raises(VcamError, match="already exists"):
        store.create("bob", PORTRAIT, CountingPrepare(), "w", SIZE)


def test_damaged_profiles_are_reported_and_skipped(tmp_path):
    store = ProfileStore(tmp_path)
    store.create("good", PORTRAIT, CountingPrepare(), "w", SIZE)
    shutil.copytree(tmp_path / "good", tmp_path / "broken")
    (tmp_path / "broken" / "profile.toml").write_text("box = [[[")
    shutil.copytree(tmp_path / "good", tmp_path / "nokey")
    (tmp_path / "nokey" / "keyframe.jpg").unlink()
    good, bad = store.scan()
    assert [p.name for p in good] == ["good"]
    assert {p.name for p in bad} == {"broken", "nokey"}
    assert all("\n" not in p.message and "damaged" in p.message for p in bad)


def test_damaged_source_cache_is_recomputed(tmp_path):
    store = ProfileStore(tmp_path)
    prepare = CountingPrepare()
    profile = store.create("c", PORTRAIT, prepare, "w", SIZE)
    (profile.folder / "source.safetensors").write_bytes(b"garbage")
    store.source_state(store.load("c"), prepare, "w", SIZE)
    assert prepare.calls == 2


def test_remove_and_unknown_profile(tmp_path):
    store = ProfileStore(tmp_path)
    store.create("gone", PORTRAIT, CountingPrepare(), "w", SIZE)
    store.remove("gone")
    assert store.names() == []
    with pytest.raises(VcamError, match="vcam profile create gone"):
        store.load("gone")
    with pytest.raises(VcamError, match="no profile named"):
        store.remove("gone")
