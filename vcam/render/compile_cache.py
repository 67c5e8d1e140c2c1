"""What compiling the CUDA path produces, kept between starts.

A first start spends over a minute choosing convolution forms on the device and compiling the
per-frame passes with torch.compile (Triton kernels). Both results are saved in one folder of the
engines folder per model and precision, keyed like TensorRT plans by GPU, library versions and
weights: a later start on the same machine and weights loads them instead of redoing the work
(torch.compile still traces the networks, but finds every graph and kernel compiled). A key that
no longer matches (another GPU, an upgraded vcam, torch or Triton, other weights) rebuilds the folder,
and :attr:`CompileCache.status` says why in one line.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

import vcam
from vcam.fileio import atomic_write_bytes, atomic_write_text

log = logging.getLogger("vcam.render")

KEY_FILE = "key.json"
ARTIFACTS_FILE = "compiled.bin"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "none"


@functools.cache
def code_version() -> str:
    """vcam's version and a digest of the code that builds the compiled passes (the networks and their
    rewrites), so a changed vcam compiles afresh instead of missing half of what it finds saved."""
    digest = hashlib.sha256()
    package = Path(vcam.__file__).parent
    for path in sorted([*package.glob("models/*.py"), *package.glob("render/*.py")]):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{vcam.__version__}+{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class CompileKey:
    """Everything the saved kernels and convolution choices depend on."""

    vcam: str
    gpu: str
    compute_capability: str
    torch: str
    triton: str
    cuda: str
    weights_id: str
    precision: str

    @classmethod
    def here(cls, device: torch.device, weights_id: str, precision: str) -> "CompileKey":
        major, minor = torch.cuda.get_device_capability(device)
        return cls(
            vcam=code_version(), gpu=torch.cuda.get_device_name(device), compute_capability=f"{major}.{minor}", torch=torch.__version__,
            triton=_version("triton"), cuda=str(torch.version.cuda), weights_id=weights_id, precision=precision,
        )

    def changes_from(self, old: "CompileKey") -> str:
        """What differs from ``old``, e.g. "GPU NVIDIA A10 → NVIDIA H100 80GB HBM3"."""
        names = {"gpu": "GPU", "compute_capability": "compute capability", "weights_id": "weights"}
        return ", ".join(
            f"{names.get(f.name, f.name)} {getattr(old, f.name)} → {getattr(self, f.name)}"
            for f in fields(self) if getattr(old, f.name) != getattr(self, f.name)
        )


def compile_folder(engines_dir: Path, model_name: str, precision: str) -> Path:
    """Where the compiled CUDA path of ``model_name`` at ``precision`` is kept."""
    return engines_dir / f"torch-compiled-{re.sub(r'[^a-z0-9]+', '-', model_name.lower())}-{precision}"


class CompileCache:
    """One folder of saved compilation: the key, the convolution forms chosen and torch.compile's
    artifacts (its "mega-cache": FX graphs, AOT autograd graphs, Triton kernels and autotuning)."""

    def __init__(self, folder: Path, key: CompileKey) -> None:
        self.folder = folder
        self.key = key
        self.conv_modes: dict[str, str] | None = None
        self.hit = False
        self.status = ""

    def saved_conv_modes(self) -> dict[str, str] | None:
        """The convolution forms saved under this key (None when there are none), without loading the
        compiled kernels: what an uncompiled renderer needs to start without timing every layer."""
        try:
            saved = json.loads((self.folder / KEY_FILE).read_text())
            if CompileKey(**saved["key"]) != self.key:
                return None
            return {str(k): str(v) for k, v in saved["conv_modes"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None

    def load(self) -> None:
        """Read the folder. On a matching key, hand torch.compile its saved artifacts (call this
        before compiling) and keep the convolution forms in :attr:`conv_modes`; say what happened
        in :attr:`status`."""
        try:
            saved = json.loads((self.folder / KEY_FILE).read_text())
            old = CompileKey(**saved["key"])
            conv_modes = {str(k): str(v) for k, v in saved["conv_modes"].items()}
            artifacts = (self.folder / ARTIFACTS_FILE).read_bytes()
        except FileNotFoundError:
            self.status = f"no compiled kernels in {self.folder} yet"
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            self.status = f"the compiled kernels in {self.folder} are unreadable"
        else:
            if old == self.key:
                torch.compiler.load_cache_artifacts(artifacts)
                self.conv_modes, self.hit = conv_modes, True
                self.status = f"compiled kernels loaded from {self.folder}"
                return
            self.status = f"the compiled kernels in {self.folder} do not match ({self.key.changes_from(old)})"
        log.info("%s: compiling the CUDA path (about a minute, once)", self.status)

    def save(self, conv_modes: dict[str, str]) -> None:
        """Write the convolution forms and everything torch.compile produced in this process."""
        saved = torch.compiler.save_cache_artifacts()
        if saved is None:
            return
        atomic_write_bytes(self.folder / ARTIFACTS_FILE, saved[0])
        # The key goes last: a folder without it (or with an old one) is never loaded.
        atomic_write_text(self.folder / KEY_FILE, json.dumps({"key": asdict(self.key), "conv_modes": conv_modes}, indent=2) + "\n")
        self.status += ": compiled and saved for the next start"
