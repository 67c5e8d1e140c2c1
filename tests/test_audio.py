"""vcam.audio: the voice -> mouth processor on synthetic and recorded speech, and the Microphone
on a real ALSA capture stream (a PCM defined by the test, fed through a FIFO)."""

from __future__ import annotations

import ctypes.util
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from vcam.audio import SILENCE_DB, Microphone, MouthFromVoice, VoiceConfig, list_input_devices

SR = 16000
BLOCK = SR // 50  # 20 ms
ROOM_DB = -60.0  # microphone self-noise of a quiet room
SYLLABLE_S = 0.2
GAP_S = 0.15


def noise(db: float, seconds: float, seed: int = 0) -> np.ndarray:
    """White noise with an RMS level of `db` dBFS."""
    samples = np.random.default_rng(seed).standard_normal(int(seconds * SR))
    return (samples * 10 ** (db / 20)).astype(np.float32)


def tone(db: float, seconds: float, hz: float = 250.0) -> np.ndarray:
    """A sine with an RMS level of `db` dBFS (whole periods per 20 ms block, so every block has it)."""
    t = np.arange(int(seconds * SR)) / SR
    return (np.sin(2 * np.pi * hz * t) * np.sqrt(2) * 10 ** (db / 20)).astype(np.float32)


def hum(db: float, seconds: float) -> np.ndarray:
    """Mains hum with harmonics, like a fan or a ground loop, at `db` dBFS."""
    t = np.arange(int(seconds * SR)) / SR
    waveform = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in (1, 2, 3))
    return (waveform / np.sqrt(np.mean(waveform**2)) * 10 ** (db / 20)).astype(np.float32)


def syllables(count: int, db: float = -20.0) -> np.ndarray:
    """Voiced syllables (a 140 Hz glottal tone with harmonics, rising and falling like speech)
    separated by silent gaps."""
    t = np.arange(int(SYLLABLE_S * SR)) / SR
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    voiced *= np.hanning(len(t)) * 10 ** (db / 20) / np.sqrt(np.mean(voiced**2))
    gap = np.zeros(int(GAP_S * SR))
    return np.concatenate([np.concatenate([voiced, gap]) for _ in range(count)]).astype(np.float32)


@dataclass(frozen=True)
class Trace:
    """Per-block outputs of the processor."""

    mouth: np.ndarray
    active: np.ndarray
    floor: np.ndarray

    def between(self, start_s: float, end_s: float) -> Trace:
        window = slice(round(start_s / 0.02), round(end_s / 0.02))
        return Trace(self.mouth[window], self.active[window], self.floor[window])


def run(signal: np.ndarray, voice: MouthFromVoice | None = None, block: int = BLOCK) -> Trace:
    voice = voice or MouthFromVoice(SR)
    rows = []
    for start in range(0, len(signal) - block + 1, block):
        mouth = voice.process(signal[start : start + block])
        rows.append((mouth, voice.voice_active, voice.noise_floor_db))
    mouth, active, floor = zip(*rows)
    return Trace(np.array(mouth), np.array(active), np.array(floor))


def openings(mouth: np.ndarray, high: float = 0.5, low: float = 0.2) -> int:
    """How many times the mouth opens past `high` after having closed below `low`."""
    count, closed = 0, True
    for value in mouth:
        if closed and value > high:
            count, closed = count + 1, False
        elif value < low:
            closed = True
    return count


def test_quiet_room_keeps_mouth_closed() -> None:
    trace = run(noise(ROOM_DB, 3.0))
    assert not trace.active.any()
    assert trace.mouth.max() == 0.0


def test_mouth_follows_each_syllable_and_closes_in_silence() -> None:
    signal = noise(ROOM_DB, 4.0)
    signal[SR : SR + len(speech := syllables(6))] += speech
    trace = run(signal)
    period = SYLLABLE_S + GAP_S
    for i in range(6):
        start = 1.0 + i * period
        assert trace.between(start, start + SYLLABLE_S).mouth.max() > 0.6, f"syllable {i}"
        assert trace.between(start + SYLLABLE_S, start + period).mouth.min() < 0.2, f"gap {i}"
    assert openings(trace.mouth) == 6
    after_speech = 1.0 + 6 * period
    assert trace.between(after_speech + 0.1, 4.0).mouth.max() < 0.05
    assert not trace.between(after_speech - GAP_S, 4.0).active.any()


def test_steady_hum_is_absorbed_into_the_noise_floor() -> None:
    hum_db = -35.0
    signal = np.concatenate([noise(ROOM_DB, 1.0), noise(ROOM_DB, 14.0, seed=1) + hum(hum_db, 14.0)])
    signal[13 * SR : 13 * SR + len(speech := syllables(4, db=-15.0))] += speech
    trace = run(signal)
    assert trace.between(1.0, 1.5).mouth.max() > 0.3, "a sudden hum first looks like voice"
    assert trace.between(11.0, 13.0).mouth.max() < 0.01, "after a while it no longer does"
    assert not trace.between(11.0, 13.0).active.any()
    assert abs(trace.floor[round(13.0 / 0.02)] - hum_db) < 2.0
    assert openings(trace.between(13.0, 15.0).mouth) == 4, "voice over the hum still moves the mouth"


def test_noise_floor_follows_a_quieter_room_down_quickly() -> None:
    signal = np.concatenate([noise(-40.0, 1.0), noise(ROOM_DB, 1.0, seed=1)])
    trace = run(signal)
    assert trace.floor[round(0.9 / 0.02)] == pytest.approx(-40.0, abs=1.0)
    assert trace.floor[-1] == pytest.approx(ROOM_DB, abs=1.0)
    assert not trace.active.any()


def test_voice_activity_has_hysteresis() -> None:
    config = VoiceConfig()
    between = ROOM_DB + (config.open_db + config.close_db) / 2
    phases = [
        (noise(ROOM_DB, 1.0), False),
        (tone(between, 0.1), False),  # not loud enough to open...
        (tone(ROOM_DB + config.open_db + 3, 0.1), True),
        (tone(between, 0.1), True),  # ...but quiet enough to stay open
        (tone(ROOM_DB + config.close_db - 3, 0.1), False),
        (tone(between, 0.1), False),
    ]
    voice = MouthFromVoice(SR, config)
    for signal, active in phases:
        assert run(signal, voice).active.tolist() == [active] * (len(signal) // BLOCK)


def test_mouth_opens_fast_and_closes_smoothly() -> None:
    voice = MouthFromVoice(SR)
    run(noise(ROOM_DB, 1.0), voice)
    after_one_loud_block = voice.process(tone(-20.0, 0.02))
    run(tone(-20.0, 0.3), voice)
    fully_open = voice.process(tone(-20.0, 0.02))
    after_one_quiet_block = voice.process(noise(ROOM_DB, 0.02))
    assert 0.2 < after_one_loud_block < 0.8, "one block does not slam the mouth open"
    assert fully_open > 0.99
    assert 0.5 < after_one_quiet_block < 0.95, "nor shut"
    assert 1.0 - after_one_quiet_block < after_one_loud_block, "closing is slower than opening"
    assert run(noise(ROOM_DB, 0.3), voice).mouth[-1] < 0.05


@pytest.fixture(scope="module")
def recorded_speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, int]:
    """A sentence spoken by espeak-ng, as float samples and their rate."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): no recorded speech")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    text = "Good morning everyone. Can you hear me? Let's start the meeting, shall we."
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True)
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return (samples / 32768.0).astype(np.float32), wav.getframerate()


def test_recorded_speech_moves_the_mouth_word_by_word(recorded_speech: tuple[np.ndarray, int]) -> None:
    speech, rate = recorded_speech
    pad = np.zeros(rate, dtype=np.float32)
    signal = np.concatenate([pad, speech, pad])
    signal += np.random.default_rng(0).standard_normal(len(signal)).astype(np.float32) * 1e-3
    trace = run(signal, MouthFromVoice(rate), block=rate // 50)
    spoken = trace.between(1.0, 1.0 + len(speech) / rate)
    assert trace.between(0.0, 1.0).mouth.max() == 0.0
    assert spoken.mouth.max() > 0.9
    assert 0.3 < spoken.active.mean() < 0.95, "speaking, with pauses"
    assert openings(spoken.mouth, high=0.7, low=0.5) >= 8, "it moves with the syllables, not once per phrase"
    assert trace.between(1.3 + len(speech) / rate, 2.0 + len(speech) / rate).mouth.max() < 0.05


# --- Microphone -------------------------------------------------------------------------------

CAPTURE_PCM = "vcam_test_mic"
ASOUNDRC = """
pcm.{name} {{
  type plug
  slave {{
    pcm {{ type file; slave.pcm {{ type null }}; file "/dev/null"; infile "{fifo}"; format "raw" }}
    format S16_LE
    rate {rate}
    channels 1
  }}
}}
"""


def to_pcm16(signal: np.ndarray) -> Iterator[bytes]:
    """The signal as 20 ms blocks of 16-bit little-endian samples."""
    samples = (np.clip(signal, -1.0, 1.0) * 32767).astype("<i2")
    for start in range(0, len(samples) - BLOCK + 1, BLOCK):
        yield samples[start : start + BLOCK].tobytes()


def feed_until(fifo: int, blocks: Iterator[bytes], done: Callable[[], bool], timeout: float) -> bool:
    """Write blocks into the capture FIFO (as fast as the stream takes them) until `done()`."""
    deadline = time.monotonic() + timeout
    while not done():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if select.select([], [fifo], [], remaining)[1]:
            try:
                os.write(fifo, next(blocks))
            except BlockingIOError:
                continue
    return True


def capture_in_this_process(fifo_path: str) -> None:
    """Body of the real-stream test, run in a fresh interpreter because PortAudio reads the ALSA
    configuration once per process. Prints what it saw as JSON."""
    # Open the FIFO before PortAudio probes the PCM: the file plugin's open would block without a writer.
    fifo = os.open(fifo_path, os.O_RDWR | os.O_NONBLOCK)
    speech = noise(ROOM_DB, 20.0) + np.resize(syllables(3), 20 * SR)
    silence = noise(ROOM_DB, 20.0, seed=1)
    with Microphone(device=CAPTURE_PCM) as mic:
        try:
            opened = feed_until(fifo, to_pcm16(speech), lambda: mic.mouth_open() > 0.6, timeout=10.0)
            closed = feed_until(fifo, to_pcm16(silence), lambda: mic.mouth_open() < 0.05, timeout=10.0)
            available = mic.available
        finally:
            # End of file: PortAudio's capture thread cannot be cancelled in a blocking read, and
            # would keep the stream from closing.
            os.close(fifo)
    print(json.dumps({
        "devices": list_input_devices(),
        "available": available,
        "opened": opened,
        "closed": closed,
    }))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the capture PCM is an ALSA plugin")
def test_microphone_moves_the_mouth_from_a_real_capture_stream(tmp_path: Path) -> None:
    fifo = tmp_path / "mic.fifo"
    os.mkfifo(fifo)
    (tmp_path / ".asoundrc").write_text(ASOUNDRC.format(name=CAPTURE_PCM, fifo=fifo, rate=SR))
    tests_dir = Path(__file__).parent
    env = {
        **os.environ,
        "HOME": str(tmp_path),  # ALSA loads ~/.asoundrc on top of the system configuration
        "PYTHONPATH": os.pathsep.join([str(tests_dir), str(tests_dir.parent)]),
    }
    code = f"import test_audio; test_audio.capture_in_this_process({str(fifo)!r})"
    child = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr
    seen = json.loads(child.stdout.splitlines()[-1])
    assert CAPTURE_PCM in seen["devices"]
    assert seen["available"]
    assert seen["opened"], "speech on the capture stream opened the mouth"
    assert seen["closed"], "silence on the capture stream closed it again"


def audio_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vcam.audio" and r.levelno == logging.WARNING]


def test_missing_device_leaves_the_mouth_closed_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vcam.audio"):
        with Microphone(device="no such microphone") as mic:
            assert not mic.available
            assert mic.mouth_open() == 0.0
            assert mic.level_db == SILENCE_DB
    [warning] = audio_warnings(caplog)
    assert "'no such microphone'" in warning
    assert "audio_device" in warning and "python -m sounddevice" in warning


def test_missing_portaudio_leaves_the_mouth_closed_with_one_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sounddevice looks PortAudio up with ctypes.util.find_library when it is imported
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    with caplog.at_level(logging.WARNING, logger="vcam.audio"):
        with Microphone() as mic:
            assert not mic.available
            assert mic.mouth_open() == 0.0
        assert list_input_devices() == []
    [warning] = audio_warnings(caplog)
    assert "PortAudio" in warning and "libportaudio2" in warning
