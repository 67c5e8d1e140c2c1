"""Export the model's graphs to ONNX (fixed shapes, batch 1) and check them against torch.

The float32 export with the gather-based grid sample is what the onnxruntime backend runs and
what every other export is measured against; TensorRT gets its own copies (see
:mod:`vcam.render.engines`), in its precision and with the grid sample it supports.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from vcam.models import TalkingHeadModel
from vcam.models.warping import grid_sample_3d
from vcam.weights import sha256_file

from .graphs import GridSample, GraphSpec, Sample, graph_specs, inference_copy, make_sample
from .gridsample import grid_sample_3d_gather
from .manifest import EngineManifest, GraphRecord, onnx_folder

Progress = Callable[[str], None]
GRID_SAMPLES: dict[str, GridSample] = {"gather": grid_sample_3d_gather, "native": grid_sample_3d}
# GridSample on 5-D input needs opset 20; the gather formulation exports at any recent opset.
OPSETS = {"gather": 18, "native": 20}


def export_graph(spec: GraphSpec, path: Path, opset: int) -> None:
    """``spec``'s module as an ONNX file with its example inputs' shapes fixed."""
    # The exporter warns about every optional op library it does not find (torchvision …).
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                spec.module.eval(), tuple(spec.inputs.values()), str(path), dynamo=True, opset_version=opset,
                input_names=list(spec.inputs), output_names=list(spec.outputs), external_data=False, verbose=False,
            )
    finally:
        registry_log.setLevel(level)


def torch_outputs(spec: GraphSpec) -> list[torch.Tensor]:
    with torch.no_grad():
        out = spec.module(*spec.inputs.values())
    return list(out) if isinstance(out, Sequence) else [out]


def max_abs_diff(expected: Sequence[torch.Tensor], actual: Sequence[np.ndarray | torch.Tensor]) -> float:
    return max(float((torch.as_tensor(a).float().cpu() - e.float().cpu()).abs().max()) for e, a in zip(expected, actual, strict=True))


def run_onnxruntime(path: Path, inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: value.numpy() for name, value in inputs.items()})


def export_onnx(
    model: TalkingHeadModel,
    engines_dir: Path,
    weights_id: str,
    progress: Progress | None = None,
    sample: Sample | None = None,
) -> EngineManifest:
    """Export the four graphs in float32 with the gather grid sample to ``engines/onnx-<weights_id>``
    and check each with onnxruntime against torch (max abs diff recorded in the manifest)."""
    folder = onnx_folder(engines_dir, weights_id)
    folder.mkdir(parents=True, exist_ok=True)
    sample = sample or make_sample(model)
    records = {}
    for spec in graph_specs(inference_copy(model, GRID_SAMPLES["gather"]), sample):
        if progress:
            progress(f"onnx: exporting {spec.name}")
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            staged = Path(tmp) / f"{spec.name}.onnx"
            export_graph(spec, staged, OPSETS["gather"])
            if progress:
                progress(f"onnx: checking {spec.name} with onnxruntime")
            diff = max_abs_diff(torch_outputs(spec), run_onnxruntime(staged, spec.inputs))
            staged.replace(folder / staged.name)
        records[spec.name] = GraphRecord(
            file=staged.name,
            inputs={k: list(v.shape) for k, v in spec.inputs.items()},
            outputs=list(spec.outputs),
            precision="fp32",
            onnx_sha256=sha256_file(folder / staged.name),
            max_abs_diff=diff,
        )
        if progress:
            progress(f"onnx: {spec.name} max |onnxruntime − torch| = {diff:.2e}")
    manifest = EngineManifest("onnx", model.cfg.name, weights_id, "fp32", "gather", records)
    manifest.save(folder)
    return manifest


def current_onnx(
    model: TalkingHeadModel,
    engines_dir: Path,
    weights_id: str,
    progress: Progress | None = None,
    sample: Sample | None = None,
) -> EngineManifest:
    """The ONNX export of these weights already in ``engines_dir`` when it is of this model and graph
    version, else a new one (saying why, when a stale one is replaced)."""
    found = EngineManifest.load(onnx_folder(engines_dir, weights_id))
    if found is not None and found.model == model.cfg.name:
        if not found.stale:
            return found
        if progress:
            progress(f"onnx: the export in {onnx_folder(engines_dir, weights_id)} is {found.stale}: exporting it again")
    return export_onnx(model, engines_dir, weights_id, progress, sample)
