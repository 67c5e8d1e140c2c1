"""ONNX export of every graph, checked with onnxruntime against torch; the onnxruntime backend."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vcam.models import FACEVID2VID, FACEVID2VID_BETA, LIVEPORTRAIT, TalkingHeadModel, build_model, demo_config
from vcam.errors import VcamError
from vcam.render import select_renderer
from vcam.render.graphs import WarpDecodeGraph, graph_specs, inference_copy, make_sample
from vcam.render.manifest import EngineManifest, onnx_folder
from vcam.render.contract import GRAPH_VERSION, graph_io
from vcam.render.onnx_export import GRID_SAMPLES, OPSETS, current_onnx, export_graph, export_onnx, max_abs_diff, run_onnxruntime, torch_outputs
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


def test_exported_graphs_follow_the_contract(exported: tuple[TalkingHeadModel, Path, EngineManifest]) -> None:
    import onnx

    model, engines, manifest = exported
    folder = onnx_folder(engines, "demo")
    contract = graph_io(model.cfg)
    assert list(manifest.graphs) == list(contract) and manifest.graph_version == GRAPH_VERSION
    for name, io in contract.items():
        graph = onnx.load(str(folder / manifest.graphs[name].file)).graph

        def shapes(values: list[onnx.ValueInfoProto]) -> dict[str, tuple[int, ...]]:
            return {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim) for v in values}

        assert list(shapes(graph.input).items()) == list(io.inputs.items()), name
        assert list(shapes(graph.output).items()) == list(io.outputs.items()), name
        assert manifest.graphs[name].inputs == {k: list(v) for k, v in io.inputs.items()}


def _as_older_vcam(folder: Path) -> None:
    """Rewrite ``folder``'s manifest as a vcam from before graph versions wrote it."""
    data = json.loads((folder / "manifest.json").read_text())
    del data["graph_version"]
    (folder / "manifest.json").write_text(json.dumps(data))


def test_a_stale_export_is_reported_and_exported_again(
    exported: tuple[TalkingHeadModel, Path, EngineManifest], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, engines, _ = exported
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    folder = onnx_folder(tmp_path, "demo")
    folder.mkdir()
    for file in onnx_folder(engines, "demo").iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    _as_older_vcam(folder)
    stale = EngineManifest.load(folder)
    assert stale is not None and stale.graph_version == 0
    assert stale.stale == f"stale (graph version 0, this vcam needs {GRAPH_VERSION})"

    with pytest.raises(VcamError, match=r"onnxruntime renderer cannot run here: the ONNX export of weights demo .* is stale \(graph version 0, this vcam needs \d+\) — export it again with `vcam engines build --onnx-only`"):
        select_renderer("onnxruntime", model, tmp_path, "demo")
    renderer, why = select_renderer("auto", model, tmp_path, "demo")
    renderer.close()
    assert why.startswith("torch-cpu: ") and "is stale (graph version 0" in why

    messages: list[str] = []
    manifest = current_onnx(model, tmp_path, "demo", messages.append)
    assert messages[0] == f"onnx: the export in {folder} is stale (graph version 0, this vcam needs {GRAPH_VERSION}): exporting it again"
    assert manifest.graph_version == GRAPH_VERSION and EngineManifest.load(folder) == manifest
    messages.clear()
    assert current_onnx(model, tmp_path, "demo", messages.append) == manifest and messages == []  # current: reused
    renderer, why = select_renderer("auto", model, tmp_path, "demo")
    with renderer:
        assert renderer.name == "onnxruntime"
