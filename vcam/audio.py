"""Microphone level -> voice activity -> mouth opening.

Drives the avatar's mouth when the face is lost and in "camera off" mode. `MouthFromVoice` is
the pure signal processing; `Microphone` feeds it from a sounddevice input stream and degrades
to a closed mouth (never an exception) when there is no usable input.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import sounddevice

_log = logging.getLogger(__name__)

SILENCE_DB = -100.0
"""Level reported for digital silence (dBFS)."""

_DEVICE_HINT = (
    "pick `audio_device` in the settings file (`python -m sounddevice` lists the devices), "
    "or set `audio = false` there to silence this"
)


@dataclass(frozen=True)
class VoiceConfig:
    """How microphone level becomes mouth opening. Levels are in dB; "above floor" is relative to
    the adaptive noise floor, so the same settings work for quiet and noisy rooms."""

    open_db: float = 9.0
    """Voice starts when the level rises this far above the noise floor..."""
    close_db: float = 5.0
    """...and stops when it falls back below this (hysteresis: no flicker at the threshold)."""
    loudness_range_db: float = 24.0
    """The mouth opens over this many dB below the recent speech peak (fully open at the peak)."""
    peak_fall_db_per_s: float = 4.0
    """How fast the remembered speech peak falls while the voice is quieter."""
    min_peak_db: float = 20.0
    """The peak is at least this far above the floor, so faint sounds open the mouth only a little."""
    floor_rise_db_per_s: float = 3.0
    """How fast the floor creeps up to a louder steady background (a fan, a hum)."""
    floor_fall_s: float = 0.2
    """Time constant of the floor following a quieter background down."""
    min_floor_db: float = -70.0
    """The floor never goes below this, so near-silent hiss after digital silence stays closed."""
    attack_s: float = 0.03
    """Time constant of the mouth opening (short: lively)."""
    release_s: float = 0.08
    """Time constant of the mouth closing (a little longer: no jitter between syllables)."""


def _rms_dbfs(block: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(block, dtype=np.float64))))
    return 20.0 * math.log10(max(rms, 10.0 ** (SILENCE_DB / 20.0)))


def _smoothing(dt: float, time_constant: float) -> float:
    """Fraction of the way a one-pole filter moves towards its target in `dt` seconds."""
    return 1.0 - math.exp(-dt / time_constant)


class MouthFromVoice:
    """Turns consecutive blocks of mono samples in [-1, 1] into a mouth opening in [0, 1]."""

    def __init__(self, samplerate: int, config: VoiceConfig = VoiceConfig()) -> None:
        self._samplerate = samplerate
        self._config = config
        self._level_db = SILENCE_DB
        self._floor_db: float | None = None
        self._peak_db = SILENCE_DB
        self._voice_active = False
        self._mouth = 0.0

    @property
    def level_db(self) -> float:
        """RMS level of the last block in dBFS."""
        return self._level_db

    @property
    def noise_floor_db(self) -> float:
        """The current estimate of the background level in dBFS."""
        return self._config.min_floor_db if self._floor_db is None else self._floor_db

    @property
    def voice_active(self) -> bool:
        return self._voice_active

    def process(self, block: np.ndarray) -> float:
        """Consume one block of samples; returns the smoothed mouth opening."""
        config = self._config
        dt = len(block) / self._samplerate
        level = self._level_db = _rms_dbfs(block)
        floor = self._floor_db = self._track_floor(level, dt)
        falling_peak = self._peak_db - config.peak_fall_db_per_s * dt
        self._peak_db = max(level, falling_peak, floor + config.min_peak_db)
        threshold = config.close_db if self._voice_active else config.open_db
        self._voice_active = level - floor > threshold
        target = 0.0
        if self._voice_active:
            closed_at = max(floor + config.close_db, self._peak_db - config.loudness_range_db)
            target = max(level - closed_at, 0.0) / (self._peak_db - closed_at)
        time_constant = config.attack_s if target > self._mouth else config.release_s
        self._mouth += (target - self._mouth) * _smoothing(dt, time_constant)
        return self._mouth

    def _track_floor(self, level_db: float, dt: float) -> float:
        """Follow quieter input down quickly and louder input up slowly (speech is brief,
        background is steady)."""
        config = self._config
        floor = self._floor_db
        if floor is None:
            floor = level_db
        elif level_db < floor:
            floor += (level_db - floor) * _smoothing(dt, config.floor_fall_s)
        else:
            floor = min(level_db, floor + config.floor_rise_db_per_s * dt)
        return max(floor, config.min_floor_db)


class Microphone:
    """The system microphone as a mouth-opening source, used as a context manager.

    Without a usable input (no PortAudio, no device, the device fails to open) it logs one
    warning, reports `available == False` and keeps the mouth closed.
    """

    def __init__(
        self,
        device: int | str | None = None,
        samplerate: int = 16000,
        block_ms: int = 20,
        config: VoiceConfig = VoiceConfig(),
    ) -> None:
        self._device = device
        self._samplerate = samplerate
        self._blocksize = samplerate * block_ms // 1000
        self._voice = MouthFromVoice(samplerate, config)
        self._mouth = 0.0
        self._lock = threading.Lock()
        self._stream: sounddevice.InputStream | None = None

    def __enter__(self) -> Microphone:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def available(self) -> bool:
        """Whether audio is being captured."""
        return self._stream is not None

    @property
    def level_db(self) -> float:
        with self._lock:
            return self._voice.level_db

    def mouth_open(self) -> float:
        """The latest mouth opening in [0, 1]; 0.0 when no audio is captured."""
        with self._lock:
            return self._mouth

    def start(self) -> None:
        try:
            import sounddevice
        except OSError as exc:
            _log.warning(
                "Microphone disabled: the PortAudio library is missing (%s); install it "
                "(Debian/Ubuntu: `sudo apt install libportaudio2`) to let your voice move the "
                "avatar's mouth.",
                exc,
            )
            return
        stream = None
        try:
            stream = sounddevice.InputStream(
                device=self._device,
                samplerate=self._samplerate,
                blocksize=self._blocksize,
                channels=1,
                dtype="float32",
                callback=self._on_block,
            )
            stream.start()
        except (sounddevice.PortAudioError, ValueError) as exc:
            if stream is not None:
                stream.close()
            which = "the default input" if self._device is None else repr(self._device)
            _log.warning(
                "Microphone disabled: %s could not be opened (%s); %s.", which, exc, _DEVICE_HINT
            )
            return
        self._stream = stream

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _on_block(self, indata: np.ndarray, frames: int, time: object, status: object) -> None:
        """sounddevice callback, on PortAudio's audio thread."""
        with self._lock:
            self._mouth = self._voice.process(indata[:, 0])


def list_input_devices() -> list[str]:
    """Names of the audio input devices, as `audio_device` accepts them; empty without PortAudio."""
    try:
        import sounddevice
    except OSError:
        return []
    devices = sounddevice.query_devices()
    return [device["name"] for device in devices if device["max_input_channels"] > 0]
