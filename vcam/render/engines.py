"""Build TensorRT plans from the model, cached by GPU, TensorRT version, weights id and precision.

Plans are built from strongly typed networks: the ONNX graph itself says which tensors are
fp16 (TensorRT 11 accepts nothing else, TensorRT 10 takes it with the STRONGLY_TYPED flag).
``warp_decode`` — nearly all of the per-frame arithmetic — runs in the requested precision, with
float32 inputs and outputs; the other graphs are small and stay float32 (TF32 tensor cores).
The 5-D grid sample becomes TensorRT's own GridSample when this TensorRT builds one for 5-D
input, else the gather formulation of :func:`grid_sample_3d_gather`.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from vcam.errors import VcamError
from vcam.fileio import atomic_write_bytes
from vcam.models import TalkingHeadModel
from vcam.weights import sha256_file

from .base import precision_dtype
from .contract import GraphIO, graph_io
from .graphs import GraphSpec, graph_specs, inference_copy, make_sample
from .manifest import EngineManifest, GraphRecord, onnx_folder, plan_folder, timing_cache_file
from .onnx_export import GRID_SAMPLES, OPSETS, Progress, current_onnx, export_graph, export_onnx, max_abs_diff, torch_outputs
from .registry import get_backend
from .tensorrt_backend import TrtGraph

REDUCED_PRECISION_GRAPHS = ("warp_decode",)
WORKSPACE_BYTES = 4 << 30


@dataclass(frozen=True)
class TensorRT:
    """An importable TensorRT and the CUDA device it would build for."""

    trt: ModuleType
    gpu: str
    compute_capability: str

    @property
    def version(self) -> str:
        return str(self.trt.__version__)


def find_tensorrt() -> tuple[TensorRT | None, str]:
    """TensorRT with a CUDA device, or None and why not ("tensorrt not installed", "no CUDA device")."""
    try:
        import tensorrt as trt
    except (ImportError, OSError):
        return None, "tensorrt not installed"
    if not torch.cuda.is_available():
        return None, "no CUDA device"
    major, minor = torch.cuda.get_device_capability()
    return TensorRT(trt, torch.cuda.get_device_name(), f"{major}.{minor}"), ""


def find_plans(engines_dir: Path, model: TalkingHeadModel, weights_id: str, precision: str) -> tuple[Path | None, str]:
    """The folder of plans usable here for these weights, or None; and a sentence saying which or why not."""
    found, why = find_tensorrt()
    if found is None:
        return None, why
    folder = plan_folder(engines_dir, found.gpu, found.version, weights_id, precision)
    manifest = EngineManifest.load(folder)
    where = f"{found.gpu} / TRT {found.version}"
    if manifest is None or manifest.model != model.cfg.name:
        return None, f"no {precision} plans for {where} and weights {weights_id} in {engines_dir}"
    if manifest.stale:
        return None, f"the {precision} plans in {folder} are {manifest.stale}"
    return folder, f"plans for {where} found"


class FloatIO(nn.Module):
    """``inner`` (a copy) in ``dtype``, taking and returning float32 tensors."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = copy.deepcopy(inner).to(dtype)
        self.dtype = dtype

    def forward(self, *args: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.inner(*(a.to(self.dtype) for a in args))
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()


def _network_flags(trt: ModuleType) -> int:
    """STRONGLY_TYPED where the flag exists (required on TensorRT 10, the only mode on 11)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def _progress_monitor(trt: ModuleType, label: str, progress: Progress) -> object:
    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.steps[phase_name] = num_steps
            progress(f"tensorrt: {label}: {phase_name}")

        def step_complete(self, phase_name: str, step: int) -> bool:
            progress(f"tensorrt: {label}: {phase_name} {step + 1}/{self.steps.get(phase_name, '?')}")
            return True

        def phase_finish(self, phase_name: str) -> None:
            self.steps.pop(phase_name, None)

    return Monitor()


def build_plan(found: TensorRT, onnx_path: Path, timing_cache: Path | None, progress: Progress, label: str) -> bytes:
    """A serialized plan of ``onnx_path``, reusing and updating the timing cache file when given."""
    trt = found.trt
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise VcamError(f"TensorRT {found.version} cannot parse {label}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    config.progress_monitor = _progress_monitor(trt, label, progress)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise VcamError(f"TensorRT {found.version} failed to build {label}: see its log above")
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def native_grid_sample(found: TensorRT, scratch: Path) -> bool:
    """Whether this TensorRT builds GridSample on 5-D input (older versions handle 4-D only)."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("GridSample", ["volume", "grid"], ["out"], mode="linear", padding_mode="zeros", align_corners=0)
    graph = helper.make_graph(
        [node], "grid_sample_5d",
        [helper.make_tensor_value_info("volume", TensorProto.FLOAT, [1, 2, 3, 4, 5]), helper.make_tensor_value_info("grid", TensorProto.FLOAT, [1, 2, 3, 4, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2, 2, 3, 4])],
    )
    path = scratch / "grid_sample_5d.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSETS["native"])]), str(path))
    try:
        build_plan(found, path, None, lambda _: None, "the 5-D GridSample probe")
    except VcamError:
        return False
    return True


def check_plan(found: TensorRT, plan: bytes, spec: GraphSpec, io: GraphIO, expected: list[torch.Tensor]) -> float:
    """Run the plan on the spec's example inputs; max abs difference from torch float32."""
    runtime = found.trt.Runtime(found.trt.Logger(found.trt.Logger.WARNING))
    graph = TrtGraph(found.trt, runtime, plan, torch.device("cuda", torch.cuda.current_device()), io)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        for name in graph.inputs:
            graph.tensors[name].copy_(spec.inputs[name])
        graph.run(stream)
    stream.synchronize()
    return max_abs_diff(expected, [graph.tensors[name] for name in spec.outputs])


def build_engines(
    model: TalkingHeadModel,
    out_dir: Path,
    weights_id: str,
    precision: str = "fp16",
    progress: Progress | None = None,
    *,
    rebuild: bool = False,
) -> EngineManifest:
    """Export, check and build every graph's plan into ``out_dir`` (reusing plans already built here).

    Also writes the float32 ONNX export (``onnx-<weights_id>``) the onnxruntime backend uses.
    """
    found, why = find_tensorrt()
    if found is None:
        raise VcamError(f"cannot build TensorRT plans: {why} — install TensorRT (`pip install vcam[tensorrt]`) on a machine with an NVIDIA GPU")
    precisions = get_backend("tensorrt").precisions
    if precision not in precisions:
        raise VcamError(f"TensorRT plans can be built in {' or '.join(precisions)}, not {precision!r}")
    say = progress or (lambda _: None)
    folder = plan_folder(out_dir, found.gpu, found.version, weights_id, precision)
    cached = EngineManifest.load(folder)
    if cached is not None and cached.model == model.cfg.name and not rebuild:
        if not cached.stale:
            say(f"tensorrt: plans for {found.gpu} / TRT {found.version} already built in {folder}")
            return cached
        say(f"tensorrt: the plans in {folder} are {cached.stale}: building them again")

    sample = make_sample(model)
    reference = export_onnx(model, out_dir, weights_id, say, sample) if rebuild else current_onnx(model, out_dir, weights_id, say, sample)
    folder.mkdir(parents=True, exist_ok=True)
    timing_cache = timing_cache_file(out_dir, found.gpu, found.version)
    records = {}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        scratch = Path(tmp)
        grid = "native" if native_grid_sample(found, scratch) else "gather"
        say(f"tensorrt: 3-D grid sample as {'native 5-D GridSample' if grid == 'native' else 'gathers'}")
        for spec in graph_specs(inference_copy(model, GRID_SAMPLES[grid]), sample):
            graph_precision = precision if spec.name in REDUCED_PRECISION_GRAPHS else "fp32"
            expected = torch_outputs(spec)
            onnx_path = onnx_folder(out_dir, weights_id) / reference.graphs[spec.name].file
            if graph_precision != "fp32" or (grid == "native" and spec.name == "warp_decode"):
                say(f"tensorrt: exporting {spec.name} ({graph_precision}, {grid} grid sample)")
                if graph_precision != "fp32":
                    spec = GraphSpec(spec.name, FloatIO(spec.module, precision_dtype(graph_precision)), spec.inputs, spec.outputs)
                onnx_path = scratch / f"{spec.name}.onnx"
                export_graph(spec, onnx_path, OPSETS[grid])
            plan = build_plan(found, onnx_path, timing_cache, say, spec.name)
            atomic_write_bytes(folder / f"{spec.name}.plan", plan)
            diff = check_plan(found, plan, spec, graph_io(model.cfg)[spec.name], expected)
            say(f"tensorrt: {spec.name} max |plan − torch float32| = {diff:.2e}")
            records[spec.name] = GraphRecord(
                file=f"{spec.name}.plan",
                inputs={k: list(v.shape) for k, v in spec.inputs.items()},
                outputs=list(spec.outputs),
                precision=graph_precision,
                onnx_sha256=sha256_file(onnx_path),
                max_abs_diff=diff,
            )
    manifest = EngineManifest(
        "tensorrt", model.cfg.name, weights_id, precision, grid, records,
        gpu=found.gpu, compute_capability=found.compute_capability, tensorrt=found.version,
    )
    manifest.save(folder)
    return manifest
