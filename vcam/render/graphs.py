"""The model's networks as graphs with plain tensor inputs and outputs, shared by every backend.

Four graphs cover the whole model (batch 1, fixed shapes):

* ``source`` — :meth:`TalkingHeadModel.prepare_source`: keyframe crop → :class:`SourceState` tensors
  (appearance extractor F, canonical keypoints from the keypoint detector or the motion extractor,
  the keyframe's own pose). Runs once per profile.
* ``motion`` — :meth:`TalkingHeadModel.extract_motion`: driving crop → :class:`MotionEstimate` tensors.
* ``driving_keypoints`` — keypoint transform + eye/lip retargeting + stitching MLP → ``x_d``.
  Eye and lip retargeting are switched by gates in the ``retarget`` input instead of Python
  branches, so one graph serves every :class:`HeadMotion` and can be captured or exported.
* ``warp_decode`` — warping network W + generator G: (f_s, x_s, x_d) → image in [0, 1].

The same modules are captured in CUDA graphs by the torch backend and exported to ONNX for
onnxruntime and TensorRT, so every backend runs the same computation. Their tensors' names,
shapes and order are those of :mod:`vcam.render.contract`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.spectral_norm import SpectralNorm

from vcam.models import HeadMotion, MotionEstimate, SourceState, TalkingHeadModel
from vcam.models.talking_head import source_eye_open, source_lip_open

from .contract import graph_io, head_shapes, motion_shapes, source_shapes

GridSample = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def inference_copy(
    model: TalkingHeadModel, grid_sample: GridSample | None = None, *, device: torch.device | None = None, without: Collection[str] = (),
) -> TalkingHeadModel:
    """A frozen deep copy of ``model`` for inference.

    Spectral normalisation is folded into plain conv weights (eval-mode spectral norm only divides
    by the stored σ, so outputs are unchanged) and ``grid_sample``, when given, replaces the dense
    motion network's 5-D sampling function. The networks named in ``without`` are left out (None).
    With a ``device``, the copy's weights are copied straight there (no copy on the way).
    """
    memo: dict[int, object] = {id(getattr(model, name)): None for name in without}
    if device is not None:
        for name, tensor in (*model.named_parameters(), *model.named_buffers()):
            if name.split(".")[0] not in without:
                moved = tensor.detach().to(device, copy=True)
                memo[id(tensor)] = nn.Parameter(moved, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else moved
    nets = copy.deepcopy(model, memo).eval()
    for module in nets.modules():
        if any(isinstance(hook, SpectralNorm) for hook in module._forward_pre_hooks.values()):
            nn.utils.remove_spectral_norm(module)
    if grid_sample is not None:
        nets.warping_module.dense_motion_network.grid_sample = grid_sample
    return nets.requires_grad_(False)


def retarget_controls(head: HeadMotion) -> torch.Tensor:
    """(1, 7): eye-open target, eye gate, mouth-open target, mouth gate (gate 0 = leave as driven),
    the keyframe's eye-open ratios (left, right) and lip-open ratio."""
    eye, mouth = head.eye_open, head.mouth_open
    values = [eye or 0.0, float(eye is not None), mouth or 0.0, float(mouth is not None), *source_eye_open(head), source_lip_open(head)]
    return torch.tensor([values], dtype=torch.float32)


def head_tensors(head: HeadMotion) -> dict[str, torch.Tensor]:
    """The ``driving_keypoints`` graph's per-frame inputs, float32 on the CPU."""
    tensors = {"R": head.R, "t": head.t, "exp": head.exp, "scale": head.scale}
    tensors = {k: v.detach().to("cpu", torch.float32) for k, v in tensors.items()}
    return tensors | {"retarget": retarget_controls(head)}


class SourceGraph(nn.Module):
    def __init__(self, nets: TalkingHeadModel) -> None:
        super().__init__()
        self.nets = nets

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        state = self.nets.prepare_source(image)
        return tuple(getattr(state, name) for name in source_shapes(self.nets.cfg))


class MotionGraph(nn.Module):
    def __init__(self, nets: TalkingHeadModel) -> None:
        super().__init__()
        self.nets = nets
        self.fields = tuple(motion_shapes(nets.cfg))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        motion = self.nets.extract_motion(image)
        return tuple(getattr(motion, name) for name in self.fields)


class DrivingKeypointsGraph(nn.Module):
    """``TalkingHeadModel.driving_keypoints`` with eye/lip retargeting gated by ``retarget``.

    A gate of 1 adds exactly the model's delta, a gate of 0 adds exactly zero, so the result equals
    the model's for every combination of ``eye_open``/``mouth_open`` being set or None.
    """

    def __init__(self, nets: TalkingHeadModel) -> None:
        super().__init__()
        self.nets = nets

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(graph_io(self.nets.cfg)["driving_keypoints"].inputs)

    def forward(self, x_c: torch.Tensor, x_s: torch.Tensor, R: torch.Tensor, t: torch.Tensor, exp: torch.Tensor,
                scale: torch.Tensor, retarget: torch.Tensor | None = None) -> torch.Tensor:
        x_d = self.nets.keypoints(x_c, HeadMotion(R=R, t=t, exp=exp, scale=scale))
        module = self.nets.stitching_retargeting_module
        if module is None:
            return x_d
        assert retarget is not None, "a model with retargeting MLPs needs the retarget controls"
        eye = torch.cat([retarget[:, 4:6], retarget[:, 0:1]], dim=1)
        lip = torch.cat([retarget[:, 6:7], retarget[:, 2:3]], dim=1)
        x_d = x_d + retarget[:, 1, None, None] * module.eye_delta(x_s, eye)
        x_d = x_d + retarget[:, 3, None, None] * module.lip_delta(x_s, lip)
        return module.stitch(x_s, x_d)


class WarpDecodeGraph(nn.Module):
    def __init__(self, nets: TalkingHeadModel) -> None:
        super().__init__()
        self.nets = nets

    def forward(self, f_s: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        return self.nets.warp_decode(f_s, x_s, x_d)


@dataclass
class GraphSpec:
    """One graph with named example inputs (they fix the exported shapes) and output names."""

    name: str
    module: nn.Module
    inputs: dict[str, torch.Tensor]
    outputs: tuple[str, ...]


@dataclass
class Sample:
    """A deterministic keyframe crop, driving crop and head motion: example inputs and test data."""

    source_image: torch.Tensor  # (1, 3, S, S) float in [0, 1]
    driving_image: torch.Tensor
    source: SourceState
    head: HeadMotion
    x_d: torch.Tensor


def make_sample(model: TalkingHeadModel, seed: int = 0) -> Sample:
    """Random crops, the model's own source state for one and the other's motion as the head."""
    size = model.cfg.input_size
    generator = torch.Generator().manual_seed(seed)
    source_image, driving_image = torch.rand(2, 1, 3, size, size, generator=generator)
    with torch.no_grad():
        source = SourceState(**model.prepare_source(source_image).tensors())
        motion = model.extract_motion(driving_image)
        head = model.head_motion(motion)
        head.eye_open, head.mouth_open = 0.25, 0.4
        head.source_eye_open, head.source_lip_open = (0.31, 0.27), 0.12  # a measured keyframe
        x_d = model.driving_keypoints(source, head)
    return Sample(source_image, driving_image, source, head, x_d)


def graph_specs(nets: TalkingHeadModel, sample: Sample) -> list[GraphSpec]:
    """The four graphs of ``nets`` with ``sample``'s tensors as inputs, named and ordered as
    :func:`vcam.render.contract.graph_io` says."""
    source = sample.source.tensors()
    modules = {"source": SourceGraph, "motion": MotionGraph, "driving_keypoints": DrivingKeypointsGraph, "warp_decode": WarpDecodeGraph}
    given = {
        "source": {"image": sample.source_image},
        "motion": {"image": sample.driving_image},
        "driving_keypoints": source | head_tensors(sample.head),
        "warp_decode": source | {"x_d": sample.x_d},
    }
    specs = []
    for name, io in graph_io(nets.cfg).items():
        inputs = {key: given[name][key] for key in io.inputs}
        wrong = {key: tuple(value.shape) for key, value in inputs.items() if tuple(value.shape) != io.inputs[key]}
        if wrong:
            raise ValueError(f"graph {name}: sample inputs {wrong} differ from the contract {io.inputs}")
        specs.append(GraphSpec(name, modules[name](nets), inputs, tuple(io.outputs)))
    return specs


@dataclass(frozen=True)
class PackedLayout:
    """Small float32 tensors laid out in one flat buffer, so one copy moves all of them.

    Each field starts at a 256-byte boundary (TensorRT's alignment for tensor addresses).
    """

    shapes: dict[str, tuple[int, ...]]
    align: int = 64  # float32 elements

    def offsets(self) -> dict[str, int]:
        offsets, at = {}, 0
        for name, shape in self.shapes.items():
            offsets[name] = at
            at += -(-math.prod(shape) // self.align) * self.align
        return offsets

    @property
    def size(self) -> int:
        last = list(self.shapes)[-1]
        return self.offsets()[last] + math.prod(self.shapes[last])

    def views(self, buffer: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views into ``buffer`` (flat, at least ``size`` long), one per field, shaped."""
        offsets = self.offsets()
        return {name: buffer[offsets[name] : offsets[name] + math.prod(shape)].view(shape) for name, shape in self.shapes.items()}

    def pack(self, tensors: dict[str, torch.Tensor], buffer: torch.Tensor) -> None:
        for name, view in self.views(buffer).items():
            view.copy_(tensors[name])


def motion_layout(model: TalkingHeadModel) -> PackedLayout:
    """The motion graph's outputs in one buffer."""
    return PackedLayout(motion_shapes(model.cfg))


def head_layout(model: TalkingHeadModel) -> PackedLayout:
    """The ``driving_keypoints`` graph's per-frame head inputs in one buffer."""
    return PackedLayout(head_shapes(model.cfg))


def motion_estimate(tensors: dict[str, torch.Tensor]) -> MotionEstimate:
    """A :class:`MotionEstimate` of float32 CPU tensors (copies) from the motion graph's outputs."""
    return MotionEstimate(**{name: value.detach().to("cpu", torch.float32).clone() for name, value in tensors.items()})
