"""The torch networks of the face-vid2vid family, weight-compatible with the public checkpoints.

The configurations (:data:`CONFIGS`, the one list of model names) import without torch; the
networks load on first use, so the settings and the command line can name models cheaply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import CONFIGS, FACEVID2VID, FACEVID2VID_BETA, LIVEPORTRAIT, ModelConfig, config_by_name, demo_config

if TYPE_CHECKING:
    from .talking_head import HeadMotion, MotionEstimate, SourceState, TalkingHeadModel, build_model

__all__ = [
    "CONFIGS", "FACEVID2VID", "FACEVID2VID_BETA", "LIVEPORTRAIT", "ModelConfig", "config_by_name", "demo_config",
    "HeadMotion", "MotionEstimate", "SourceState", "TalkingHeadModel", "build_model",
]
_NETWORKS = ("HeadMotion", "MotionEstimate", "SourceState", "TalkingHeadModel", "build_model")


def __getattr__(name: str) -> Any:
    if name in _NETWORKS:
        from . import talking_head

        return getattr(talking_head, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
