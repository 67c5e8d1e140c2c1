"""TensorRT plans: build, cache, check and render (where TensorRT and a CUDA device exist)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vcam.models import FACEVID2VID, FACEVID2VID_BETA, LIVEPORTRAIT, TalkingHeadModel, build_model, demo_config
from vcam.render import select_renderer
from vcam.render.contract import GRAPH_VERSION
from vcam.render.engines import build_engines, find_plans
from vcam.render.torch_backend import TorchRenderer

pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install vcam[tensorrt] on a machine with an NVIDIA GPU)")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="TensorRT needs a CUDA device")


@pytest.fixture(scope="module", params=[LIVEPORTRAIT, FACEVID2VID, FACEVID2VID_BETA], ids=["liveportrait", "facevid2vid", "facevid2vid-beta"])
def model(request: pytest.FixtureRequest) -> TalkingHeadModel:
    return build_model(demo_config(request.param), seed=0)


def test_build_check_cache_and_render(model: TalkingHeadModel, tmp_path: Path) -> None:
    messages: list[str] = []
    manifest = build_engines(model, tmp_path, "demo", "fp16", progress=messages.append)
    assert manifest.kind == "tensorrt" and manifest.model == model.cfg.name and manifest.grid_sample in ("native", "gather")
    assert manifest.gpu == torch.cuda.get_device_name() and manifest.tensorrt
    assert set(manifest.graphs) == {"source", "motion", "driving_keypoints", "warp_decode"}
    assert manifest.graphs["warp_decode"].precision == "fp16" and manifest.graphs["motion"].precision == "fp32"
    assert manifest.graphs["warp_decode"].max_abs_diff < 0.1 and manifest.graphs["motion"].max_abs_diff < 0.05
    assert any(m.startswith("tensorrt: warp_decode") for m in messages)
    folder, why = find_plans(tmp_path, model, "demo", "fp16")
    assert folder is not None and why.startswith("plans for ")
    assert any(p.suffix == ".timing-cache" for p in tmp_path.iterdir())

    plan = folder / "warp_decode.plan"
    built = plan.stat().st_mtime_ns
    assert build_engines(model, tmp_path, "demo", "fp16") == manifest  # cached: nothing rebuilt
    assert plan.stat().st_mtime_ns == built

    # Plans made for another graph version are stale: passed over, then built again.
    data = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps(data | {"graph_version": 0}))
    stale = f"stale (graph version 0, this vcam needs {GRAPH_VERSION})"
    assert find_plans(tmp_path, model, "demo", "fp16") == (None, f"the fp16 plans in {folder} are {stale}")
    messages.clear()
    assert build_engines(model, tmp_path, "demo", "fp16", progress=messages.append).graph_version == GRAPH_VERSION
    assert messages[0] == f"tensorrt: the plans in {folder} are {stale}: building them again"
    assert plan.stat().st_mtime_ns != built

    renderer, why = select_renderer("auto", model, tmp_path, "demo")
    rng = np.random.default_rng(4)
    size = model.cfg.input_size
    source_crop, driving_crop = (rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(2))
    with renderer, TorchRenderer(model) as reference:
        assert renderer.name == "tensorrt" and why.startswith("tensorrt: plans for ")
        source = renderer.prepare_source(source_crop)
        motion = renderer.extract_motion(driving_crop)
        expected_motion = reference.extract_motion(driving_crop)
        torch.testing.assert_close(motion.yaw, expected_motion.yaw, atol=0.1, rtol=0)
        head = model.head_motion(expected_motion)
        head.eye_open = 0.3
        image = renderer.render(source, head)
        again = renderer.render(source, head)
        expected = reference.render(reference.prepare_source(source_crop), head)
    assert np.array_equal(image, again)
    assert np.abs(image.astype(np.int16) - expected.astype(np.int16)).mean() < 2.0
