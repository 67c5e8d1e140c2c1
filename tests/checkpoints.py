"""Checkpoint files in the public layouts, written from a model's networks (what users download)."""

from __future__ import annotations

from pathlib import Path

import torch

from vcam.models import TalkingHeadModel


def write_liveportrait(model: TalkingHeadModel, folder: Path) -> list[Path]:
    """The five .pth files of LivePortrait's release; the retargeting file nests three DataParallel state dicts."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name in ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator"):
        path = folder / f"{name}.pth"
        torch.save(getattr(model, name).state_dict(), path)
        files.append(path)
    r = model.stitching_retargeting_module
    parallel = lambda m: {f"module.{k}": v for k, v in m.state_dict().items()}  # noqa: E731
    path = folder / "stitching_retargeting_module.pth"
    torch.save({"retarget_shoulder": parallel(r.stitching), "retarget_mouth": parallel(r.lip), "retarget_eye": parallel(r.eye)}, path)
    return [*files, path]


def write_facevid2vid(model: TalkingHeadModel, path: Path) -> Path:
    """The reimplementation's training checkpoint: generator (F + W + G), kp_detector, he_estimator and training state."""
    generator = {}
    for part in (model.appearance_feature_extractor, model.warping_module, model.spade_generator):
        generator.update(part.state_dict())
    torch.save(
        {
            "generator": generator,
            "kp_detector": model.canonical_keypoint_detector.state_dict(),
            "he_estimator": model.motion_extractor.state_dict(),
            "discriminator": {"discs.1.conv.weight": torch.zeros(2, 3, 4, 4)},
            "optimizer_generator": {"state": {}, "param_groups": [{"lr": 2e-4, "betas": (0.5, 0.999), "params": [0, 1]}]},
            "epoch": 189,
        },
        path,
    )
    return path
