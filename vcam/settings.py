"""Every option of vcam in one pydantic-settings model.

Precedence, highest first: command-line overrides, ``VCAM_*`` environment variables, the TOML
file (``settings.toml`` in the user config folder, or ``$VCAM_SETTINGS_FILE``), defaults.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
import tomli_w
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from .errors import VcamError
from .fileio import atomic_write_text
from .tracking import FACE_EXPAND, FACE_SHIFT_Y

APP = "vcam"
CHECKOUT = Path(__file__).resolve().parents[1]


def settings_path() -> Path:
    return Path(os.environ.get("VCAM_SETTINGS_FILE") or Path(platformdirs.user_config_dir(APP)) / "settings.toml")


def data_dir() -> Path:
    return Path(os.environ.get("VCAM_DATA_DIR") or platformdirs.user_data_dir(APP))


def _in_checkout() -> bool:
    """Running from a source checkout: use its own ``profiles/`` and ``engines/`` folders."""
    return (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "profiles").is_dir()


def default_profiles_dir() -> Path:
    return CHECKOUT / "profiles" if _in_checkout() else data_dir() / "profiles"


def default_engines_dir() -> Path:
    return CHECKOUT / "engines" if _in_checkout() else data_dir() / "engines"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VCAM_", extra="forbid", validate_default=True)

    # Capture
    camera: str = Field("0", description="webcam index, /dev/videoN, or a video/image path to play instead")
    camera_width: int = Field(1280, gt=0)
    camera_height: int = Field(720, gt=0)
    camera_fps: float = Field(30.0, gt=0, le=240)
    loop_clip: bool = Field(True, description="replay a clip source from the start when it ends")
    # Tracking
    crop_expand: float = Field(FACE_EXPAND, gt=1.0, le=4.0, description="crop side as a multiple of the detected face size")
    crop_shift_y: float = Field(FACE_SHIFT_Y, ge=-1.0, le=1.0, description="crop centre shift, in face sizes (negative = up)")
    detect_every: int = Field(2, ge=1, le=30, description="run the face detector every N frames while the face is found")
    # Avatar and model
    profile: str = "default"
    model: Literal["liveportrait", "facevid2vid"] = "liveportrait"
    backend: Literal["auto", "tensorrt", "torch", "onnxruntime"] = "auto"
    precision: Literal["fp16", "bf16", "fp32"] = "fp16"
    profiles_dir: Path = Field(default_factory=default_profiles_dir)
    engines_dir: Path = Field(default_factory=default_engines_dir)
    weights_dir: Path = Field(default_factory=lambda: data_dir() / "weights")
    # Motion
    frontalize: bool = False
    frontalize_strength: float = Field(1.0, ge=0.0, le=1.0)
    frontalize_target: Literal["camera", "keyframe"] = "camera"
    eye_reaim_degrees: float = Field(0.0, ge=0.0, le=20.0, description="raise the gaze while frontalized")
    smoothing_min_cutoff: float = Field(1.5, gt=0)
    smoothing_beta: float = Field(0.3, ge=0)
    face_lost_hold_s: float = Field(0.4, ge=0)
    ease_s: float = Field(0.8, ge=0)
    # Audio
    audio: bool = True
    audio_device: str | None = None
    camera_off: bool = Field(False, description="drive the avatar by voice and idle motion alone")
    # Output
    sink: str = Field("virtual", description="virtual, virtual:DEVICE, file:PATH or preview")
    virtual_camera_backend: str | None = None
    output_width: int = Field(1280, gt=0)
    output_height: int = Field(720, gt=0)
    output_fps: float = Field(30.0, gt=0, le=120)
    mirror: bool = False
    preview: bool = False
    # Streaming (vcam send / receive)
    stream_code: str | None = Field(None, description="pairing code shared by `vcam send` and `vcam receive`")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=settings_path())


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "settings"
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    value = first.get("input")
    shown = f" = {value!r}" if not isinstance(value, dict) else ""
    return (
        f"invalid setting {field}{shown}: {first['msg']}{more} — fix it in {settings_path()}, "
        f"VCAM_{field.upper()} or the command line"
    )


def load_settings(**overrides: Any) -> Settings:
    """Settings from all sources; ``overrides`` (the command line) win. Errors are one line."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise VcamError(_describe(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise VcamError(f"{settings_path()} is not valid TOML ({exc}); fix or delete it") from None


def save_settings(changes: dict[str, Any]) -> Path:
    """Merge ``changes`` into the TOML file atomically, keeping the user's other keys."""
    path = settings_path()
    try:
        current = tomllib.loads(path.read_text()) if path.exists() else {}
    except tomllib.TOMLDecodeError as exc:
        raise VcamError(f"{path} is not valid TOML ({exc}); fix or delete it before changing settings") from None
    current.update({k: str(v) if isinstance(v, Path) else v for k, v in changes.items() if v is not None})
    atomic_write_text(path, tomli_w.dumps(current))
    return path
