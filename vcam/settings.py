"""Every option of vcam in one pydantic-settings model.

Precedence, highest first: command-line overrides, ``VCAM_*`` environment variables, the TOML
file (``settings.toml`` in the user config folder, or ``$VCAM_SETTINGS_FILE``), defaults.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import tomllib
from pathlib import Path
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import platformdirs
import tomli_w
from pydantic import Field, GetCoreSchemaHandler, ValidationError, field_validator
from pydantic_core import PydanticCustomError, core_schema
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from .errors import VcamError
from .fileio import atomic_write_text
from .models.config import CONFIGS
from .render.registry import backend_choices, precision_choices

APP = "vcam"
CHECKOUT = Path(__file__).resolve().parents[1]
ENVIRONMENT_ONLY = ("VCAM_SETTINGS_FILE", "VCAM_DATA_DIR")
"""Variables that locate the settings and data rather than set an option."""

log = logging.getLogger("vcam")


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


@dataclass(frozen=True)
class OneOf:
    """A value among ``choices()``, read when validated and when the command line is built (the model
    and backend registries can grow)."""

    choices: Callable[[], Sequence[str]]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def _check(self, value: str) -> str:
        allowed = [repr(c) for c in self.choices()]
        if value not in self.choices():
            expected = f"{', '.join(allowed[:-1])} or {allowed[-1]}" if len(allowed) > 1 else allowed[0]
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return value


@dataclass(frozen=True)
class Flag:
    """Makes an option a flag of ``vcam run`` and ``vcam tray`` (and the commands that share their
    options): ``--NAME`` from the field's name unless ``name`` is given; the help is the field's
    description; a bool is a ``--x/--no-x`` pair."""

    name: str | None = None


@dataclass(frozen=True)
class RunFlag:
    field: str
    flag: str
    kind: type
    help: str | None
    choices: Callable[[], Sequence[str]] | None


def run_flags() -> list[RunFlag]:
    """The options given as command-line flags, in the order declared."""
    flags = []
    for name, info in Settings.model_fields.items():
        marks = [m for m in info.metadata if isinstance(m, Flag)]
        if not marks:
            continue
        one_of = next((m for m in info.metadata if isinstance(m, OneOf)), None)
        flag = marks[0].name or f"--{name.replace('_', '-')}"
        assert isinstance(info.annotation, type), f"{name}: a flag needs a plain type"
        flags.append(RunFlag(name, flag, info.annotation, info.description, one_of.choices if one_of else None))
    return flags


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VCAM_", extra="forbid", validate_default=True)

    # Capture
    camera: Annotated[str, Flag("--source")] = Field("0", description="webcam index, /dev/videoN, or a clip/image to play")
    camera_width: int = Field(1280, gt=0)
    camera_height: int = Field(720, gt=0)
    camera_fps: float = Field(30.0, gt=0, le=240)
    loop_clip: bool = Field(True, description="replay a clip source from the start when it ends")
    # Tracking
    crop_expand: float = Field(2.2, gt=1.0, le=4.0, description="camera crop side as a multiple of the face's landmark box (LivePortrait: 2.2)")
    crop_shift_y: float = Field(-0.1, ge=-1.0, le=1.0, description="camera crop centre shift, in crop sides (negative = up; LivePortrait: -0.1)")
    # Avatar and model
    profile: Annotated[str, Flag()] = Field("default", description="avatar profile to start with")
    model: Annotated[str, OneOf(lambda: tuple(CONFIGS)), Flag()] = Field("liveportrait", description="the networks and their weights")
    backend: Annotated[str, OneOf(backend_choices), Flag()] = Field("auto", description="renderer backend (auto: the fastest that works here)")
    precision: Annotated[str, OneOf(precision_choices)] = "fp16"
    profiles_dir: Path = Field(default_factory=default_profiles_dir)
    engines_dir: Path = Field(default_factory=default_engines_dir)
    weights_dir: Path = Field(default_factory=lambda: data_dir() / "weights")
    landmarks_dir: Path = Field(default_factory=lambda: data_dir() / "landmarks", description="the face tracker's MediaPipe models")
    # Motion
    frontalize: Annotated[bool, Flag()] = Field(False, description="make the avatar look into the camera")
    frontalize_strength: Annotated[float, Flag("--strength")] = Field(1.0, ge=0.0, le=1.0, description="frontalization strength 0..1")
    frontalize_target: Literal["camera", "keyframe"] = "camera"
    driving_option: Literal["pose-friendly", "expression-friendly"] = Field(
        "pose-friendly", description="expression-friendly scales the user's motion to the avatar's face size (LivePortrait)"
    )
    driving_multiplier: float = Field(1.0, ge=0.0, le=2.0, description="strength of the user's expression and motion")
    eye_reaim_degrees: float = Field(0.0, ge=0.0, le=20.0, description="raise the gaze while frontalized")
    smoothing_min_cutoff: float = Field(1.5, gt=0)
    smoothing_beta: float = Field(0.3, ge=0)
    face_lost_hold_s: float = Field(0.4, ge=0)
    ease_s: float = Field(0.8, ge=0)
    # Audio
    audio: Annotated[bool, Flag()] = Field(True, description="use the microphone to drive the mouth when the face is lost")
    audio_device: str | None = None
    camera_off: Annotated[bool, Flag()] = Field(False, description="no camera: drive the avatar by voice and idle motion")
    # Output
    sink: Annotated[str, Flag()] = Field("virtual", description="virtual, virtual:DEVICE, file:PATH (.mp4/.avi/.y4m), preview or null")
    virtual_camera_backend: str | None = None
    output_width: Annotated[int, Flag("--width")] = Field(1280, gt=0, description="output width in pixels")
    output_height: Annotated[int, Flag("--height")] = Field(720, gt=0, description="output height in pixels")
    output_fps: Annotated[float, Flag("--fps")] = Field(30.0, gt=0, le=120, description="output frames per second")
    mirror: Annotated[bool, Flag()] = Field(False, description="mirror the output horizontally")
    preview: Annotated[bool, Flag()] = Field(False, description="also show a preview window")
    gpu_compose: bool = Field(True, description="compose the output frame on the GPU when rendering there (off: OpenCV on the CPU)")
    # Streaming (vcam send / receive)
    stream_code: str | None = Field(None, description="pairing code shared by `vcam send` and `vcam receive`")

    @field_validator("camera")
    @classmethod
    def _camera_given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty: give a webcam number (0), /dev/videoN, or a clip, image or folder path")
        return value.strip()

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
    _warn_unknown_environment()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise VcamError(_describe(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise VcamError(f"{settings_path()} is not valid TOML ({exc}); fix or delete it") from None
    except UnicodeDecodeError as exc:
        raise VcamError(_not_utf8(exc)) from None


def _not_utf8(error: UnicodeDecodeError) -> str:
    return f"{settings_path()} is not UTF-8 text (byte {error.start}: {error.reason}); save it as UTF-8, or delete it"


def _warn_unknown_environment() -> None:
    """A ``VCAM_*`` variable that names no option is most likely a typo: say so, with the nearest option."""
    known = {f"VCAM_{name.upper()}" for name in Settings.model_fields} | set(ENVIRONMENT_ONLY)
    for name in sorted(os.environ):
        if name.upper().startswith("VCAM_") and name.upper() not in known:
            _warn_once(name, tuple(sorted(known)))


@functools.cache
def _warn_once(name: str, known: tuple[str, ...]) -> None:
    nearest = difflib.get_close_matches(name.upper(), known, n=1)
    hint = f"; did you mean {nearest[0]}?" if nearest else "; `vcam settings` lists the options"
    log.warning("ignoring unknown environment variable %s%s", name, hint)


def settings_toml(settings: Settings) -> str:
    """Every option as TOML that can be pasted into the settings file; options without a value are commented out."""
    values = settings.model_dump(mode="json")
    return "".join(tomli_w.dumps({key: value}) if value is not None else f"# {key} = (not set)\n" for key, value in values.items())


def save_settings(changes: dict[str, Any]) -> Path:
    """Merge ``changes`` into the TOML file atomically, keeping the user's other keys."""
    path = settings_path()
    try:
        current = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except tomllib.TOMLDecodeError as exc:
        raise VcamError(f"{path} is not valid TOML ({exc}); fix or delete it before changing settings") from None
    except UnicodeDecodeError as exc:
        raise VcamError(_not_utf8(exc)) from None
    current.update({k: str(v) if isinstance(v, Path) else v for k, v in changes.items() if v is not None})
    atomic_write_text(path, tomli_w.dumps(current))
    return path
