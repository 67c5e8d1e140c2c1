"""The per-frame graph contract: each graph's inputs and outputs, by name, shape and order.

The ONNX export, the TensorRT binding, the onnxruntime sessions and the torch graphs all read
their tensor names and shapes from :func:`graph_io`, so they cannot drift apart. Exports and
plans record :data:`GRAPH_VERSION` in their manifest; one made for another version is stale and
is rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass

from vcam.models import ModelConfig
from vcam.models.config import ConvNeXtMotionConfig

GRAPH_VERSION = 1
"""Raise it whenever a graph's tensors change name, shape, order or meaning."""

Shape = tuple[int, ...]


@dataclass(frozen=True)
class GraphIO:
    """One graph's inputs and outputs in call order, all float32, batch 1."""

    inputs: dict[str, Shape]
    outputs: dict[str, Shape]


def source_shapes(cfg: ModelConfig) -> dict[str, Shape]:
    """The :class:`SourceState` tensors (the ``source`` graph's outputs), in field order."""
    k, side = cfg.num_kp, cfg.input_size // 4
    return {
        "f_s": (1, cfg.warping.reshape_channel, cfg.appearance.reshape_depth, side, side),
        "x_c": (1, k, 3), "x_s": (1, k, 3), "R_s": (1, 3, 3), "t_s": (1, 3), "exp_s": (1, k, 3), "scale_s": (1, 1), "pose_s": (1, 3),
    }


def motion_shapes(cfg: ModelConfig) -> dict[str, Shape]:
    """The :class:`MotionEstimate` tensors the model fills (``kp`` only with the ConvNeXt motion extractor)."""
    k = cfg.num_kp
    shapes = {"pitch": (1,), "yaw": (1,), "roll": (1,), "t": (1, 3), "exp": (1, k, 3), "scale": (1, 1)}
    return shapes | {"kp": (1, k, 3)} if isinstance(cfg.motion, ConvNeXtMotionConfig) else shapes


def head_shapes(cfg: ModelConfig) -> dict[str, Shape]:
    """The per-frame head inputs of ``driving_keypoints``; ``retarget`` (eye target, eye gate, mouth
    target, mouth gate, the keyframe's left and right eye-open and lip-open ratios) only where the
    model has retargeting MLPs."""
    shapes = {"R": (1, 3, 3), "t": (1, 3), "exp": (1, cfg.num_kp, 3), "scale": (1, 1)}
    return shapes | {"retarget": (1, 7)} if cfg.retargeting else shapes


def graph_io(cfg: ModelConfig) -> dict[str, GraphIO]:
    """The four graphs of :mod:`vcam.render.graphs`, in the order they are exported."""
    s, o = cfg.input_size, cfg.output_size
    source = source_shapes(cfg)
    keypoints = {name: source[name] for name in ("x_c", "x_s")}
    return {
        "source": GraphIO({"image": (1, 3, s, s)}, source),
        "motion": GraphIO({"image": (1, 3, s, s)}, motion_shapes(cfg)),
        "driving_keypoints": GraphIO(keypoints | head_shapes(cfg), {"x_d": source["x_s"]}),
        "warp_decode": GraphIO({"f_s": source["f_s"], "x_s": source["x_s"], "x_d": source["x_s"]}, {"image": (1, 3, o, o)}),
    }
