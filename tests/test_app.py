"""vcam.app: the wiring from settings to a running pipeline releases what it opened, also when it fails."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from pathlib import Path

import pytest
from waiting import wait_until

import vcam
from vcam import app
from vcam.errors import VcamError
from vcam.settings import Settings

REPO = Path(__file__).resolve().parents[1]


class RecordedRenderer:
    """The real renderer, with its close() recorded (a GPU backend frees its device context there)."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.closed = inner, inner.name, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def close(self) -> None:
        self.closed += 1
        self.inner.close()


def test_a_failed_start_closes_the_renderer(tmp_path, monkeypatch):
    shutil.copytree(REPO / "profiles" / "default", tmp_path / "profiles" / "default")
    opened: list[RecordedRenderer] = []
    open_renderer = app.open_renderer_quickly

    def recorded(settings, loaded):
        started = open_renderer(settings, loaded)
        opened.append(RecordedRenderer(started.renderer))
        return dataclasses.replace(started, renderer=opened[-1])

    monkeypatch.setattr(app, "open_renderer_quickly", recorded)
    settings = Settings(
        camera=str(tmp_path / "no-such-clip.mp4"), sink=f"file:{tmp_path / 'out.mp4'}", backend="torch",
        profiles_dir=tmp_path / "profiles", weights_dir=tmp_path / "weights", audio=False,
    )
    with pytest.raises(VcamError, match="no-such-clip"):
        with app.running_pipeline(settings):
            pass
    assert [r.closed for r in opened] == [1]


def test_the_camera_opens_while_the_renderer_starts(tmp_path, monkeypatch):
    """The renderer's start waits until the camera is being opened: one after the other would never get there."""
    shutil.copytree(REPO / "profiles" / "default", tmp_path / "profiles" / "default")
    camera_opening = threading.Event()
    enter_source, open_renderer = app._enter_source, app.open_renderer_quickly

    def entered(stack, source):
        camera_opening.set()
        return enter_source(stack, source)

    def started(settings, loaded):
        assert camera_opening.wait(30), "the camera did not open while the renderer started"
        return open_renderer(settings, loaded)

    monkeypatch.setattr(app, "_enter_source", entered)
    monkeypatch.setattr(app, "open_renderer_quickly", started)
    settings = Settings(
        camera=str(REPO / "profiles" / "default" / "keyframe.jpg"), sink=f"file:{tmp_path / 'out.y4m'}", output_width=320,
        output_height=180, profiles_dir=tmp_path / "profiles", weights_dir=tmp_path / "weights", audio=False,
    )
    with app.running_pipeline(settings) as pipeline:
        wait_until(lambda: pipeline.status().frames_out >= 2, "frames", 60.0)


def test_a_renderer_that_cannot_start_closes_the_camera_and_says_why(tmp_path, monkeypatch):
    shutil.copytree(REPO / "profiles" / "default", tmp_path / "profiles" / "default")
    released = []
    enter_source = app._enter_source

    def entered(stack, source):
        stack.callback(released.append, source)  # runs once the camera itself is closed
        return enter_source(stack, source)

    def fails(settings, loaded):
        raise VcamError("the renderer cannot run here: no such backend")

    monkeypatch.setattr(app, "_enter_source", entered)
    monkeypatch.setattr(app, "open_renderer_quickly", fails)
    settings = Settings(
        camera=str(REPO / "profiles" / "default" / "keyframe.jpg"), sink=f"file:{tmp_path / 'out.y4m'}", output_width=320,
        output_height=180, profiles_dir=tmp_path / "profiles", weights_dir=tmp_path / "weights", audio=False,
    )
    with pytest.raises(VcamError, match="no such backend"):
        with app.running_pipeline(settings):
            pass
    assert len(released) == 1


def test_a_live_start_renders_with_the_quick_renderer_then_swaps_in_the_full_one(tmp_path, monkeypatch):
    """What a compiling backend does at start-up (its quick stand-in first, the compiled renderer
    built on a thread of its own), with CPU renderers standing for both."""
    from vcam.render.select import StartedRenderer
    from vcam.render.torch_backend import TorchRenderer

    shutil.copytree(REPO / "profiles" / "default", tmp_path / "profiles" / "default")
    may_finish = threading.Event()
    quick: list[RecordedRenderer] = []
    full: list[RecordedRenderer] = []

    build_began: list[float] = []

    def build_full(model):
        build_began.append(time.monotonic())
        assert may_finish.wait(60)
        full.append(RecordedRenderer(TorchRenderer(model, "cpu")))
        return full[-1]

    def started(settings, loaded):
        quick.append(RecordedRenderer(TorchRenderer(loaded.model, "cpu")))
        return StartedRenderer(quick[-1], "torch-cpu: the quick one", full_speed=lambda: build_full(loaded.model))

    monkeypatch.setattr(app, "open_renderer_quickly", started)
    settings = Settings(
        camera=str(REPO / "profiles" / "default" / "keyframe.jpg"), sink=f"file:{tmp_path / 'out.y4m'}", output_width=320,
        output_height=180, profiles_dir=tmp_path / "profiles", weights_dir=tmp_path / "weights", audio=False,
    )
    lines: list[str] = []
    with app.running_pipeline(settings, on_ready=lines.append) as pipeline:
        wait_until(lambda: pipeline.status().frames_out >= 3, "the quick renderer's frames", 60.0)
        assert pipeline.renderer is quick[0] and lines == ["torch-cpu: the quick one"]
        wait_until(lambda: bool(build_began), "the full-speed build to begin", 60.0)
        first_frame_at = vcam.started_at + pipeline.status().first_frame_s
        assert build_began[0] >= first_frame_at  # the compiler waits for the first frame to be out
        may_finish.set()
        wait_until(lambda: bool(full) and pipeline.renderer is full[0], "the full-speed renderer to take over", 60.0)
        swapped_at = pipeline.status().frames_out
        wait_until(lambda: pipeline.status().frames_out >= swapped_at + 3, "frames from the full-speed renderer", 60.0)
        assert pipeline.status().banner is not None  # still the demo model, labelled as such
    assert quick[0].closed == 1 and full[0].closed == 1
    assert len(lines) == 2 and lines[1].startswith("torch-cpu at full speed (compiled in the background in")


def test_a_full_speed_renderer_for_weights_no_longer_in_use_is_closed_not_used(tmp_path):
    from vcam.render.torch_backend import TorchRenderer

    shutil.copytree(REPO / "profiles" / "default", tmp_path / "profiles" / "default")
    settings = Settings(
        camera_off=True, sink=f"file:{tmp_path / 'out.y4m'}", output_width=320, output_height=180,
        profiles_dir=tmp_path / "profiles", weights_dir=tmp_path / "weights", audio=False, backend="torch",
    )
    with app.running_pipeline(settings) as pipeline:
        late = RecordedRenderer(TorchRenderer(app.open_model(settings).model, "cpu"))
        assert not pipeline.use_renderer(late, "weights-installed-since")
        assert late.closed == 1 and pipeline.renderer is not late
