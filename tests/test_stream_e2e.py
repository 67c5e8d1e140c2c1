"""`vcam send` and `vcam receive` as two real processes on loopback (demo model, a test clip):
the received avatar matches a local render of the same clip, and a lossy, jittery network
(5 % loss, 0–100 ms delay) neither freezes the receiver's motion nor makes it lag behind.
(Clock drift between two machines is covered by test_stream_codec's playout tests.)"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from clips import placed, write_clip
from lossy_relay import LossyRelay
from test_pipeline import read_frames

from vcam.cli import main
from vcam.stream.packet import pairing_key
from vcam.stream.playout import Playout
from vcam.stream.transport import ReceivedFrame, ReceiverLink

REPO = Path(__file__).resolve().parents[1]
CODE = "loop-back-test-code"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A user with the default profile, the demo model, no microphone; smoothing off, so the
    motion does not depend on when each process happened to read a frame."""
    for key in list(os.environ):
        if key.startswith("VCAM_"):
            monkeypatch.delenv(key)
    env = {
        "VCAM_SETTINGS_FILE": tmp_path / "config" / "settings.toml", "VCAM_DATA_DIR": tmp_path / "data",
        "VCAM_PROFILES_DIR": tmp_path / "profiles", "VCAM_AUDIO": "false", "VCAM_SMOOTHING_MIN_CUTOFF": "100000",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    shutil.copytree(REPO / "profiles" / "default", tmp_path / "profiles" / "default")
    return tmp_path


def vcam(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    command = [sys.executable, "-c", "import sys; from vcam.cli import main; sys.exit(main(sys.argv[1:]))", *args]
    return subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)


def listening_port(process: subprocess.Popen) -> int:
    assert process.stderr is not None
    for line in process.stderr:
        found = re.search(r"listening on UDP [\d.]+:(\d+)", line)
        if found:
            threading.Thread(target=process.stderr.read, daemon=True).start()  # keep draining
            return int(found.group(1))
    raise AssertionError(f"the receiver never listened (exit {process.wait()})")


def moving_clip(path: Path, count: int) -> Path:
    return write_clip(path, [placed(dx=40 * math.sin(i / 8), dy=10 * math.sin(i / 5), angle=6 * math.sin(i / 6)) for i in range(count)])


def test_two_processes_match_a_local_render(home):
    frames = 24
    clip = moving_clip(home / "talk.mp4", frames)
    size = ["--width", "320", "--height", "180"]
    receiver = vcam("receive", "--listen", "127.0.0.1:0", "--code", CODE, "--sink", f"file:{home / 'received.y4m'}", "--frames", str(frames), *size)
    port = listening_port(receiver)
    sender = vcam("send", f"127.0.0.1:{port}", "--code", CODE, "--source", str(clip), "--frames", str(frames))
    _, sender_err = sender.communicate(timeout=300)
    assert sender.returncode == 0, sender_err
    assert receiver.wait(timeout=300) == 0
    assert main(["run", "--source", str(clip), "--sink", f"file:{home / 'local.y4m'}", "--frames", str(frames), *size]) == 0

    received = [f.astype(np.float64) for f in read_frames(home / "received.y4m")]
    local = [f.astype(np.float64) for f in read_frames(home / "local.y4m")]
    assert len(received) == len(local) == frames
    same = [np.abs(r - l).mean() for r, l in zip(received, local)]
    neighbour = [np.abs(received[i] - local[i + 1]).mean() for i in range(frames - 1)]
    assert max(same) < 0.3, same  # quantisation only: well under one level of 255
    assert min(neighbour) > 3 * max(same)  # and each frame is its own frame, not a neighbour


def test_lossy_network_neither_freezes_nor_drifts(home):
    """Sender process → relay (5 % loss and 0–100 ms delay, both ways) → receiver link and playout
    ticking at 30 fps. A freeze is the play point running past the newest received frame."""
    clip = moving_clip(home / "talk.mp4", 240)
    got: list[ReceivedFrame] = []
    playout = Playout()
    lock = threading.Lock()

    def on_frame(frame: ReceivedFrame) -> None:
        with lock:
            got.append(frame)
            playout.add(frame.timestamp_s, frame.arrival_s, frame.vector)

    ticks: list[tuple[float, float, float]] = []
    with ReceiverLink(("127.0.0.1", 0), pairing_key(CODE), on_frame, lambda identity: None) as link:
        with LossyRelay(("127.0.0.1", link.port), loss=0.05, jitter_s=0.1, seed=14) as relay:
            sender = vcam("send", f"127.0.0.1:{relay.port}", "--code", CODE, "--source", str(clip), "--frames", "240")
            while sender.poll() is None:
                now = time.monotonic()
                with lock:
                    sample = playout.sample(now)
                if sample is not None:
                    ticks.append((now, sample.ahead_s, sample.delay_s))
                time.sleep(max(0.0, now + 1 / 30 - time.monotonic()))
            assert sender.returncode == 0, sender.stderr.read() if sender.stderr else ""
            status = link.status()
    sent_at = sorted(f.timestamp_s for f in got)
    sender_gap = max(np.diff(sent_at))  # the sender's own longest pause between captured frames
    arrivals = [f.arrival_s for f in got]
    steady = [tick for tick in ticks if min(arrivals) + 1.0 <= tick[0] <= max(arrivals)]  # one second in, to the last frame
    freeze = max(ahead for _, ahead, _ in steady)
    delays = [delay for _, _, delay in steady]
    print(f"\n{len(got)} frames, {relay.dropped} dropped by the relay, receiver counted {100 * status.loss:.1f} % loss, "
          f"{status.rejected} rejected; longest freeze {1000 * max(freeze, 0):.0f} ms; jitter delay "
          f"{1000 * min(delays):.0f}..{1000 * max(delays):.0f} ms; sender's longest pause {1000 * sender_gap:.0f} ms")
    assert 0.01 < status.loss < 0.12 and status.rejected == 0  # every frame that arrived was decodable
    assert freeze <= 0.150 + max(0.0, sender_gap - 0.1), "a network gap froze the motion"
    assert max(delays) <= 0.4 and all(-ahead <= delay + 0.1 for _, ahead, delay in steady[-30:])  # no lag builds up


def test_command_line_mistakes_are_one_line(home, capsys):
    assert main(["send", "127.0.0.1"]) == 2
    assert "--code" in capsys.readouterr().err
    assert main(["send", "127.0.0.1:99999", "--code", CODE]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
    assert main(["send", "127.0.0.1", "--code", "short"]) == 2
    err = capsys.readouterr().err.strip()
    assert "at least 12" in err and "\n" not in err


def test_receiver_accepts_only_a_sender_with_its_avatar_and_model(home):
    from vcam.app import open_model, open_renderer, profile_store
    from vcam.settings import load_settings
    from vcam.stream.ends import Receiver, model_id, profile_id
    from vcam.stream.transport import StreamIdentity

    settings = load_settings(sink="file:x.y4m")
    loaded = open_model(settings)
    renderer, _ = open_renderer(settings, loaded)
    receiver = Receiver(settings, loaded, lambda: renderer, lossless=False)
    default = profile_store(settings).load("default")
    ours = StreamIdentity(profile_id(default), model_id(loaded), loaded.model.cfg.num_kp)
    assert "not among your profiles" in receiver.accept(StreamIdentity(b"x" * 8, ours.model_id, ours.num_kp))
    assert "other model weights" in receiver.accept(StreamIdentity(ours.profile_id, b"y" * 8, ours.num_kp))
    assert receiver.avatar is None  # nothing was loaded for a refused sender
    assert receiver.accept(ours) is None and receiver.avatar is not None and receiver.avatar.profile.name == "default"
