"""`vcam track`: the per-frame JSON and the one-line summary, on clips written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from clips import blank, placed, portrait, write_clip

from vcam.cli import main

KEYS = {"t", "face", "box", "eye_open", "lip_open", "pitch", "yaw", "roll", "ms"}


def test_track_writes_every_frame_and_sums_up_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = [placed(dx=3 * (i % 4)) for i in range(12)] + [blank()] * 3
    clip = write_clip(tmp_path / "clip.avi", frames)
    out = tmp_path / "track.json"
    assert main(["track", str(clip), "--json", str(out), "--frames", "14"]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and line.startswith("14 frames: face found in ")
    assert "crop jitter" in line and "ms per frame" in line
    records = json.loads(out.read_text())["frames"]
    assert len(records) == 14 and all(set(r) == KEYS for r in records)
    assert [r["t"] for r in records[:2]] == [0.0, pytest.approx(1 / 30, abs=1e-3)]
    with_face = [r for r in records if r["face"]]
    assert len(with_face) >= 10
    for r in with_face:
        cx, cy, size, angle = r["box"]
        assert 0 < cx < 640 and 0 < cy < 480 and 100 < size < 250 and angle == 0.0  # source pixels
        assert len(r["eye_open"]) == 2 and 0.0 <= r["lip_open"] < 1.0
        assert all(isinstance(r[k], float) for k in ("pitch", "yaw", "roll", "ms"))
    assert not records[-1]["face"] and records[-1]["eye_open"] is None


def test_track_reads_a_photo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "me.png"
    cv2.imwrite(str(photo), portrait())
    assert main(["track", str(photo), "--json", str(tmp_path / "t.json")]) == 0
    assert capsys.readouterr().out.startswith("1 frame: face found in 100.0 %")


def test_track_of_a_missing_source_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["track", str(tmp_path / "nothing.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vcam: error: cannot open") and "\n" not in err
