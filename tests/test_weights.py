"""Checkpoints in the public layouts import, convert to safetensors and load back exactly."""

import json
import os

import pytest
import torch

from checkpoints import write_facevid2vid, write_liveportrait
from vcam.cli import main
from vcam.errors import VcamError
from vcam.models import FACEVID2VID, FACEVID2VID_BETA, LIVEPORTRAIT, build_model, demo_config
from vcam.weights import import_and_install, load_model, verify, weights_id


def render_once(model):
    cfg = model.cfg
    crop = torch.rand(1, 3, cfg.input_size, cfg.input_size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        source = model.prepare_source(crop)
        return model.render(source, model.head_motion(model.extract_motion(crop)))


def test_liveportrait_files_import_convert_and_load(tmp_path):
    model = build_model(demo_config(LIVEPORTRAIT), seed=11)
    files = write_liveportrait(model, tmp_path / "downloads")
    dest = import_and_install(model.cfg, files, tmp_path / "weights")
    manifest = json.loads((dest / "manifest.json").read_text())
    assert sorted(manifest["files"]) == [
        "appearance_feature_extractor.safetensors", "motion_extractor.safetensors",
        "spade_generator.safetensors", "stitching_retargeting_module.safetensors", "warping_module.safetensors",
    ]
    assert set(manifest["sources"]) == {f.name for f in files}
    loaded = load_model(dest)
    assert torch.equal(render_once(loaded), render_once(model))
    assert verify(dest) == []


@pytest.mark.parametrize("release", [FACEVID2VID, FACEVID2VID_BETA], ids=lambda c: c.name)
def test_facevid2vid_training_checkpoint_imports_as_its_release(tmp_path, release):
    model = build_model(demo_config(release), seed=12)
    checkpoint = write_facevid2vid(model, tmp_path / "00000189-checkpoint.pth.tar")
    # `--model facevid2vid` imports either release: the checkpoint's keys say which one it is.
    dest = import_and_install(demo_config(FACEVID2VID), [checkpoint], tmp_path / "weights")
    loaded = load_model(dest)
    assert loaded.cfg.name == f"{release.name}-demo"
    assert json.loads((dest / "manifest.json").read_text())["model"] == f"{release.name}-demo"
    assert torch.equal(render_once(loaded), render_once(model))


def test_a_file_that_is_no_checkpoint_is_one_clear_line(tmp_path):
    for name, data in (("notes.txt", b"e-mail the avatar to Sam\n"), ("empty.pth.tar", b""), ("photo.pth.tar", b"\xff\xd8\xff\xe0JFIF")):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(VcamError, match="is not a PyTorch checkpoint") as err:
            import_and_install(FACEVID2VID, [path], tmp_path / "w")
        assert "\n" not in str(err.value) and name in str(err.value)
    # Pickle-looking bytes that are no torch file are refused as well, not with the unpickler's error.
    broken = tmp_path / "broken.pth.tar"
    broken.write_bytes(b"\x80\x02e" + bytes(30))
    with pytest.raises(VcamError, match="is not a PyTorch checkpoint"):
        import_and_install(FACEVID2VID, [broken], tmp_path / "w")
    assert not (tmp_path / "w" / "manifest.json").exists()


def test_verify_and_weights_id_notice_changed_files(tmp_path):
    model = build_model(demo_config(LIVEPORTRAIT), seed=13)
    dest = import_and_install(model.cfg, write_liveportrait(model, tmp_path / "d"), tmp_path / "w")
    before = weights_id(dest)
    assert before == weights_id(dest)
    target = dest / "warping_module.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    assert verify(dest) == ["warping_module.safetensors"]
    other = build_model(demo_config(LIVEPORTRAIT), seed=14)
    dest2 = import_and_install(other.cfg, write_liveportrait(other, tmp_path / "d2"), tmp_path / "w2")
    assert weights_id(dest2) != before


def mutate(path, change):
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda s: s.pop("second.weight"), ["missing", "second.weight"]),
        (lambda s: s.update({"extra.weight": torch.zeros(1)}), ["unexpected", "extra.weight"]),
        (lambda s: s.update({"second.bias": torch.zeros(3)}), ["wrong shape", "second.bias"]),
    ],
)
def test_layout_mismatches_name_the_keys(tmp_path, change, words):
    model = build_model(demo_config(LIVEPORTRAIT), seed=15)
    files = write_liveportrait(model, tmp_path)
    mutate(tmp_path / "appearance_feature_extractor.pth", change)
    with pytest.raises(VcamError) as err:
        import_and_install(model.cfg, files, tmp_path / "w")
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words)
    assert not (tmp_path / "w" / "manifest.json").exists()


def test_missing_batchnorm_counters_are_accepted(tmp_path):
    model = build_model(demo_config(LIVEPORTRAIT), seed=16)
    files = write_liveportrait(model, tmp_path)
    mutate(tmp_path / "warping_module.pth", lambda s: [s.pop(k) for k in [k for k in s if k.endswith("num_batches_tracked")]])
    assert torch.equal(render_once(load_model(import_and_install(model.cfg, files, tmp_path / "w"))), render_once(model))


class Payload:
    """Stands for arbitrary code a malicious pickle could run."""


def test_pickled_objects_are_refused(tmp_path):
    model = build_model(demo_config(LIVEPORTRAIT), seed=17)
    files = write_liveportrait(model, tmp_path)
    # An arbitrary class inside the pickle: weights_only loading must refuse it.
    torch.save({"weights": Payload(), "x": torch.zeros(1)}, tmp_path / "motion_extractor.pth")
    with pytest.raises(VcamError, match="refusing to unpickle"):
        import_and_install(model.cfg, files, tmp_path / "w")


def test_missing_file_and_wrong_checkpoint_are_clear(tmp_path):
    model = build_model(demo_config(LIVEPORTRAIT), seed=18)
    files = write_liveportrait(model, tmp_path)
    with pytest.raises(VcamError, match="spade_generator.pth is missing"):
        import_and_install(model.cfg, [f for f in files if f.name != "spade_generator.pth"], tmp_path / "w")
    fv = build_model(demo_config(FACEVID2VID), seed=19)
    with pytest.raises(VcamError, match="no 'generator' entry"):
        import_and_install(fv.cfg, [files[0]], tmp_path / "w2")


def test_no_weights_installed_says_how_to_get_them(tmp_path):
    with pytest.raises(VcamError, match="vcam weights fetch"):
        load_model(tmp_path)


def test_importing_notes_on_the_command_line_is_one_line(tmp_path, monkeypatch, capsys):
    for key in [k for k in os.environ if k.startswith("VCAM_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("VCAM_SETTINGS_FILE", str(tmp_path / "settings.toml"))
    monkeypatch.setenv("VCAM_DATA_DIR", str(tmp_path / "data"))
    notes = tmp_path / "notes.txt"
    notes.write_text("download the checkpoint from the release page\n")
    assert main(["weights", "import", "--model", "facevid2vid", str(notes)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "notes.txt is not a PyTorch checkpoint" in err


def test_a_folder_without_one_networks_file_is_refused(tmp_path):
    model = build_model(demo_config(LIVEPORTRAIT), seed=18)
    dest = import_and_install(model.cfg, write_liveportrait(model, tmp_path / "downloads"), tmp_path / "w")
    manifest = json.loads((dest / "manifest.json").read_text())
    del manifest["files"]["spade_generator.safetensors"]
    (dest / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VcamError, match="no weights for spade_generator: run `vcam weights fetch`"):
        load_model(dest)
