"""Weights on first use, end to end: a fake Hub serves checkpoint files in LivePortrait's layout
(demo-sized, with their hashes pinned in place of the real ones); `vcam run --yes`, the prompt,
`vcam weights fetch` and the tray's download convert them into an installed weights folder."""

from __future__ import annotations

import io
import os
import pty
import select
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from checkpoints import write_liveportrait
from clips import placed, write_clip
from fake_hub import FakeHub, running_hub

from tray.menu import build_menu
from vcam import models, weights
from vcam.app import running_pipeline
from vcam.cli import main
from vcam.first_use import WeightsDownload, offer_weights
from vcam.models import LIVEPORTRAIT, build_model, demo_config
from vcam.settings import load_settings



@pytest.fixture
def hub(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A user with no weights, a private HF cache, and the fake Hub serving LivePortrait's five files."""
    tmp_path = home
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model = build_model(demo_config(LIVEPORTRAIT), seed=3)
    monkeypatch.setitem(models.CONFIGS, "liveportrait", model.cfg)
    checkpoints = {path.name: path for path in write_liveportrait(model, tmp_path / "release")}
    with running_hub() as served:
        monkeypatch.setenv("HF_ENDPOINT", served.endpoint)
        pinned = tuple(
            served.publish(file.repo_id, file.path, checkpoints[file.name].read_bytes())
            for file in weights.HUB_FILES["liveportrait"]
        )
        monkeypatch.setitem(weights.HUB_FILES, "liveportrait", pinned)
        yield served


def installed(tmp_path: Path) -> bool:
    return (tmp_path / "data" / "weights" / "liveportrait" / weights.MANIFEST).is_file()


def test_run_with_yes_downloads_then_renders_the_real_model(hub, tmp_path, capsys, caplog):
    clip = write_clip(tmp_path / "talk.mp4", [placed(dx=2 * i) for i in range(4)])
    out = tmp_path / "avatar.mp4"
    code = main(["run", "--yes", "--source", str(clip), "--sink", f"file:{out}", "--frames", "2", "--width", "160", "--height", "90"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert installed(tmp_path)
    assert "installed liveportrait weights" in err and "100%" in err
    assert "demo model" not in caplog.text
    assert len(hub.gets()) == 5


def test_without_a_terminal_or_yes_the_demo_model_runs_and_says_how_to_fetch(hub, tmp_path, capsys, caplog):
    clip = write_clip(tmp_path / "talk.mp4", [placed() for _ in range(3)])
    code = main(["run", "--source", str(clip), "--sink", f"file:{tmp_path / 'o.mp4'}", "--frames", "1", "--width", "160", "--height", "90"])
    assert code == 0, capsys.readouterr().err
    assert not installed(tmp_path) and hub.file_requests() == []
    warning = [r.getMessage() for r in caplog.records if "demo model" in r.getMessage()]
    assert len(warning) == 1 and "vcam weights fetch" in warning[0] and "--yes" in warning[0]


@pytest.mark.parametrize("answer, downloads", [("y\n", True), ("\n", False), ("no\n", False)])
def test_prompt_downloads_only_on_yes(hub, tmp_path, answer, downloads):
    questions: list[str] = []
    stream = io.StringIO()

    def ask(question: str) -> str:
        questions.append(question)
        return answer

    result = offer_weights(load_settings(), assume_yes=False, ask=ask, stream=stream)
    assert "[y/N]" in questions[0] and "MB" in questions[0]
    assert installed(tmp_path) is downloads and (result is not None) is downloads
    if downloads:
        assert "100%" in stream.getvalue()


def test_terminal_prompt_on_a_real_tty(hub, tmp_path, monkeypatch):
    """stdin and stderr on a pseudo-terminal: the question is asked there and `y` downloads."""
    master, slave = pty.openpty()
    with os.fdopen(slave, "r", closefd=False) as tty_in, os.fdopen(slave, "w", closefd=False) as tty_out:
        monkeypatch.setattr(sys, "stdin", tty_in)
        monkeypatch.setattr(sys, "stderr", tty_out)
        os.write(master, b"y\n")
        assert offer_weights(load_settings(), assume_yes=False) is not None
    shown = b""
    while select.select([master], [], [], 0.5)[0]:
        shown += os.read(master, 1 << 16)
    os.close(master)
    os.close(slave)
    text = shown.decode()
    assert "Download them from Hugging Face now" in text and "[y/N]" in text and "100%" in text
    assert installed(tmp_path)


def test_weights_in_the_hugging_face_cache_are_converted_without_asking(hub, tmp_path, monkeypatch):
    assert main(["weights", "fetch"]) == 0
    shutil.rmtree(tmp_path / "data" / "weights")
    hub.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    stream = io.StringIO()
    assert offer_weights(load_settings(), assume_yes=False, ask=None, stream=stream) is not None
    assert "found in the Hugging Face cache" in stream.getvalue()
    assert installed(tmp_path) and hub.file_requests() == []


def test_offline_without_cache_fetch_is_one_line(hub, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["weights", "fetch"]) == 2
    err = capsys.readouterr().err.strip()
    assert "HF_HUB_OFFLINE" in err and "\n" not in err and hub.file_requests() == []


def test_tray_entry_downloads_and_the_running_camera_switches_to_the_real_model(hub, tmp_path):
    settings = load_settings(camera=str(write_clip(tmp_path / "talk.mp4", [placed(dx=i) for i in range(8)])),
                             sink=f"file:{tmp_path / 'o.mp4'}", output_width=160, output_height=90)
    with running_pipeline(settings) as pipeline:
        texts: list[str] = []
        pipeline.add_listener(lambda: texts.append(build_menu(pipeline, print, print)[2].text))
        demo_weights = pipeline.status().weights_id
        entry = build_menu(pipeline, print, print)[2]
        assert entry.text == "Download avatar weights" and entry.enabled and pipeline.status().banner
        entry.action()
        assert not build_menu(pipeline, print, print)[2].enabled  # a second click while it runs does nothing
        assert pipeline.weights_download.wait(timeout=120)
        deadline = time.monotonic() + 30
        while pipeline.status().weights_id == demo_weights and time.monotonic() < deadline:
            time.sleep(0.05)  # the model changes between two frames of the running camera
        assert pipeline.status().weights_id == weights.weights_id(tmp_path / "data" / "weights" / "liveportrait")
        assert pipeline.status().banner is None and pipeline.status().state.value != "error"
    progress = [text for text in texts if text.startswith("Downloading avatar weights: ")]
    assert progress[0].startswith("Downloading avatar weights: 0 % of") and progress[-1].startswith("Downloading avatar weights: 100 % of")
    assert "Avatar weights installed" in texts


def test_tray_download_failure_can_be_retried(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    download = WeightsDownload(load_settings())
    download.start()
    assert download.wait(timeout=60)
    assert download.text.startswith("Download avatar weights again (failed: cannot download")
    assert download.available and not installed(tmp_path)
