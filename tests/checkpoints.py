"""Checkpoint files in the public layouts, written from a model's networks (what users download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vcam.models import TalkingHeadModel
from vcam.weights import LAYOUTS


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
    return write_release(release_entries(model), path)


def release_entries(model: TalkingHeadModel) -> dict[str, dict[str, torch.Tensor]]:
    """The face-vid2vid checkpoint's ``generator``, ``kp_detector`` and ``he_estimator`` from our networks."""
    entries: dict[str, dict[str, torch.Tensor]] = {}
    for part in LAYOUTS[model.cfg.name.removesuffix("-demo")][0].parts:
        state = model.get_submodule(part.target).state_dict()
        entries.setdefault(part.entry, {}).update({part.key_prefix + k: v for k, v in state.items()})
    return entries


def seeded_entries(layout: dict[str, dict[str, list[int]]], seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """Random weights for every tensor of a checkpoint ``layout`` (entry → key → shape), reproducible
    from the layout and the seed alone.

    Tensors are filled in sorted (entry, key) order from one ``numpy.random.default_rng(seed)`` at
    scales that keep every layer in play: convolutions ~N(0, 1/fan_in), linear heads five times
    smaller (keypoints stay inside the motion volume), BatchNorm affine near identity with positive
    running variances, and spectral-norm vectors from power iteration.
    """
    rng = np.random.default_rng(seed)
    entries: dict[str, dict[str, torch.Tensor]] = {}
    for entry in sorted(layout):
        shapes = layout[entry]
        state: dict[str, np.ndarray] = {}
        for key in sorted(shapes):
            shape = tuple(shapes[key])
            module, _, name = key.rpartition(".")
            batchnorm = f"{module}.running_mean" in shapes
            if name == "num_batches_tracked":
                state[key] = np.zeros(shape, np.int64)
            elif name == "running_var":
                state[key] = rng.uniform(0.5, 2.0, shape)
            elif name == "running_mean" or (batchnorm and name == "bias"):
                state[key] = rng.normal(0.0, 0.1, shape)
            elif batchnorm and name == "weight":
                state[key] = 1.0 + rng.normal(0.0, 0.1, shape)
            elif name == "weight_u":
                state[key], state[f"{module}.weight_v"] = _power_iteration(state[f"{module}.weight_orig"], rng)
            elif name == "weight_v":
                continue
            elif len(shape) == 2:
                state[key] = rng.normal(0.0, 0.2 / np.sqrt(shape[1]), shape)
            elif len(shape) > 2:
                state[key] = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[1:])), shape)
            else:
                state[key] = rng.normal(0.0, 0.05, shape)
        entries[entry] = {k: torch.from_numpy(v.astype(np.int64 if v.dtype == np.int64 else np.float32)) for k, v in state.items()}
    return entries


def _power_iteration(weight: np.ndarray, rng: np.random.Generator, steps: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Leading singular vectors (u, v) of ``weight`` flattened to (out, in), as spectral norm stores them."""
    matrix = weight.reshape(weight.shape[0], -1)
    v = rng.normal(0.0, 1.0, matrix.shape[1])
    for _ in range(steps):
        u = matrix @ v
        u /= np.linalg.norm(u)
        v = matrix.T @ u
        v /= np.linalg.norm(v)
    return u, v


def write_release(entries: dict[str, dict[str, torch.Tensor]], path: Path) -> Path:
    """A training checkpoint as the face-vid2vid reimplementation saves it: model entries plus training state."""
    torch.save(
        {
            **entries,
            "discriminator": {"discs.1.conv.weight": torch.zeros(2, 3, 4, 4)},
            "optimizer_generator": {"state": {}, "param_groups": [{"lr": 2e-4, "betas": (0.5, 0.999), "params": [0, 1]}]},
            "epoch": 189,
        },
        path,
    )
    return path
