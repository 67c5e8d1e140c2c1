"""Packets on the wire: framing, authentication (HMAC), pairing keys and replay protection.

Every datagram is::

    offset  size  field
    0       1     version (1)
    1       1     type: 1 HELLO, 2 WELCOME, 3 KEY, 4 DELTA, 5 ACK, 6 BYE
    2       4     sequence number, big-endian (per sender of the packet, from 0)
    6       4     timestamp, ms of the sender's clock since its stream began
    10      n     body (by type, below)
    10+n    10    tag: HMAC-SHA256 of bytes 0..10+n, first 10 bytes (80 bits, as SRTP's default)

Bodies::

    HELLO    16 sender nonce · 8 avatar profile id · 8 model id · u8 K       (tag: pairing key)
    WELCOME  16 sender nonce · 16 receiver nonce                              (tag: pairing key)
    KEY      motion body of a key frame (:mod:`vcam.stream.codec`)           (tag: session key)
    DELTA    motion body of a delta frame                                    (tag: session key)
    ACK      u32 newest decoded sequence number · u32 packets received       (tag: session key)
    BYE      empty                                                           (tag: session key)

The *pairing key* is derived from the pairing code both people typed (PBKDF2-HMAC-SHA256). A
session starts with HELLO/WELCOME; its *session key* is HMAC(pairing key, both nonces), so a
recorded session cannot be replayed into a later one: the receiver's nonce is new each time.
Within a session a receiver accepts each sequence number once, inside a 64-packet window behind
the newest (:class:`ReplayWindow`). Datagrams longer than :data:`MAX_DATAGRAM` are refused unread.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from enum import IntEnum

from vcam.errors import VcamError

VERSION = 1
HEADER = struct.Struct(">BBII")
TAG_SIZE = 10
NONCE_SIZE = 16
ID_SIZE = 8
MAX_DATAGRAM = 1200  # fits any path MTU; a motion packet is well under 200 bytes
PAIRING_SALT = b"vcam-stream-pairing-v1"
PAIRING_ROUNDS = 200_000
CODE_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l: read aloud or typed without mix-ups
MIN_CODE_CHARS = 12


class Kind(IntEnum):
    HELLO = 1
    WELCOME = 2
    KEY = 3
    DELTA = 4
    ACK = 5
    BYE = 6


SESSION_KINDS = frozenset({Kind.KEY, Kind.DELTA, Kind.ACK, Kind.BYE})
HELLO_BODY = struct.Struct(f">{NONCE_SIZE}s{ID_SIZE}s{ID_SIZE}sB")
WELCOME_BODY = struct.Struct(f">{NONCE_SIZE}s{NONCE_SIZE}s")
ACK_BODY = struct.Struct(">II")


class PacketError(ValueError):
    """A datagram that is not a valid packet from the paired peer; the message says why."""


@dataclass(frozen=True)
class Packet:
    kind: Kind
    seq: int
    timestamp_ms: int
    body: bytes


def new_pairing_code() -> str:
    """A random code of 16 letters and digits (80 bits), grouped by four for reading aloud."""
    chars = "".join(secrets.choice(CODE_ALPHABET) for _ in range(16))
    return "-".join(chars[i : i + 4] for i in range(0, 16, 4))


def pairing_key(code: str) -> bytes:
    """The key both ends derive from the pairing code (case, spaces and dashes do not matter)."""
    normal = "".join(c for c in code.lower() if c.isalnum())
    if len(normal) < MIN_CODE_CHARS:
        raise VcamError(f"the pairing code must have at least {MIN_CODE_CHARS} letters or digits; "
                        "start `vcam receive` without one to get a new code")
    return hashlib.pbkdf2_hmac("sha256", normal.encode(), PAIRING_SALT, PAIRING_ROUNDS)


def session_key(pairing: bytes, sender_nonce: bytes, receiver_nonce: bytes) -> bytes:
    return hmac.new(pairing, b"session" + sender_nonce + receiver_nonce, hashlib.sha256).digest()


def short_id(data: bytes) -> bytes:
    """An 8-byte identifier of a profile or model (the start of its SHA-256)."""
    return hashlib.sha256(data).digest()[:ID_SIZE]


def _tag(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()[:TAG_SIZE]


def seal(key: bytes, packet: Packet) -> bytes:
    data = HEADER.pack(VERSION, packet.kind, packet.seq & 0xFFFFFFFF, packet.timestamp_ms & 0xFFFFFFFF) + packet.body
    return data + _tag(key, data)


def peek_kind(datagram: bytes) -> Kind:
    """The packet type, after the checks that need no key (size, version, type)."""
    if len(datagram) > MAX_DATAGRAM:
        raise PacketError(f"oversized datagram ({len(datagram)} bytes)")
    if len(datagram) < HEADER.size + TAG_SIZE:
        raise PacketError(f"datagram too short ({len(datagram)} bytes)")
    if datagram[0] != VERSION:
        raise PacketError(f"unsupported version {datagram[0]} (this vcam speaks {VERSION}); update both ends")
    try:
        return Kind(datagram[1])
    except ValueError:
        raise PacketError(f"unknown packet type {datagram[1]}") from None


def open_packet(key: bytes, datagram: bytes) -> Packet:
    """The packet, if ``datagram`` is well formed and its tag verifies under ``key``."""
    kind = peek_kind(datagram)
    data, tag = datagram[:-TAG_SIZE], datagram[-TAG_SIZE:]
    if not hmac.compare_digest(_tag(key, data), tag):
        raise PacketError("bad authentication tag (not the paired peer, or a damaged packet)")
    _, _, seq, timestamp = HEADER.unpack_from(data)
    return Packet(kind, seq, timestamp, data[HEADER.size :])


class ReplayWindow:
    """Accepts each sequence number once, and none more than ``size`` behind the newest."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.newest = -1
        self._seen = 0  # bit i: newest - i was accepted

    def accept(self, seq: int) -> bool:
        if seq > self.newest:
            shift = seq - self.newest
            self._seen = ((self._seen << shift) | 1) & ((1 << self.size) - 1) if shift < self.size else 1
            self.newest = seq
            return True
        back = self.newest - seq
        if back >= self.size or self._seen >> back & 1:
            return False
        self._seen |= 1 << back
        return True
