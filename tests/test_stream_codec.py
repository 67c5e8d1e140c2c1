"""The motion codec, packet framing and receiver playout: exact round trips, bounded errors,
and a decoder that refuses garbage with DecodeError/PacketError and nothing else."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from vcam.errors import VcamError
from vcam.models import HeadMotion, LIVEPORTRAIT, geometry
from vcam.stream import codec
from vcam.stream.bits import BitReader, BitWriter, DecodeError, read_rice, write_rice
from vcam.stream.motion_vector import motion_to_vector, vector_to_motion
from vcam.stream.packet import (
    MAX_DATAGRAM, Kind, Packet, PacketError, ReplayWindow, new_pairing_code, open_packet, pairing_key, seal,
)
from vcam.stream.playout import Playout

K = LIVEPORTRAIT.num_kp
QUANTISER = codec.Quantiser()


def head(step: int, mouth: float | None = 0.3) -> HeadMotion:
    """A smoothly moving head: frame ``step`` of a slow nod and a changing expression."""
    angles = [torch.tensor([a]) for a in (10 * math.sin(step / 9), 25 * math.sin(step / 13), 5 * math.cos(step / 7))]
    R = geometry.euler_to_rotation(*angles, LIVEPORTRAIT.convention)
    g = torch.Generator().manual_seed(1)
    base = torch.randn(1, K, 3, generator=g) * 0.03
    exp = base + 0.01 * math.sin(step / 5) * torch.randn(1, K, 3, generator=g)
    return HeadMotion(R=R, t=torch.tensor([[0.02 * math.sin(step / 11), -0.01, 0.0]]), exp=exp,
                      scale=torch.tensor([[1.6 + 0.05 * math.sin(step / 17)]]), mouth_open=mouth)


def test_rice_round_trip_including_escapes():
    values = np.array([0, -1, 1, 5, -300, 2**31 - 1, -(2**31), 7])
    for k in (0, 3, 15):
        writer = BitWriter()
        write_rice(writer, values, k)
        assert (read_rice(BitReader(writer.getvalue()), len(values), k) == values).all()


def test_key_and_delta_frames_decode_exactly_and_deltas_are_small():
    q = [codec.quantise(motion_to_vector(head(i)), QUANTISER, 6) for i in range(30)]
    key = codec.encode(q[0])
    assert (codec.decode(key).values == q[0].values).all()
    sizes = []
    for i in range(1, 30):
        body = codec.encode(q[i], q[i - 1], 1)
        decoded = codec.decode(body, q[i - 1])
        assert (decoded.values == q[i].values).all() and decoded.flags == q[i].flags
        sizes.append(len(body))
    assert max(sizes) < 0.6 * len(key)  # predicting from the previous frame is what makes it small


def test_quantisation_error_is_bounded_per_group():
    motion = head(4)
    v = motion_to_vector(motion)
    for level in (0, 6, 10):
        back = vector_to_motion(codec.dequantise(codec.quantise(v, QUANTISER, level), QUANTISER))
        step = math.sqrt(2) ** level
        assert (back.R - motion.R).abs().max() < 4 * QUANTISER.rotation * step
        assert (back.exp - motion.exp).abs().max() <= QUANTISER.expression * step / 2 + 1e-7
        assert (back.t - motion.t).abs().max() <= QUANTISER.translation * step / 2 + 1e-7
        assert abs(float(back.scale / motion.scale) - 1) < QUANTISER.scale * step
        assert abs(back.mouth_open - 0.3) <= QUANTISER.ratio * step / 2 and back.eye_open is None


def test_delta_needs_matching_reference():
    a = codec.quantise(motion_to_vector(head(0)), QUANTISER, 6)
    b = codec.quantise(motion_to_vector(head(1)), QUANTISER, 6)
    other_level = codec.quantise(motion_to_vector(head(0)), QUANTISER, 4)
    with pytest.raises(DecodeError):
        codec.decode(codec.encode(b, a, 1), other_level)


def test_decoder_fuzz_only_raises_decode_error():
    """Random bytes, bit flips, truncations and extensions of valid bodies: DecodeError or a frame."""
    rng = random.Random(14)
    q = [codec.quantise(motion_to_vector(head(i, mouth=None if i % 2 else 0.5)), QUANTISER, 6) for i in range(4)]
    valid = [codec.encode(q[0]), codec.encode(q[2], q[1], 1)]
    for trial in range(3000):
        body = bytearray(rng.choice(valid))
        mode = trial % 4
        if mode == 0:
            body = bytearray(rng.randbytes(rng.randrange(0, 200)))
        elif mode == 1:
            for _ in range(rng.randrange(1, 4)):
                body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
        elif mode == 2:
            body = body[: rng.randrange(len(body))]
        else:
            body += rng.randbytes(rng.randrange(1, 10))
        reference = rng.choice([None, q[1]])
        try:
            decoded = codec.decode(bytes(body), reference)
            codec.check_motion(codec.dequantise(decoded, QUANTISER))
        except DecodeError:
            continue


def test_check_motion_refuses_impossible_values():
    v = motion_to_vector(head(0))
    for index, value in ((0, 2.0), (6, 80.0), (10, math.inf), (-1, 9.0)):
        bad = v.copy()
        bad[index] = value
        with pytest.raises(DecodeError):
            codec.check_motion(bad)


# -- packets -----------------------------------------------------------------------------------------


def test_packets_verify_and_refuse_tampering_wrong_keys_and_bad_framing():
    key, other = pairing_key("abcd-efgh-jkmn-pqrs"), pairing_key("abcd-efgh-jkmn-pqrt")
    datagram = seal(key, Packet(Kind.DELTA, 7, 1234, b"body"))
    assert open_packet(key, datagram) == Packet(Kind.DELTA, 7, 1234, b"body")
    with pytest.raises(PacketError, match="authentication"):
        open_packet(other, datagram)
    flipped = bytearray(datagram)
    flipped[11] ^= 1
    with pytest.raises(PacketError, match="authentication"):
        open_packet(key, bytes(flipped))
    with pytest.raises(PacketError, match="version"):
        open_packet(key, b"\x02" + datagram[1:])
    with pytest.raises(PacketError, match="type"):
        open_packet(key, datagram[:1] + b"\x09" + datagram[2:])
    with pytest.raises(PacketError, match="short"):
        open_packet(key, datagram[:12])
    with pytest.raises(PacketError, match="oversized"):
        open_packet(key, seal(key, Packet(Kind.DELTA, 8, 0, bytes(MAX_DATAGRAM))))


def test_pairing_codes():
    code = new_pairing_code()
    assert len(code) == 19 and code.count("-") == 3
    assert pairing_key(code) == pairing_key(code.upper().replace("-", " "))
    with pytest.raises(VcamError, match="at least 12"):
        pairing_key("1234")


def test_replay_window_accepts_each_number_once():
    window = ReplayWindow(size=8)
    assert [window.accept(s) for s in (5, 3, 5, 3, 9, 4, 1, 10)] == [True, True, False, False, True, True, False, True]


# -- playout -----------------------------------------------------------------------------------------


def test_playout_interpolates_over_a_lost_frame_and_eases_into_a_hold():
    playout = Playout(min_delay_s=0.05)
    offset = 1000.0  # the sender's clock is far from ours: only differences matter
    for i in (0, 1, 2, 4, 5):  # frame 3 is lost
        playout.add(i / 30, offset + i / 30 + 0.01, np.array([float(i), 0.0]))
    # the play point 0.05 s behind the newest arrival (transit 0.01 s, minimal delay)
    middle = playout.sample(offset + 0.01 + 3 / 30 + 0.05)
    assert middle is not None and middle.vector[0] == pytest.approx(3.0, abs=1e-6) and middle.ahead_s < 0
    far = [playout.sample(offset + 0.06 + 5 / 30 + dt).vector[0] for dt in (0.05, 0.2, 1.0, 5.0)]
    assert far[0] > 5.0 and far == sorted(far) and far[-1] - far[-2] < 1e-3 and far[-1] < 5 + 30 * 0.08 + 1e-6


def test_playout_delay_follows_the_jitter():
    rng = np.random.default_rng(0)
    playout = Playout()
    for i in range(300):
        playout.add(i / 30, i / 30 + rng.uniform(0, 0.1), np.zeros(2))
    delays = [playout.sample(i / 30 + 10 + 0.1).delay_s for i in range(60)]
    assert 0.11 < delays[-1] < 0.15  # the 97th percentile of 0–100 ms plus a frame of margin


@pytest.mark.parametrize("rate", [0.995, 1.005])
def test_playout_does_not_drift_when_the_sender_clock_runs_at_another_rate(rate):
    """A minute of frames from a sender whose clock runs 0.5 % slow or fast, with 0–100 ms
    jitter: the play point stays its jitter delay behind the newest frame throughout."""
    rng = np.random.default_rng(1)
    playout = Playout()
    lags = []
    for i in range(1800):
        t = i / 30  # true time of capture
        playout.add(rate * t, t + 0.02 + rng.uniform(0, 0.1), np.array([t]))
        if i > 150:
            sample = playout.sample(t + 0.02)
            lags.append(t - sample.vector[0])  # how far behind real time the rendered motion is
    assert max(lags) - min(lags) < 0.06 and max(lags) < 0.25
