"""The command line as a user types it: run a clip into a file, manage profiles and weights, errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from checkpoints import write_liveportrait
from clips import placed, write_clip

from vcam.cli import main
from vcam.models import LIVEPORTRAIT, build_model, demo_config

REPO = Path(__file__).resolve().parents[1]


def frame_count(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    return count


def test_run_clip_to_file(home, capsys, caplog):
    clip = write_clip(home / "talk.mp4", [placed(dx=3 * i) for i in range(10)])
    out = home / "avatar.mp4"
    code = main(["run", "--source", str(clip), "--sink", f"file:{out}", "--frames", "6", "--width", "320", "--height", "180"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert frame_count(out) == 6
    assert "demo model" in caplog.text and "vcam weights fetch" in caplog.text
    assert "6 frames out" in err


def test_run_clip_into_the_null_sink(home, capsys):
    clip = write_clip(home / "talk.mp4", [placed(dx=3 * i) for i in range(8)])
    code = main(["run", "--source", str(clip), "--sink", "null", "--frames", "5", "--width", "320", "--height", "180"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "vcam: 5 frames out of" in err
    assert re.search(r"vcam: first frame out \d+\.\d s after start", err)


def test_run_with_the_camera_off_says_so(home, capsys):
    code = main(["run", "--camera-off", "--sink", "null", "--frames", "3", "--width", "320", "--height", "180"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "vcam: 3 frames out (camera off)," in err


def test_bad_settings_and_missing_profile_are_one_line(home, capsys):
    (home / "config").mkdir()
    (home / "config" / "settings.toml").write_text("output_fps = 0\n")
    assert main(["run", "--sink", "file:x.mp4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vcam: error: invalid setting output_fps") and "\n" not in err
    (home / "config" / "settings.toml").write_text("")
    assert main(["run", "--profile", "nobody", "--sink", "file:x.mp4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "vcam profile create nobody" in err and "\n" not in err


def test_corrupt_profile_is_reported_not_a_traceback(home, capsys):
    (home / "profiles" / "default" / "profile.toml").write_text("box = [")
    assert main(["run", "--sink", f"file:{home / 'o.mp4'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "damaged" in err and "Traceback" not in err and "\n" not in err
    assert main(["profile", "list"]) == 0
    assert "! default:" in capsys.readouterr().out


def test_profile_commands(home, capsys):
    photo = home / "me.png"
    cv2.imwrite(str(photo), placed(dx=10))
    assert main(["profile", "create", "me", str(photo), "--credit", "selfie"]) == 0
    assert main(["profile", "list"]) == 0
    listing = capsys.readouterr().out
    assert "* default" in listing and "  me" in listing
    assert main(["profile", "show", "me"]) == 0
    assert "credit:   selfie" in capsys.readouterr().out
    assert main(["profile", "create", "me", str(photo)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["profile", "remove", "me"]) == 0
    assert not (home / "profiles" / "me").exists()
    nothing = home / "wall.png"
    cv2.imwrite(str(nothing), np.full((200, 200, 3), 90, np.uint8))
    assert main(["profile", "create", "wall", str(nothing)]) == 2
    assert "no face found" in capsys.readouterr().err


def test_weights_import_and_verify(home, capsys, monkeypatch):
    model = build_model(demo_config(LIVEPORTRAIT), seed=4)
    files = write_liveportrait(model, home / "downloads")
    # The demo-sized layout stands in for the real files: import checks names and shapes the same way.
    monkeypatch.setitem(__import__("vcam.models", fromlist=["CONFIGS"]).CONFIGS, "liveportrait", model.cfg)
    assert main(["weights", "import", *map(str, files)]) == 0
    assert main(["weights", "verify"]) == 0
    installed = home / "data" / "weights" / "liveportrait" / "warping_module.safetensors"
    installed.write_bytes(installed.read_bytes()[:-8] + b"\0" * 8)
    assert main(["weights", "verify"]) == 2
    assert "warping_module.safetensors" in capsys.readouterr().err


def test_doctor_reports_every_check(home, capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for word in ("settings:", "camera", "virtual camera", "GPU", "TensorRT", "weights:", "face tracking: ", "profiles", "microphone"):
        assert word in out, word
    assert "vcam weights fetch" in out


def test_run_flags_come_from_the_settings_with_their_names(home):
    """One declaration per option: each flag reaches its setting, under the names users know."""
    from vcam.cli import _settings, build_parser
    from vcam.settings import run_flags

    flags = {option.flag: option for option in run_flags()}
    assert set(flags) == {
        "--source", "--sink", "--profile", "--backend", "--model", "--strength", "--width", "--height", "--fps",
        "--frontalize", "--mirror", "--preview", "--audio", "--camera-off",
    }
    for command in ("run", "tray"):
        for option in flags.values():
            if option.kind is bool:
                for given, expected in ((option.flag, True), (f"--no-{option.flag[2:]}", False)):
                    settings = _settings(build_parser().parse_args([command, given]))
                    assert getattr(settings, option.field) is expected, given
                continue
            value = option.choices()[-1] if option.choices else {int: "321", float: "0.5", str: "alice"}[option.kind]
            settings = _settings(build_parser().parse_args([command, option.flag, value]))
            assert getattr(settings, option.field) == option.kind(value), option.flag


LEAVING = """
import atexit, sys, threading, time
import vcam.app
from vcam.cli import command
atexit.register(print, "torn down")
if sys.argv[1] == "compiling":
    threading.Thread(target=time.sleep, args=(60,), name=vcam.app.COMPILE_THREAD, daemon=True).start()
sys.argv[1:] = ["profile", "list"]
command()
"""


@pytest.mark.parametrize("compiling", [True, False])
def test_the_command_leaves_without_teardown_while_a_renderer_compiles(compiling: bool, tmp_path: Path) -> None:
    """Tearing the interpreter down under a compiling thread aborts the process; the command skips it then."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "VCAM_SETTINGS_FILE": str(tmp_path / "settings.toml")}
    done = subprocess.run([sys.executable, "-c", LEAVING, "compiling" if compiling else "idle"], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "default" in done.stdout and ("torn down" in done.stdout) is not compiling
