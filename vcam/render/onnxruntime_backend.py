"""The onnxruntime backend: the float32 ONNX export run on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vcam.errors import VcamError
from vcam.models import HeadMotion, MotionEstimate, SourceState, TalkingHeadModel

from .base import Renderer, check_crop, image_from_uint8, image_to_uint8
from .contract import graph_io
from .graphs import head_tensors, motion_estimate
from .manifest import EngineManifest


class OnnxRuntimeRenderer(Renderer):
    """One CPU inference session per graph of an ONNX export (see :func:`export_onnx`)."""

    name = "onnxruntime"
    device = "cpu"

    def __init__(self, model: TalkingHeadModel, folder: Path) -> None:
        import onnxruntime as ort

        manifest = EngineManifest.load(folder)
        if manifest is None or manifest.model != model.cfg.name or manifest.stale:
            raise VcamError(f"no usable ONNX export of {model.cfg.name} in {folder}: run `vcam engines build --onnx-only`")
        self._size = model.cfg.input_size
        self._io = graph_io(model.cfg)
        self._sessions = {
            name: ort.InferenceSession(str(folder / record.file), providers=["CPUExecutionProvider"])
            for name, record in manifest.graphs.items()
        }
        self._bound: tuple[SourceState, dict[str, np.ndarray]] | None = None

    def _run(self, graph: str, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        if not self._sessions:
            raise VcamError("this renderer was closed: create a new one")
        return self._sessions[graph].run(None, inputs)

    def _image(self, crop_rgb: np.ndarray) -> dict[str, np.ndarray]:
        return {"image": image_from_uint8(torch.from_numpy(check_crop(crop_rgb, self._size))).numpy()}

    def prepare_source(self, crop_rgb: np.ndarray) -> SourceState:
        outputs = self._run("source", self._image(crop_rgb))
        return SourceState(**{name: torch.from_numpy(value) for name, value in zip(self._io["source"].outputs, outputs)})

    def extract_motion(self, crop_rgb: np.ndarray) -> MotionEstimate:
        outputs = self._run("motion", self._image(crop_rgb))
        return motion_estimate({name: torch.from_numpy(value) for name, value in zip(self._io["motion"].outputs, outputs)})

    def render_device(self, source: SourceState, head: HeadMotion) -> torch.Tensor:
        if self._bound is None or self._bound[0] is not source:
            arrays = {name: getattr(source, name).detach().float().contiguous().numpy() for name in ("f_s", "x_c", "x_s")}
            self._bound = (source, arrays)
        given = self._bound[1] | {name: value.numpy() for name, value in head_tensors(head).items()}
        (given["x_d"],) = self._run("driving_keypoints", {name: given[name] for name in self._io["driving_keypoints"].inputs})
        (image,) = self._run("warp_decode", {name: given[name] for name in self._io["warp_decode"].inputs})
        return image_to_uint8(torch.from_numpy(image))

    def close(self) -> None:
        self._sessions = {}
        self._bound = None
