"""ONNX export of every graph, checked with onnxruntime against torch; the onnxruntime backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vcam.models import FACEVID2VID, FACEVID2VID_BETA, LIVEPORTRAIT, TalkingHeadModel, build_model, demo_config
from vcam.render import EngineManifest, export_onnx, select_renderer
from vcam.render.graphs import WarpDecodeGraph, graph_specs, inference_copy, make_sample
from vcam.render.manifest import onnx_folder
from vcam.render.onnx_export import GRID_SAMPLES, OPSETS, export_graph, max_abs_diff, run_onnxruntime, torch_outputs
from vcam.render.torch_backend import TorchRenderer

pytest.importorskip("onnxruntime", reason="the ONNX checks run the graphs with onnxruntime (pip install vcam[onnx])")
pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript (pip install vcam[onnx])")


@pytest.fixture(scope="module", params=[LIVEPORTRAIT, FACEVID2VID, FACEVID2VID_BETA], ids=["liveportrait", "facevid2vid", "facevid2vid-beta"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[TalkingHeadModel, Path, EngineManifest]:
    model = build_model(demo_config(request.param), seed=0)
    engines = tmp_path_factory.mktemp("engines")
    messages: list[str] = []
    manifest = export_onnx(model, engines, "demo", progress=messages.append)
    assert any("max |onnxruntime − torch|" in m for m in messages)
    return model, engines, manifest


def test_every_graph_matches_torch_in_onnxruntime(exported: tuple[TalkingHeadModel, Path, EngineManifest]) -> None:
    model, engines, manifest = exported
    folder = onnx_folder(engines, "demo")
    assert set(manifest.graphs) == {"source", "motion", "driving_keypoints", "warp_decode"}
    assert (manifest.kind, manifest.model, manifest.precision, manifest.grid_sample) == ("onnx", model.cfg.name, "fp32", "gather")
    for name, record in manifest.graphs.items():
        assert record.max_abs_diff < 1e-3, name
        assert (folder / record.file).is_file()
    # The graphs are fixed-shape, batch 1, and the warp needs no 5-D GridSample.
    assert manifest.graphs["warp_decode"].inputs["f_s"][0] == 1
    assert b"GridSample" not in (folder / manifest.graphs["warp_decode"].file).read_bytes()
    # Independently of the exporter's own check: the files on disk against torch on fresh inputs.
    sample = make_sample(model, seed=11)
    for spec in graph_specs(inference_copy(model), sample):
        assert max_abs_diff(torch_outputs(spec), run_onnxruntime(folder / manifest.graphs[spec.name].file, spec.inputs)) < 1e-3, spec.name


def test_manifest_round_trip_and_damage(exported: tuple[TalkingHeadModel, Path, EngineManifest], tmp_path: Path) -> None:
    _, engines, manifest = exported
    folder = onnx_folder(engines, "demo")
    assert EngineManifest.load(folder) == manifest
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "manifest.json").write_text((folder / "manifest.json").read_text())
    assert EngineManifest.load(copy) is None  # the graphs it names are missing
    (copy / "manifest.json").write_text(json.dumps({"kind": "onnx"}))
    assert EngineManifest.load(copy) is None
    assert EngineManifest.load(tmp_path / "nowhere") is None


def test_native_grid_sample_export_matches_torch(tmp_path: Path) -> None:
    model = build_model(demo_config(FACEVID2VID), seed=0)
    spec = graph_specs(inference_copy(model, GRID_SAMPLES["native"]), make_sample(model))[-1]
    assert isinstance(spec.module, WarpDecodeGraph)
    path = tmp_path / "warp_decode_native.onnx"
    export_graph(spec, path, OPSETS["native"])
    assert b"GridSample" in path.read_bytes()
    assert max_abs_diff(torch_outputs(spec), run_onnxruntime(path, spec.inputs)) < 1e-3


def test_onnxruntime_renderer_matches_torch(exported: tuple[TalkingHeadModel, Path, EngineManifest], monkeypatch: pytest.MonkeyPatch) -> None:
    model, engines, _ = exported
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    renderer, why = select_renderer("auto", model, engines, "demo")
    rng = np.random.default_rng(2)
    size = model.cfg.input_size
    source_crop, driving_crop = (rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(2))
    with renderer, TorchRenderer(model) as reference:
        assert (renderer.name, renderer.device) == ("onnxruntime", "cpu")
        assert why.startswith("onnxruntime: ONNX export of weights demo found") and "no CUDA device" in why
        source, expected_source = renderer.prepare_source(source_crop), reference.prepare_source(source_crop)
        for name, value in source.tensors().items():
            torch.testing.assert_close(value, getattr(expected_source, name), atol=1e-4, rtol=1e-4)
        motion, expected_motion = renderer.extract_motion(driving_crop), reference.extract_motion(driving_crop)
        torch.testing.assert_close(motion.exp, expected_motion.exp, atol=1e-4, rtol=1e-4)
        assert (motion.kp is None) == (expected_motion.kp is None)
        head = model.head_motion(motion)
        head.mouth_open = 0.4
        image, expected = renderer.render(source, head), reference.render(expected_source, head)
        assert image.shape == expected.shape and image.dtype == np.uint8
        assert np.abs(image.astype(np.int16) - expected.astype(np.int16)).max() <= 1
