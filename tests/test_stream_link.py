"""Sender and receiver links on loopback: pairing, decoding, and the receiver's defences against
strangers, replays and garbage (authenticated or not), which it logs and survives."""

from __future__ import annotations

import logging
import random
import secrets
import socket
import threading
import time

import numpy as np
import pytest
from lossy_relay import LossyRelay
from test_stream_codec import head

from vcam.stream import codec
from vcam.stream.motion_vector import motion_to_vector
from vcam.stream.packet import (
    HELLO_BODY, WELCOME_BODY, Kind, Packet, open_packet, pairing_key, seal, session_key,
)
from vcam.stream.transport import ReceivedFrame, ReceiverLink, SenderLink, StreamIdentity

CODE = "test-pair-code-0001"
IDENTITY = StreamIdentity(b"profile1", b"modelid1", 21)


class Collected:
    def __init__(self) -> None:
        self.frames: list[ReceivedFrame] = []
        self.event = threading.Event()
        self.want = 0

    def __call__(self, frame: ReceivedFrame) -> None:
        self.frames.append(frame)
        if len(self.frames) >= self.want:
            self.event.set()


@pytest.fixture(scope="module")
def key() -> bytes:
    return pairing_key(CODE)


@pytest.fixture
def receiver(key):
    got = Collected()
    with ReceiverLink(("127.0.0.1", 0), key, got, lambda identity: None) as link:
        yield link, got


def stream(link: SenderLink, count: int, got: Collected, timeout: float = 20.0) -> list[np.ndarray]:
    got.want = count
    sent = []
    for i in range(count):
        v = motion_to_vector(head(i))
        link.send_motion(v, time.monotonic())
        sent.append(codec.dequantise(codec.quantise(v, codec.Quantiser(), 4), codec.Quantiser()))
        time.sleep(1 / 60)
    assert got.event.wait(timeout), f"{len(got.frames)} of {count} frames arrived"
    return sent


def test_paired_sender_streams_decoded_motion(key, receiver):
    link, got = receiver
    with SenderLink(("127.0.0.1", link.port), key, IDENTITY, level=4) as sender:
        assert sender.connect(timeout_s=10)
        sent = stream(sender, 40, got)
        by_seq = sorted(got.frames, key=lambda f: f.seq)
        for original, frame in zip(sent, by_seq):
            np.testing.assert_array_equal(np.nan_to_num(frame.vector, nan=-9), np.nan_to_num(original, nan=-9))
        assert [f.timestamp_s for f in by_seq] == sorted(f.timestamp_s for f in by_seq)
        time.sleep(0.3)
        assert sender.status().state.value == "connected" and link.status().state.value == "connected"
        assert link.status().rejected == 0 and 0 < link.status().kbit_s < 50


def test_wrong_pairing_code_is_refused_and_logged(receiver, caplog):
    link, got = receiver
    with caplog.at_level(logging.WARNING, logger="vcam.stream"):
        with SenderLink(("127.0.0.1", link.port), pairing_key("another-code-9999"), IDENTITY) as stranger:
            assert not stranger.connect(timeout_s=1.2)
    assert not got.frames and link.status().state.value == "waiting"
    assert "rejected a packet" in caplog.text and "authentication" in caplog.text


def test_replayed_packets_are_refused_once_each(key, receiver, caplog):
    link, got = receiver
    with caplog.at_level(logging.WARNING, logger="vcam.stream"), LossyRelay(("127.0.0.1", link.port), duplicate=True) as relay:
        with SenderLink(("127.0.0.1", relay.port), key, IDENTITY) as sender:
            assert sender.connect(timeout_s=10)
            stream(sender, 20, got)
            time.sleep(0.3)
    seqs = [f.seq for f in got.frames]
    assert len(seqs) == len(set(seqs)) == 20
    assert link.status().rejected >= 19 and "replayed" in caplog.text


def test_a_sender_whose_avatar_is_unknown_is_refused(key, caplog):
    got = Collected()
    refuse = lambda identity: f"its avatar (id {identity.profile_id.hex()}) is not among your profiles"  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="vcam.stream"), ReceiverLink(("127.0.0.1", 0), key, got, refuse) as link:
        with SenderLink(("127.0.0.1", link.port), key, IDENTITY) as sender:
            assert not sender.connect(timeout_s=1.2)
    assert caplog.text.count("is not among your profiles") == 1  # once per session, not per HELLO


def handshake(sock: socket.socket, port: int, key: bytes) -> bytes:
    """Be a paired peer by hand: HELLO, read the WELCOME, derive the session key."""
    nonce = secrets.token_bytes(16)
    sock.settimeout(0.5)
    for _ in range(20):  # resent like a real sender's: a flood before it may have filled the socket buffer
        sock.sendto(seal(key, Packet(Kind.HELLO, 0, 0, HELLO_BODY.pack(nonce, b"p" * 8, b"m" * 8, 21))), ("127.0.0.1", port))
        try:
            welcome = open_packet(key, sock.recvfrom(2048)[0])
        except TimeoutError:
            continue
        return session_key(key, nonce, WELCOME_BODY.unpack(welcome.body)[1])
    raise AssertionError("the receiver never answered HELLO")


def test_receiver_survives_garbage_from_strangers_and_from_the_paired_peer(key, receiver, caplog):
    link, got = receiver
    rng = random.Random(3)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = ("127.0.0.1", link.port)
    with caplog.at_level(logging.WARNING, logger="vcam.stream"):
        for _ in range(300):  # strangers: random bytes, oversized, wrong version
            sock.sendto(rng.randbytes(rng.choice([0, 5, 21, 60, 1300, 5000])), target)
        session = handshake(sock, link.port, key)
        valid = codec.encode(codec.quantise(motion_to_vector(head(0)), codec.Quantiser(), 6))
        for seq in range(1, 800):  # the paired peer, authenticated but malformed bodies
            body = bytearray(valid if seq % 3 else rng.randbytes(rng.randrange(0, 120)))
            for _ in range(rng.randrange(0, 4)):
                if body:
                    body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
            kind = rng.choice([Kind.KEY, Kind.DELTA, Kind.ACK, Kind.WELCOME])
            sock.sendto(seal(session, Packet(kind, seq, seq, bytes(body))), target)
        time.sleep(1.0)
    assert link.status().rejected > 300
    assert "Traceback" not in caplog.text and "failed to handle" not in caplog.text
    for frame in got.frames:  # whatever got through is a sane motion
        codec.check_motion(frame.vector)
    got.frames.clear()
    with SenderLink(target, key, IDENTITY) as sender:  # and the receiver still works
        assert sender.connect(timeout_s=10)
        stream(sender, 10, got)
