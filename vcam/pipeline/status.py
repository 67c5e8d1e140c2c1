"""What the controller reports: the pipeline's state and its measurements."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class PipelineState(str, Enum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    FACE_LOST = "face_lost"
    WAITING = "waiting"  # a call's receiving end with no sender: the output shows a notice
    ERROR = "error"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Measures:
    """The runner's numbers: smoothed rate, capture-to-send latency and per-stage times, frame counts."""

    fps: float = 0.0
    latency_ms: float = 0.0
    latency_p50_ms: float = 0.0
    """Median of the recent capture-to-send latencies (live runs)."""
    latency_p99_ms: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    first_frame_s: float | None = None
    """Seconds from vcam's start to its first frame out (None until then)."""


@dataclass(frozen=True)
class PipelineStatus:
    """The state the user sees, with every field of :class:`Measures` under the same name."""

    state: PipelineState
    fps: float
    latency_ms: float
    backend: str
    camera: str
    profile: str
    message: str = ""
    stage_ms: dict[str, float] = field(default_factory=dict)
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    first_frame_s: float | None = None
    weights_id: str = ""
    """The weights the frames are rendered with (the demo model's seed id until real ones are installed)."""
    banner: str | None = None
    """The notice drawn over every frame (the demo model's), if any."""
