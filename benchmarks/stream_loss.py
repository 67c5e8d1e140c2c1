#!/usr/bin/env python3
"""Loss and jitter behaviour of the motion stream on loopback.

    python benchmarks/stream_loss.py --motion /tmp/carphone-motion.npz --seconds 20 --json benchmarks/results/stream-loss.json

A sender thread sends the clip's motion (looped) at exactly 30 fps through the test suite's
lossy relay (random loss and a uniform 0..jitter delay, both directions) to a receiver link; the
receiver's playout is sampled at 30 fps. Reports the loss the receiver counted, frames it could
not decode, the longest *freeze* (the play point past the newest received frame: motion held or
extrapolated), how many frames were bridged by interpolation, the jitter delay, and the bytes
per frame both ways. A driven sender thread keeps camera and model stalls out of the numbers;
tests/test_stream_e2e.py runs the same with a real ``vcam send`` process.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lossy_relay import LossyRelay  # noqa: E402

from vcam.stream import codec  # noqa: E402
from vcam.stream.packet import pairing_key  # noqa: E402
from vcam.stream.playout import Playout  # noqa: E402
from vcam.stream.transport import ReceivedFrame, ReceiverLink, SenderLink, StreamIdentity  # noqa: E402

FPS = 30.0


def run(vectors: np.ndarray, seconds: float, loss: float, jitter_s: float, level: int, seed: int) -> dict[str, object]:
    key = pairing_key("benchmark-pairing-code")
    playout, lock, got = Playout(), threading.Lock(), []

    def on_frame(frame: ReceivedFrame) -> None:
        with lock:
            got.append(frame)
            playout.add(frame.timestamp_s, frame.arrival_s, frame.vector)

    ticks: list[tuple[float, float, float]] = []
    stop = threading.Event()
    sent_bytes: list[int] = []
    with ReceiverLink(("127.0.0.1", 0), key, on_frame, lambda identity: None) as receiver:
        with LossyRelay(("127.0.0.1", receiver.port), loss=loss, jitter_s=jitter_s, seed=seed) as relay:
            sender = SenderLink(("127.0.0.1", relay.port), key, StreamIdentity(b"p" * 8, b"m" * 8, (vectors.shape[1] - 9) // 3), level=level)

            def send() -> None:
                start = time.monotonic()
                for i in range(int(seconds * FPS)):
                    due = start + i / FPS
                    time.sleep(max(0.0, due - time.monotonic()))
                    sent_bytes.append(sender.send_motion(vectors[i % len(vectors)], due))
                stop.set()

            with sender:
                assert sender.connect(timeout_s=10), "no handshake"
                thread = threading.Thread(target=send)
                thread.start()
                while not stop.is_set():
                    now = time.monotonic()
                    with lock:
                        sample = playout.sample(now)
                    if sample is not None:
                        ticks.append((now, sample.ahead_s, sample.delay_s))
                    time.sleep(max(0.0, now + 1 / FPS - time.monotonic()))
                thread.join()
            status = receiver.status()
            dropped, forwarded = relay.dropped, relay.forwarded
    arrivals = [f.arrival_s for f in got]
    steady = [t for t in ticks if min(arrivals) + 1.0 <= t[0] <= max(arrivals)]
    ahead = np.array([a for _, a, _ in steady])
    stamps = np.sort([f.timestamp_s for f in got])
    gaps = np.round(np.diff(stamps) * FPS).astype(int) - 1
    return {
        "seconds": seconds, "loss_injected": loss, "jitter_ms": 1000 * jitter_s, "level": level,
        "frames_sent": len(sent_bytes), "frames_received": len(got), "relay_dropped_both_ways": dropped,
        "relay_forwarded_both_ways": forwarded, "receiver_loss": status.loss, "undecodable": status.rejected,
        "longest_freeze_ms": 1000 * max(0.0, float(ahead.max())),
        "ticks_past_newest_frame": int((ahead > 0).sum()), "ticks": len(steady),
        "lost_runs": {str(n): int((gaps == n).sum()) for n in range(1, int(gaps.max()) + 1) if (gaps == n).any()},
        "jitter_delay_ms": [1000 * min(d for *_, d in steady), 1000 * max(d for *_, d in steady)],
        "bytes_per_frame_sent": float(np.mean([b for b in sent_bytes if b])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--motion", type=Path, required=True, help="the output of stream_motion.py")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--jitter-ms", type=float, default=100.0)
    parser.add_argument("--level", type=int, default=codec.DEFAULT_LEVEL)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    vectors = np.load(args.motion)["vectors"]
    result = run(vectors, args.seconds, args.loss, args.jitter_ms / 1000, args.level, args.seed)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
