"""vcam.app: the wiring from settings to a running pipeline releases what it opened, also when it fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
    open_renderer = app.open_renderer

    def recorded(settings, loaded):
        renderer, reason = open_renderer(settings, loaded)
        opened.append(RecordedRenderer(renderer))
        return opened[-1], reason

    monkeypatch.setattr(app, "open_renderer", recorded)
    settings = Settings(
        camera=str(tmp_path / "no-such-clip.mp4"), sink=f"file:{tmp_path / 'out.mp4'}", backend="torch",
        profiles_dir=tmp_path / "profiles", weights_dir=tmp_path / "weights", audio=False,
    )
    with pytest.raises(VcamError, match="no-such-clip"):
        with app.running_pipeline(settings):
            pass
    assert [r.closed for r in opened] == [1]
