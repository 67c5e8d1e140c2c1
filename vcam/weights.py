"""Model weights: import the public checkpoints, convert them to safetensors, verify, load.

A weights folder holds one ``<network>.safetensors`` per network of the model and a
``manifest.json`` with each file's sha256, the config name and the source checkpoints' sha256.
Checkpoints are read with ``torch.load(weights_only=True)``: plain tensors and containers only,
never arbitrary pickled objects.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import nn

from . import download
from .download import HubFile, Progress, sha256_file
from .errors import VcamError
from .fileio import atomic_write_bytes, atomic_write_text
from .models import CONFIGS, ModelConfig, TalkingHeadModel, config_by_name, demo_config

MANIFEST = "manifest.json"
StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class CheckpointPart:
    """Where one of our networks' tensors live in a public checkpoint file.

    ``entry``: key of the sub-dictionary in the file (None: the file is the state dict).
    ``prefixes``: keep only these top-level module names (None: all of them).
    ``target``: our network name, optionally with a sub-module (``stitching_retargeting_module.eye``).
    ``key_prefix``: what the file puts before our network's keys (``decoder.``), removed on import.
    """

    target: str
    entry: str | None = None
    prefixes: tuple[str, ...] | None = None
    key_prefix: str = ""


@dataclass(frozen=True)
class CheckpointFile:
    name: str
    parts: tuple[CheckpointPart, ...]


_LP_BASE = "https://huggingface.co/KwaiVGI/LivePortrait/resolve/main/liveportrait"

LAYOUTS: dict[str, tuple[CheckpointFile, ...]] = {
    "liveportrait": (
        CheckpointFile("appearance_feature_extractor.pth", (CheckpointPart("appearance_feature_extractor"),)),
        CheckpointFile("motion_extractor.pth", (CheckpointPart("motion_extractor"),)),
        CheckpointFile("warping_module.pth", (CheckpointPart("warping_module"),)),
        CheckpointFile("spade_generator.pth", (CheckpointPart("spade_generator"),)),
        CheckpointFile(
            "stitching_retargeting_module.pth",
            (
                CheckpointPart("stitching_retargeting_module.stitching", entry="retarget_shoulder"),
                CheckpointPart("stitching_retargeting_module.lip", entry="retarget_mouth"),
                CheckpointPart("stitching_retargeting_module.eye", entry="retarget_eye"),
            ),
        ),
    ),
    # The reimplementation ships one training checkpoint; its generator holds F, W and G together.
    "facevid2vid": (
        CheckpointFile(
            "checkpoint.pth.tar",
            (
                CheckpointPart("appearance_feature_extractor", "generator", ("first", "down_blocks", "second", "resblocks_3d")),
                CheckpointPart("warping_module", "generator", ("dense_motion_network", "third", "fourth")),
                CheckpointPart("spade_generator", "generator", ("decoder",), key_prefix="decoder."),
                CheckpointPart("canonical_keypoint_detector", "kp_detector"),
                CheckpointPart("motion_extractor", "he_estimator"),
            ),
        ),
    ),
    "facevid2vid-beta": (
        CheckpointFile(
            "checkpoint.pth.tar",
            (
                CheckpointPart("appearance_feature_extractor", "generator", ("first", "down_blocks", "second", "resblocks_3d")),
                CheckpointPart("warping_module", "generator", ("dense_motion_network", "third", "fourth")),
                CheckpointPart("spade_generator", "generator", ("resblocks_2d", "up_blocks", "final")),
                CheckpointPart("canonical_keypoint_detector", "kp_detector"),
                CheckpointPart("motion_extractor", "he_estimator"),
            ),
        ),
    ),
}

# Both face-vid2vid releases name their file the same way; a key only its generator has tells which
# one a checkpoint is (New: the SPADE decoder; Beta: the residual decoder's 7×7 output conv).
FACEVID2VID_RELEASES = {"decoder.fc.weight": "facevid2vid", "final.weight": "facevid2vid-beta"}

# LivePortrait's released files on the Hugging Face Hub, pinned by size and sha256: the Hub's
# advertised hash and the downloaded bytes are both checked against these.
LIVEPORTRAIT_REPO = "KwaiVGI/LivePortrait"

HUB_FILES: dict[str, tuple[HubFile, ...]] = {
    "liveportrait": tuple(
        HubFile(LIVEPORTRAIT_REPO, f"liveportrait/{path}", size, sha256)
        for path, size, sha256 in (
            ("base_models/appearance_feature_extractor.pth", 3387959, "5279bb8654293dbdf327030b397f107237dd9212fb11dd75b83dfb635211ceb5"),
            ("base_models/motion_extractor.pth", 112545506, "251e6a94ad667a1d0c69526d292677165110ef7f0cf0f6d199f0e414e8aa0ca5"),
            ("base_models/warping_module.pth", 182180086, "2f61a6f265fe344f14132364859a78bdbbc2068577170693da57fb96d636e282"),
            ("base_models/spade_generator.pth", 221813590, "4780afc7909a9f84e24c01d73b31a555ef651521a1fe3b2429bd04534d992aee"),
            ("retargeting_models/stitching_retargeting_module.pth", 2393098, "3652d5a3f95099141a56986aaddec92fadf0a73c87a20fac9a2c07c32b28b611"),
        )
    ),
}


def read_checkpoint(path: Path) -> object:
    """``torch.load`` restricted to tensors and plain containers; any file that is not such a
    checkpoint (text, an archive, a truncated download) is one clear error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise VcamError(f"{path} does not exist: pass the checkpoint files you downloaded") from None
    except IsADirectoryError:
        raise VcamError(f"{path} is a folder: pass the checkpoint files inside it") from None
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise VcamError(f"{path.name} holds objects other than tensors; refusing to unpickle it — use the official checkpoint file") from None
        raise _not_a_checkpoint(path) from None
    except Exception:  # torch reports a file that is not a checkpoint as KeyError, RuntimeError, EOFError, …
        raise _not_a_checkpoint(path) from None


def _not_a_checkpoint(path: Path) -> VcamError:
    return VcamError(f"{path} is not a PyTorch checkpoint (or it is damaged): pass the .pth/.pth.tar files of the model's release")


def _strip_parallel_prefix(state: StateDict) -> StateDict:
    """Checkpoints saved from DataParallel models prefix every key with ``module.``."""
    return {k.removeprefix("module."): v for k, v in state.items()}


def _extract(obj: object, part: CheckpointPart, file_name: str) -> StateDict:
    state = obj
    if part.entry is not None:
        if not isinstance(obj, dict) or part.entry not in obj:
            raise VcamError(f"{file_name} has no '{part.entry}' entry: is it the right checkpoint for this model?")
        state = obj[part.entry]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VcamError(f"{file_name} is not a state dict of tensors: is it the right checkpoint for this model?")
    state = _strip_parallel_prefix(state)
    if part.prefixes is not None:
        state = {k: v for k, v in state.items() if k.split(".", 1)[0] in part.prefixes}
    return {k.removeprefix(part.key_prefix): v for k, v in state.items()}


def release_of(cfg: ModelConfig, obj: object) -> ModelConfig:
    """The config of the release a face-vid2vid checkpoint is (New or Beta); ``cfg`` otherwise."""
    generator = obj.get("generator") if isinstance(obj, dict) else None
    if not cfg.name.startswith("facevid2vid") or not isinstance(generator, dict):
        return cfg
    keys = {k.removeprefix("module.") for k in generator}
    for marker, name in FACEVID2VID_RELEASES.items():
        if marker in keys:
            return demo_config(CONFIGS[name]) if cfg.name.endswith("-demo") else CONFIGS[name]
    return cfg


def _check_layout(name: str, expected: StateDict, found: StateDict) -> None:
    """Strict key and shape check; BatchNorm's ``num_batches_tracked`` counters may be absent."""
    missing = [k for k in expected if k not in found and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in found if k not in expected]
    wrong = [f"{k} {tuple(found[k].shape)}≠{tuple(v.shape)}" for k, v in expected.items() if k in found and found[k].shape != v.shape]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise VcamError(f"{name} does not match the expected layout — {'; '.join(problems)}")


def _submodule_state(model: TalkingHeadModel, target: str) -> StateDict:
    module = model.get_submodule(target)
    return module.state_dict()


def import_checkpoints(cfg: ModelConfig, files: Iterable[Path]) -> tuple[ModelConfig, dict[str, StateDict]]:
    """Our networks' state dicts from the public checkpoint files of ``cfg``'s layout.

    ``files`` are matched by name; a file of the single-file face-vid2vid layout may have any name,
    and its release decides the config returned with the state dicts.
    """
    layout = LAYOUTS[cfg.name.removesuffix("-demo")]
    by_name = {p.name: p for p in files}
    networks: dict[str, StateDict] = {}
    for index, spec in enumerate(layout):
        path = by_name.get(spec.name)
        if path is None and len(layout) == 1 and len(by_name) == 1:
            path = next(iter(by_name.values()))
        if path is None:
            raise VcamError(f"checkpoint {spec.name} is missing: pass all of {', '.join(f.name for f in layout)}")
        obj = read_checkpoint(path)
        cfg = release_of(cfg, obj)
        reference = build_model_on_meta(cfg)
        for part in LAYOUTS[cfg.name.removesuffix("-demo")][index].parts:
            state = _extract(obj, part, path.name)
            _check_layout(f"{path.name} → {part.target}", _submodule_state(reference, part.target), state)
            network, _, sub = part.target.partition(".")
            prefix = f"{sub}." if sub else ""
            networks.setdefault(network, {}).update({prefix + k: v.float().contiguous() for k, v in state.items()})
    return cfg, networks


def build_model_on_meta(cfg: ModelConfig) -> TalkingHeadModel:
    """The model's structure without allocating weights (for layout checks)."""
    with torch.device("meta"):
        return TalkingHeadModel(cfg)


@contextlib.contextmanager
def _initialisation_skipped() -> Iterator[None]:
    """``torch.nn.init``'s functions as no-ops, for networks whose every weight is loaded right after
    (initialising 130 M parameters at random took most of the loading time). Building on the meta
    device instead would import torch.compile's tracer (over a second) on the way to the first frame."""
    names = [name for name in dir(nn.init) if name.endswith("_") and not name.startswith("_")]
    saved = {name: getattr(nn.init, name) for name in names}
    for name in names:
        setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def install(cfg: ModelConfig, networks: dict[str, StateDict], dest: Path, sources: dict[str, str]) -> Path:
    """Write one safetensors file per network and the manifest into ``dest``, atomically."""
    dest.mkdir(parents=True, exist_ok=True)
    files = {}
    for network, state in sorted(networks.items()):
        path = dest / f"{network}.safetensors"
        atomic_write_bytes(path, save(state, metadata={"model": cfg.name, "network": network}))
        files[path.name] = sha256_file(path)
    manifest = {"model": cfg.name, "files": files, "sources": sources}
    atomic_write_text(dest / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return dest


def import_and_install(cfg: ModelConfig, files: list[Path], dest: Path) -> Path:
    """``vcam weights import``: check, convert and install public checkpoint files."""
    cfg, networks = import_checkpoints(cfg, files)
    return install(cfg, networks, dest, {p.name: sha256_file(p) for p in files})


def read_manifest(folder: Path) -> dict:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise VcamError(f"no weights installed in {folder}: run `vcam weights fetch` (or `vcam weights import FILES…`)") from None
    except (OSError, ValueError) as exc:
        raise VcamError(f"{folder / MANIFEST} is unreadable ({exc}): run `vcam weights fetch` again") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise VcamError(f"{folder / MANIFEST} is damaged: run `vcam weights fetch` again")
    return manifest


def weights_id(folder: Path) -> str:
    """A short stable id of the installed weights (profiles and engines are keyed by it)."""
    manifest = read_manifest(folder)
    blob = json.dumps(manifest["files"], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def verify(folder: Path) -> list[str]:
    """Names of installed files whose sha256 differs from the manifest (empty: all good)."""
    manifest = read_manifest(folder)
    return [
        name for name, digest in manifest["files"].items()
        if not (folder / name).is_file() or sha256_file(folder / name) != digest
    ]


def load_model(folder: Path, device: str | torch.device = "cpu") -> TalkingHeadModel:
    """The model described by an installed weights folder, in eval mode.

    The networks are built without the random initialisation that the files overwrite anyway.
    """
    manifest = read_manifest(folder)
    cfg = config_by_name(str(manifest.get("model", "")))
    if cfg is None:
        raise VcamError(f"{folder} holds weights for unknown model {manifest.get('model')!r}: reinstall them")
    with _initialisation_skipped():
        model = TalkingHeadModel(cfg).to(device)
    loaded = set()
    for name in manifest["files"]:
        network = name.removesuffix(".safetensors")
        try:
            state = load_file(str(folder / name))
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise VcamError(f"{folder / name} is damaged ({exc}): run `vcam weights verify`, then fetch again") from exc
        model.get_submodule(network).load_state_dict(state, strict=True)
        loaded.add(network)
    missing = sorted({key.split(".")[0] for key in model.state_dict()} - loaded)
    if missing:
        raise VcamError(f"{folder} has no weights for {', '.join(missing)}: run `vcam weights fetch` (or import them) again")
    return model.eval()


def fetch(model_name: str, dest: Path, progress: Callable[[str], Progress] | None = None) -> Path:
    """``vcam weights fetch``: get the official checkpoints (Hugging Face cache first), then import them."""
    files = HUB_FILES.get(model_name)
    if files is None:
        raise VcamError(
            f"{model_name} weights have no official download; get the checkpoint yourself and run `vcam weights import --model {model_name} FILE`"
        )
    paths = [download.fetch(file, progress(file.name) if progress else None) for file in files]
    return import_and_install(CONFIGS[model_name], paths, dest)


def download_size(model_name: str) -> int:
    """Bytes still to download for ``model_name``'s official files (0 when all are cached)."""
    return sum(file.size for file in HUB_FILES.get(model_name, ()) if download.cached(file) is None)
