"""The torch networks of the face-vid2vid family, weight-compatible with the public checkpoints."""

from .config import CONFIGS, FACEVID2VID, FACEVID2VID_BETA, LIVEPORTRAIT, ModelConfig, config_by_name, demo_config
from .talking_head import HeadMotion, MotionEstimate, SourceState, TalkingHeadModel, build_model

__all__ = [
    "CONFIGS", "FACEVID2VID", "FACEVID2VID_BETA", "LIVEPORTRAIT", "ModelConfig", "config_by_name", "demo_config",
    "HeadMotion", "MotionEstimate", "SourceState", "TalkingHeadModel", "build_model",
]
