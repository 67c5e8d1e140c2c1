"""What a frame is rendered from: the model (network config, renderer, weights) and the avatar
(a profile prepared for that model, its paste-back and its keyframe's measured eyes and lips)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..compose import Compositor, PasteLayout
from ..device_compose import DeviceCompositor
from ..landmark_models import ensure_models
from ..models import ModelConfig, SourceState
from ..motion import KeyframeRatios
from ..profiles import Profile, ProfileStore
from ..render.base import Renderer
from ..settings import Settings
from ..tracking import FaceLandmarker, read_keyframe


@dataclass(frozen=True)
class Model:
    config: ModelConfig
    renderer: Renderer
    weights_id: str
    banner: str | None = None
    """A notice drawn over every frame (the demo model says it is one)."""


@dataclass(frozen=True)
class Avatar:
    profile: Profile
    source: SourceState
    compositor: Compositor
    ratios: KeyframeRatios
    device_compositor: DeviceCompositor | None = None
    """The paste-back on the GPU the model renders on (the same layout as ``compositor``, with the
    model's banner); None when the model renders on the CPU."""


class AvatarLoader:
    """Prepares a profile for a model; safe to call from any thread (it shares nothing with the frames)."""

    def __init__(self, store: ProfileStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def load(self, name: str, model: Model) -> Avatar:
        profile = self.store.load(name)
        source = self.store.source_state(profile, model.renderer.prepare_source, model.weights_id, model.config.input_size)
        s = self.settings
        layout = PasteLayout(profile.keyframe, profile.box, (s.output_width, s.output_height), mirror=s.mirror)
        device = None
        if s.gpu_compose and str(model.renderer.device).startswith("cuda"):
            device = DeviceCompositor(layout, model.renderer.device, model.banner)
        return Avatar(profile, source, Compositor(layout), keyframe_ratios(profile, s.landmarks_dir), device)


def keyframe_ratios(profile: Profile, landmarks_dir: Path) -> KeyframeRatios:
    """The profile's measured eye and lip ratios; a profile made before they were measured is
    measured now, with landmark models of its own (this may run on the profile loader thread
    while the inference thread tracks)."""
    if profile.eye_open is not None and profile.lip_open is not None:
        return KeyframeRatios(profile.eye_open, profile.lip_open)
    measured = read_keyframe(profile.keyframe, FaceLandmarker(ensure_models(landmarks_dir)))
    return KeyframeRatios(measured.eye_open, measured.lip_open)
