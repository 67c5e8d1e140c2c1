"""`vcam bench --end-to-end`: the whole frame path timed row by row, as `vcam run` runs it."""

from __future__ import annotations

import json

import pytest

from vcam.cli import main
from vcam.frame_bench import run_frame_bench
from vcam.settings import load_settings


def test_every_row_runs_the_whole_frame_path(home, tmp_path):
    settings = load_settings(output_width=320, output_height=180, backend="torch")
    lines: list[str] = []
    results = run_frame_bench(settings, "liveportrait-demo", None, frames=6, json_path=tmp_path / "e2e.json", out=lines.append)

    assert [r.path for r in results] == ["unpaced → null", "unpaced → mp4 (OpenCV mp4v encoder)", "live → null"]
    assert all(r.frames >= 5 and r.fps > 0 and r.output == "320x180" for r in results)
    for r in results:
        assert {"track", "motion", "render", "compose", "send"} <= set(r.stage_ms)
    unpaced, live = results[0], results[-1]
    assert unpaced.latency_p50_ms is None  # an unpaced run keeps no live pace
    assert live.latency_p50_ms is not None and 0 < live.latency_p50_ms <= live.latency_p99_ms
    assert any(line.startswith("path ") and "latency p99" in line for line in "\n".join(lines).splitlines())
    report = json.loads((tmp_path / "e2e.json").read_text())
    assert [r["path"] for r in report["results"]] == [r.path for r in results] and report["clip"] == "keyframe"


@pytest.mark.parametrize("argv, message", [
    (["bench", "--end-to-end", "--backends", "torch-cpu"], "leave out --backends"),
    (["bench", "--source", "clip.mp4"], "add --end-to-end"),
])
def test_bench_options_that_do_not_go_together(home, capsys, argv, message):
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
