"""What a user trips on gives one line that says what to do, through the CLI's main()."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
import torch
from checkpoints import write_liveportrait
from clips import placed

from vcam.cli import main
from vcam.models import LIVEPORTRAIT, build_model, demo_config
from vcam.render.bench import TerminalFrameProgress, frame_counts, run_bench
from vcam.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A user with no settings file, no weights and the default profile."""
    for key in list(os.environ):
        if key.startswith("VCAM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("VCAM_SETTINGS_FILE", str(tmp_path / "config" / "settings.toml"))
    monkeypatch.setenv("VCAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VCAM_PROFILES_DIR", str(tmp_path / "profiles"))
    monkeypatch.setenv("VCAM_ENGINES_DIR", str(tmp_path / "engines"))
    monkeypatch.setenv("VCAM_AUDIO", "false")
    shutil.copytree(REPO / "profiles" / "default", tmp_path / "profiles" / "default")
    return tmp_path


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line (status lines such as the renderer choice may come before it)."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("vcam: error: ")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]) and "Traceback" not in err, err
    return errors[0]


@pytest.fixture
def read_only(home: Path) -> Iterator[Path]:
    """The profiles folder made really unwritable. chmod does not stop root, so as root it becomes a
    read-only bind mount (EROFS, errno 30) or, where mounting is not allowed, immutable (EPERM)."""
    folder = home / "profiles"
    undo: list[list[str]] = []
    if os.geteuid() != 0:
        folder.chmod(0o555)
    elif subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0:
        undo.append(["umount", str(folder)])
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True)
    elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        undo.append(["chattr", "-i", str(folder)])
    try:
        probe = folder / ".probe"
        try:
            probe.mkdir()
        except OSError:
            yield folder
        else:
            probe.rmdir()
            pytest.skip("cannot make a folder read-only here (root without mount or chattr)")
    finally:
        for command in undo:
            subprocess.run(command, check=True)
        if os.geteuid() != 0:
            folder.chmod(0o755)


def test_profiles_folder_that_is_a_file(home, monkeypatch, capsys):
    (home / "not-a-folder").write_text("oops")
    monkeypatch.setenv("VCAM_PROFILES_DIR", str(home / "not-a-folder"))
    for argv in (["profile", "list"], ["profile", "remove", "x"], ["run", "--sink", "file:o.mp4"]):
        assert main(argv) == 2
        assert "is a file, not a folder" in one_line_error(capsys)


def test_read_only_profiles_folder_on_create_and_remove(home, read_only, capsys):
    photo = home / "me.png"
    cv2.imwrite(str(photo), placed(dx=10))
    assert main(["profile", "create", "me", str(photo)]) == 2
    assert "cannot create profile 'me'" in (err := one_line_error(capsys)) and "not writable" in err
    assert main(["profile", "remove", "default"]) == 2
    assert "cannot remove profile 'default'" in one_line_error(capsys)
    assert (read_only / "default" / "profile.toml").is_file()
    assert main(["profile", "list"]) == 0  # reading still works


def test_settings_file_that_is_not_utf8(home, capsys):
    (home / "config").mkdir()
    (home / "config" / "settings.toml").write_bytes('profile = "caf\xe9"\n'.encode("latin-1"))
    assert main(["settings"]) == 2
    assert "is not UTF-8 text" in one_line_error(capsys)


@pytest.mark.parametrize("content", [b"my notes\nabout the model\n", os.urandom(4000)])
def test_importing_a_file_that_is_not_a_checkpoint(home, capsys, content):
    notes = home / "notes.txt"
    notes.write_bytes(content)
    assert main(["weights", "import", "--model", "facevid2vid", str(notes)]) == 2
    assert "is not a PyTorch checkpoint" in one_line_error(capsys)


def test_weights_import_shows_no_warnings(home, capsys, monkeypatch, recwarn):
    model = build_model(demo_config(LIVEPORTRAIT), seed=4)
    files = write_liveportrait(model, home / "downloads")
    monkeypatch.setitem(__import__("vcam.models", fromlist=["CONFIGS"]).CONFIGS, "liveportrait", model.cfg)
    assert main(["weights", "import", *map(str, files)]) == 0
    assert [str(w.message) for w in recwarn] == []


@pytest.mark.parametrize("frames", ["0", "-5"])
def test_frames_must_be_positive(home, capsys, frames):
    out = home / "o.mp4"
    assert main(["run", "--sink", f"file:{out}", "--frames", frames]) == 2
    assert "--frames must be 1 or more" in one_line_error(capsys)
    assert not out.exists()


def test_special_file_as_source_says_what_it_is(home, capsys):
    assert main(["run", "--source", "/dev/null", "--sink", f"file:{home / 'o.mp4'}", "--frames", "1"]) == 2
    err = one_line_error(capsys)
    assert "/dev/null is not a video, an image or a folder" in err and "does not exist" not in err


def test_empty_camera_variable(home, monkeypatch, capsys):
    monkeypatch.setenv("VCAM_CAMERA", "")
    assert main(["run", "--sink", f"file:{home / 'o.mp4'}", "--frames", "1"]) == 2
    err = one_line_error(capsys)
    assert "camera" in err and "empty" in err and "VCAM_CAMERA" in err and "holds no images" not in err


def test_unknown_variable_warns_once_naming_the_nearest_option(home, monkeypatch, caplog):
    monkeypatch.setenv("VCAM_FRONTALISE", "true")
    with caplog.at_level(logging.WARNING, logger="vcam"):
        load_settings()
        load_settings()
    warnings = [r.getMessage() for r in caplog.records if "VCAM_FRONTALISE" in r.getMessage()]
    assert warnings == ["ignoring unknown environment variable VCAM_FRONTALISE; did you mean VCAM_FRONTALIZE?"]


def test_settings_prints_toml_that_reads_back_as_the_same_settings(home, monkeypatch, capsys):
    monkeypatch.setenv("VCAM_FRONTALIZE", "true")
    monkeypatch.setenv("VCAM_CAMERA", "/dev/video3")
    assert main(["settings"]) == 0
    printed = capsys.readouterr().out
    parsed = tomllib.loads(printed)
    assert parsed["camera"] == "/dev/video3" and parsed["frontalize"] is True
    (home / "config").mkdir()
    (home / "config" / "settings.toml").write_text(printed)
    for key in ("VCAM_FRONTALIZE", "VCAM_CAMERA"):
        monkeypatch.delenv(key)
    assert load_settings() == Settings(**parsed)
    assert load_settings().model_dump() == Settings(camera="/dev/video3", frontalize=True).model_dump()


def test_doctor_notices_truncated_weights(home, monkeypatch, capsys):
    model = build_model(demo_config(LIVEPORTRAIT), seed=4)
    files = write_liveportrait(model, home / "downloads")
    monkeypatch.setitem(__import__("vcam.models", fromlist=["CONFIGS"]).CONFIGS, "liveportrait", model.cfg)
    assert main(["weights", "import", *map(str, files)]) == 0
    installed = home / "data" / "weights" / "liveportrait" / "spade_generator.safetensors"
    installed.write_bytes(installed.read_bytes()[: installed.stat().st_size // 2])
    capsys.readouterr()
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "weights:" in line)
    assert line.startswith("[!!]") and "spade_generator.safetensors" in line
    assert "vcam weights fetch" in out.split(line, 1)[1].splitlines()[1]


def test_bench_shows_progress_with_time_left_and_fits_the_frame_count_to_the_device(home):
    streams: dict[str, io.StringIO] = {}

    def progress(label: str) -> TerminalFrameProgress:
        streams[label] = io.StringIO()
        return TerminalFrameProgress(label, streams[label], redraw_every=0.0)

    results = run_bench("liveportrait-demo", ["torch-cpu"], engines_dir=home / "engines", out=lambda line: None, progress=progress)
    frames, warmup = frame_counts(torch.cuda.is_available())
    assert [r.frames for r in results] == [frames, frames]
    assert list(streams) == ["bench: eager-fp32", "bench: torch-cpu"]
    text = streams["bench: eager-fp32"].getvalue()
    assert "s left" in text and text.endswith(f"{frames + warmup}/{frames + warmup} frames\x1b[K\n")


def test_onnx_export_prints_only_vcam_lines(home, capfd):
    assert main(["engines", "build", "--onnx-only"]) == 0
    captured = capfd.readouterr()
    assert "Replaced" not in captured.err + captured.out and "unused" not in captured.err
    assert all(line.startswith("vcam: ") for line in captured.err.splitlines()), captured.err
    assert "onnx engines for liveportrait-demo written" in captured.out
