"""Settings: TOML file < VCAM_* environment < command line, with one-line errors."""

import pytest

from vcam.errors import VcamError
from vcam.settings import load_settings, save_settings


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    path = tmp_path / "settings.toml"
    monkeypatch.setenv("VCAM_SETTINGS_FILE", str(path))
    for key in ("VCAM_CAMERA_FPS", "VCAM_FRONTALIZE", "VCAM_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    return path


def test_defaults_without_a_file(settings_file):
    s = load_settings()
    assert (s.output_width, s.output_height) == (1280, 720)
    assert s.profile == "default" and s.sink == "virtual" and s.backend == "auto"


def test_precedence_file_env_cli(settings_file, monkeypatch):
    settings_file.write_text('profile = "alice"\ncamera_fps = 24\nfrontalize = true\n')
    s = load_settings()
    assert (s.profile, s.camera_fps, s.frontalize) == ("alice", 24, True)
    monkeypatch.setenv("VCAM_CAMERA_FPS", "60")
    assert load_settings().camera_fps == 60
    s = load_settings(camera_fps=15, profile=None)
    assert s.camera_fps == 15 and s.profile == "alice"


@pytest.mark.parametrize(
    "content, words",
    [
        ("camera_fps = -3\n", ["camera_fps", "-3", "greater than 0"]),
        ('frontalize_strength = "lots"\n', ["frontalize_strength", "lots"]),
        ('backend = "magic"\n', ["backend", "magic"]),
        ("colour = 3\n", ["colour"]),
        ("camera_fps = = 3\n", ["not valid TOML"]),
    ],
)
def test_bad_settings_give_one_line_errors(settings_file, content, words):
    settings_file.write_text(content)
    with pytest.raises(VcamError) as err:
        load_settings()
    message = str(err.value)
    assert "\n" not in message
    assert all(w in message for w in words), message
    assert str(settings_file) in message


def test_bad_environment_value(settings_file, monkeypatch):
    monkeypatch.setenv("VCAM_CAMERA_FPS", "fast")
    with pytest.raises(VcamError, match="camera_fps"):
        load_settings()


def test_save_merges_atomically_and_keeps_other_keys(settings_file):
    settings_file.write_text('profile = "alice"\n# my note\ncamera_fps = 24\n')
    save_settings({"frontalize": True, "frontalize_strength": 0.5})
    s = load_settings()
    assert (s.profile, s.camera_fps, s.frontalize, s.frontalize_strength) == ("alice", 24, True, 0.5)
    assert [p.name for p in settings_file.parent.iterdir()] == ["settings.toml"]


def test_save_refuses_to_overwrite_a_broken_file(settings_file):
    settings_file.write_text("profile = \n")
    with pytest.raises(VcamError, match="not valid TOML"):
        save_settings({"frontalize": True})
    assert settings_file.read_text() == "profile = \n"
