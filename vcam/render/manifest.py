"""What a folder of exported graphs or TensorRT plans holds: ``manifest.json`` beside the files."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vcam.fileio import atomic_write_text

from .contract import GRAPH_VERSION

MANIFEST = "manifest.json"


@dataclass
class GraphRecord:
    """One exported graph or plan: the ONNX it was made from, and how close it came to torch float32
    (max abs difference over its outputs on a sample input)."""

    file: str
    inputs: dict[str, list[int]]
    outputs: list[str]
    precision: str
    onnx_sha256: str
    max_abs_diff: float


@dataclass
class EngineManifest:
    """What a folder of ONNX graphs or TensorRT plans was built from (``manifest.json`` beside them).

    ``graph_version`` is the :data:`~vcam.render.contract.GRAPH_VERSION` the graphs were made for
    (0 for folders made before graphs were versioned).
    """

    kind: str  # "onnx" or "tensorrt"
    model: str
    weights_id: str
    precision: str
    grid_sample: str
    graphs: dict[str, GraphRecord]
    gpu: str | None = None
    compute_capability: str | None = None
    tensorrt: str | None = None
    graph_version: int = GRAPH_VERSION
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def save(self, folder: Path) -> None:
        atomic_write_text(folder / MANIFEST, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "EngineManifest | None":
        """The manifest in ``folder`` when it is readable and every file it names exists, else None."""
        try:
            data = json.loads((folder / MANIFEST).read_text())
            graphs = {k: GraphRecord(**v) for k, v in data["graphs"].items()}
            manifest = cls(**data | {"graphs": graphs, "graph_version": data.get("graph_version", 0)})
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None
        return manifest if all((folder / g.file).is_file() for g in manifest.graphs.values()) else None

    @property
    def stale(self) -> str:
        """Empty when the graphs are this vcam's, else why not, as "stale (graph version 0, this vcam needs 1)"."""
        if self.graph_version == GRAPH_VERSION:
            return ""
        return f"stale (graph version {self.graph_version}, this vcam needs {GRAPH_VERSION})"


def onnx_folder(engines_dir: Path, weights_id: str) -> Path:
    """Where the float32 ONNX export of the weights ``weights_id`` lives."""
    return engines_dir / f"onnx-{weights_id}"


def _platform(gpu: str, tensorrt: str) -> str:
    return f"{re.sub(r'[^a-z0-9]+', '-', gpu.lower()).strip('-')}_trt{tensorrt}"


def plan_folder(engines_dir: Path, gpu: str, tensorrt: str, weights_id: str, precision: str) -> Path:
    """Where plans live: one folder per GPU model, TensorRT version, weights and precision."""
    return engines_dir / f"{_platform(gpu, tensorrt)}_{weights_id}_{precision}"


def timing_cache_file(engines_dir: Path, gpu: str, tensorrt: str) -> Path:
    """TensorRT's kernel timings for one GPU model and TensorRT version, shared by every build there."""
    return engines_dir / f"{_platform(gpu, tensorrt)}.timing-cache"
