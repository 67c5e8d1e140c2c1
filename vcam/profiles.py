"""Avatar profiles: one folder each, holding the keyframe, its face crop and its source state.

A profile folder has ``profile.toml`` (name, created, credit, crop box, keyframe file name),
the keyframe image and ``source.safetensors`` (the precomputed :class:`SourceState`, tagged
with the weights id it was computed with and recomputed when the weights change). Folders are
written under a temporary name and renamed into place, so a profile is either whole or absent.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import tomli_w
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from .errors import VcamError
from .fileio import atomic_write_bytes, atomic_write_text
from .models import SourceState
from .tracking import CropBox, FaceLandmarker, read_keyframe

PROFILE_FILE = "profile.toml"
SOURCE_FILE = "source.safetensors"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}
OWNER_FILE = ".owner"
"""In a folder being created: the id of the process writing it."""
STALE_AFTER_S = 3600.0
"""Where a process cannot be asked whether it still runs (Windows): the age of a stale folder."""

PrepareSource = Callable[[np.ndarray], SourceState]
"""Computes the source state from an RGB uint8 face crop of the model's input size."""


@dataclass(frozen=True)
class Profile:
    name: str
    folder: Path
    keyframe: np.ndarray  # BGR uint8, the whole avatar image
    box: CropBox  # the face crop in keyframe pixels
    created: str
    credit: str
    eye_open: tuple[float, float] | None = None  # the keyframe's measured eye-open ratios (left, right in the image)
    lip_open: float | None = None  # and lip-open ratio; None in profiles made before they were measured

    def face_crop(self, size: int) -> np.ndarray:
        """The keyframe's face crop as RGB uint8 size×size (what the networks read)."""
        return cv2.cvtColor(self.box.crop(self.keyframe, size), cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class ProfileProblem:
    name: str
    message: str


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise VcamError(f"profile name {name!r} is not allowed: use up to 40 letters, digits, '-', '_' or '.'")
    return name


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if image is None:
        raise VcamError(f"cannot read image {path}: give a JPEG or PNG photo")
    return image


def _owner_running(folder: Path) -> bool:
    """Whether the process that is creating this folder still runs."""
    try:
        pid = int((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return False
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # os.kill would end the process there
        return time.time() - folder.stat().st_mtime < STALE_AFTER_S
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class ProfileStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    # -- listing ----------------------------------------------------------------------------------

    def names(self) -> list[str]:
        if not self.root.is_dir():
            if self.root.exists():
                raise VcamError(
                    f"the profiles folder {self.root} is a file, not a folder: move it away, "
                    "or set profiles_dir (VCAM_PROFILES_DIR) to a folder"
                )
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / PROFILE_FILE).is_file() and not p.name.startswith("."))

    def scan(self) -> tuple[list[Profile], list[ProfileProblem]]:
        """All readable profiles, and a problem per damaged one (they are skipped, never fatal)."""
        good, bad = [], []
        for name in self.names():
            try:
                good.append(self.load(name))
            except VcamError as exc:
                bad.append(ProfileProblem(name, str(exc)))
        return good, bad

    def remove_unfinished(self) -> list[str]:
        """Delete the folders that an interrupted ``create`` left behind (its process is gone);
        the names of the profiles they were for."""
        if not self.root.is_dir():
            return []
        removed = []
        for folder in sorted(self.root.glob(".*.creating")):
            if folder.is_dir() and not _owner_running(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name[1 : -len(".creating")])
        return removed

    # -- reading ----------------------------------------------------------------------------------

    def load(self, name: str) -> Profile:
        folder = self.root / name
        meta_path = folder / PROFILE_FILE
        if not meta_path.is_file():
            known = ", ".join(self.names()) or "none yet"
            raise VcamError(f"no profile named {name!r} (profiles: {known}); create one with `vcam profile create {name} PHOTO`")
        try:
            meta = tomllib.loads(meta_path.read_text())
            box = CropBox(*(float(meta["box"][k]) for k in ("cx", "cy", "size")), float(meta["box"].get("angle", 0.0)))
            keyframe_name = str(meta["keyframe"])
            face = meta.get("face", {})
            eye_open = (float(face["eye_open"][0]), float(face["eye_open"][1])) if "eye_open" in face else None
            lip_open = float(face["lip_open"]) if "lip_open" in face else None
        except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError, OSError) as exc:
            raise VcamError(f"profile {name!r} is damaged ({meta_path.name}: {exc}); remove it with `vcam profile remove {name}` and create it again") from None
        try:
            keyframe = read_image(folder / keyframe_name)
        except VcamError:
            raise VcamError(f"profile {name!r} is damaged: its keyframe {keyframe_name} is missing or unreadable; create it again") from None
        return Profile(name, folder, keyframe, box, str(meta.get("created", "")), str(meta.get("credit", "")), eye_open, lip_open)

    def source_state(self, profile: Profile, prepare: PrepareSource, weights_id: str, input_size: int) -> SourceState:
        """The cached source state, recomputed (and stored) when missing, damaged or stale."""
        path = profile.folder / SOURCE_FILE
        try:
            with safe_open(str(path), framework="pt") as f:
                cached_id = (f.metadata() or {}).get("weights_id")
            if cached_id == weights_id:
                return SourceState.from_tensors(load_file(str(path)))
        except (FileNotFoundError, SafetensorError, KeyError, OSError):
            pass
        state = prepare(profile.face_crop(input_size))
        try:
            atomic_write_bytes(path, save(state.tensors(), metadata={"weights_id": weights_id}))
        except OSError as exc:  # a read-only profiles folder: compute the state again next time
            if exc.errno not in _UNWRITABLE:
                raise
        return state

    # -- changing ---------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        photo: Path,
        prepare: PrepareSource,
        weights_id: str,
        input_size: int,
        credit: str = "",
        landmarker: FaceLandmarker | None = None,
        replace: bool = False,
    ) -> Profile:
        """Find the face in ``photo``, crop it, measure it, compute the source state, store it all atomically."""
        check_name(name)
        final = self.root / name
        if final.exists() and not replace:
            raise VcamError(f"profile {name!r} already exists: pick another name or add --replace")
        image = read_image(photo)
        try:
            face = read_keyframe(image, landmarker)
        except VcamError as exc:
            raise VcamError(f"{photo}: {exc}") from None
        box = face.box
        staging = self.root / f".{name}.creating"
        self.names()  # the profiles folder must be a folder
        with self.writing(f"create profile {name!r}"):
            try:
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
                (staging / OWNER_FILE).write_text(str(os.getpid()))
                suffix = photo.suffix.lower() if photo.suffix.lower() in (".jpg", ".jpeg", ".png") else ".png"
                keyframe_name = f"keyframe{suffix}"
                if suffix == ".png" and photo.suffix.lower() != ".png":
                    cv2.imwrite(str(staging / keyframe_name), image)
                else:
                    shutil.copyfile(photo, staging / keyframe_name)
                meta = {
                    "name": name,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "credit": credit,
                    "keyframe": keyframe_name,
                    "box": {"cx": box.cx, "cy": box.cy, "size": box.size, "angle": box.angle},
                    "face": {"eye_open": list(face.eye_open), "lip_open": face.lip_open},
                }
                atomic_write_text(staging / PROFILE_FILE, tomli_w.dumps(meta))
                profile = Profile(name, staging, image, box, meta["created"], credit, face.eye_open, face.lip_open)
                self.source_state(profile, prepare, weights_id, input_size)
                (staging / OWNER_FILE).unlink()
                if final.exists():
                    trash = self.root / f".{name}.replaced"
                    shutil.rmtree(trash, ignore_errors=True)
                    final.rename(trash)
                    staging.rename(final)
                    shutil.rmtree(trash, ignore_errors=True)
                else:
                    staging.rename(final)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return self.load(name)

    @contextlib.contextmanager
    def writing(self, action: str) -> Iterator[None]:
        """Turn "the profiles folder cannot be written" (read-only, no permission, full) into one line."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in _UNWRITABLE:
                raise
            raise VcamError(
                f"cannot {action}: {self.root} is not writable ({exc.strerror}); make it writable, "
                "or set profiles_dir (VCAM_PROFILES_DIR) to a folder you can write"
            ) from None

    def remove(self, name: str) -> None:
        folder = self.root / check_name(name)
        if not folder.is_dir():
            raise VcamError(f"no profile named {name!r}; `vcam profile list` shows them")
        trash = self.root / f".{name}.removing"
        with self.writing(f"remove profile {name!r}"):
            folder.rename(trash)
            shutil.rmtree(trash)
