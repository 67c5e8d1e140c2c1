"""The two ends of a motion stream over UDP: :class:`SenderLink` and :class:`ReceiverLink`.

Why plain UDP and not WebRTC (aiortc) data channels: a motion packet is 30–100 bytes, 30 times a
second, and a late one is worthless, so what is needed is exactly an unreliable, unordered
datagram. WebRTC would carry it through ICE, DTLS and SCTP, adding an SDP offer/answer exchange
that needs its own signalling channel, STUN/TURN servers for NAT traversal, and about ten
dependencies (aiortc, av, cryptography, pyopenssl, aioice, pylibsrtp, …), none of which the
codec needs: authentication, replay protection and loss recovery are done here (packet.py,
acknowledged references, key frames). What UDP does *not* give is NAT traversal: the receiver
must be reachable at its address — same LAN, a VPN (WireGuard, Tailscale, ZeroTier), or a
forwarded UDP port. Calls across two home routers without a VPN would need ICE, which is the
case WebRTC would cover. Motion is not encrypted (it carries pose and expression numbers, not
pictures); it is authenticated, so nobody else can drive the avatar.

Loss handling: each delta frame is predicted from a frame the receiver has *acknowledged*
(ACK every few decoded frames), so a lost packet never breaks the frames after it; the sender
falls back to a self-contained key frame when no acknowledged reference is recent enough, and
sends one at least every ``key_interval_s`` so a receiver can always join or recover.
"""

from __future__ import annotations

import logging
import re
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from vcam.errors import VcamError

from . import codec
from .bits import DecodeError
from .packet import (
    ACK_BODY, HELLO_BODY, MAX_DATAGRAM, SESSION_KINDS, WELCOME_BODY, Kind, Packet, PacketError, ReplayWindow,
    open_packet, peek_kind, seal, session_key,
)

log = logging.getLogger("vcam.stream")

DEFAULT_PORT = 47470
HISTORY = 256  # frames each end keeps as possible prediction references
ACK_EVERY = 3


def parse_address(text: str, default_host: str = "") -> tuple[str, int]:
    """``HOST:PORT``, ``HOST`` or ``:PORT`` → (host, port); IPv6 as ``[::1]:PORT``; port 0: any free one."""
    host, port = text, str(DEFAULT_PORT)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else port
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise VcamError(f"bad address {text!r}: write HOST:PORT, e.g. 192.168.1.20:{DEFAULT_PORT}")
    return host or default_host, int(port)


def _socket_for(host: str, port: int, bind: bool) -> tuple[socket.socket, tuple]:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE if bind else 0)[0]
        sock = socket.socket(family, kind, proto)
        if bind:
            sock.bind(address)
    except OSError as exc:
        raise VcamError(f"cannot {'listen on' if bind else 'reach'} {host or '*'}:{port} ({exc.strerror or exc}): check the address and that the port is free") from None
    sock.settimeout(0.2)
    return sock, address


class RateMeter:
    """Bytes per second over the last ``window_s``."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self._events: list[tuple[float, int]] = []

    def add(self, now: float, size: int) -> None:
        self._events.append((now, size))

    def kbit_s(self, now: float) -> float:
        self._events = [(t, n) for t, n in self._events if t > now - self.window_s]
        return 8 * sum(n for _, n in self._events) / self.window_s / 1000


class RejectLog:
    """One log line per reason and second, with the count: hostile traffic cannot flood the log."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last: dict[str, tuple[float, int]] = {}
        self.total = 0

    def __call__(self, reason: str, peer: object) -> None:
        self.total += 1
        now = self._clock()
        kind = re.sub(r"\d+", "#", reason)  # "replayed packet 12" and "… 13" are one reason
        since, count = self._last.get(kind, (-1e9, 0))
        if now - since >= 1.0:
            extra = f" (and {count} more like it in the last second)" if count else ""
            log.warning("rejected a packet from %s: %s%s", peer, reason, extra)
            self._last[kind] = (now, 0)
        else:
            self._last[kind] = (since, count + 1)


def serve_datagrams(
    sock: socket.socket, stop: threading.Event, handle: Callable[[bytes, tuple], None], rejects: RejectLog
) -> None:
    """Hand each datagram that arrives on ``sock`` to ``handle`` until ``stop``; one it refuses
    (PacketError/DecodeError) or fails on is logged through ``rejects`` and never ends the loop."""
    while not stop.is_set():
        try:
            datagram, peer = sock.recvfrom(MAX_DATAGRAM + 1)
        except (TimeoutError, socket.timeout):
            continue
        except OSError:  # e.g. ICMP port unreachable while the peer is not up yet
            stop.wait(0.05)
            continue
        try:
            handle(datagram, peer)
        except (PacketError, DecodeError) as exc:
            rejects(str(exc), peer)
        except Exception:  # never let one datagram stop the link
            log.exception("failed to handle a packet from %s", peer)
            rejects.total += 1


class LinkState(str, Enum):
    WAITING = "waiting"  # sender: no answer from the receiver yet; receiver: nobody paired has called
    CONNECTED = "connected"
    SILENT = "silent"  # connected before, nothing heard for a while


@dataclass(frozen=True)
class LinkStatus:
    state: LinkState
    peer: str
    kbit_s: float
    loss: float  # share of packets lost, 0..1 (as the receiver counts them)
    packets: int
    rejected: int


@dataclass(frozen=True)
class StreamIdentity:
    """What both ends must agree on before motion makes sense: avatar profile, model, K."""

    profile_id: bytes
    model_id: bytes
    num_kp: int


# -- sender --------------------------------------------------------------------------------------


class SenderLink:
    """Sends motion frames to one receiver; handshakes, listens for acknowledgements."""

    def __init__(
        self, address: tuple[str, int], pairing: bytes, identity: StreamIdentity,
        quantiser: codec.Quantiser = codec.Quantiser(), level: int = codec.DEFAULT_LEVEL,
        key_interval_s: float = 2.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address_text = f"{address[0]}:{address[1]}"
        self._sock, self._address = _socket_for(*address, bind=False)
        self._pairing, self._identity = pairing, identity
        self._quantiser, self._level, self._key_interval_s = quantiser, level, key_interval_s
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self._nonce = secrets.token_bytes(16)
        self._key: bytes | None = None
        self._seq = 0
        self._history: OrderedDict[int, tuple[codec.QuantisedMotion, int]] = OrderedDict()  # seq → (frame, frames sent)
        self._acked: int | None = None
        self._loss = 0.0
        self._acks = ReplayWindow()
        self._last_key_at = -1e9
        self._last_hello_at = -1e9
        self._heard_at: float | None = None
        self._sent_frames = 0
        self._rate = RateMeter()
        self._rejects = RejectLog(clock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="vcam-send-listen", daemon=True)

    def __enter__(self) -> "SenderLink":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            if self._key is not None:
                self._send(Kind.BYE, b"", self._key)
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    def _timestamp_ms(self, at: float) -> int:
        return int(round((at - self._start) * 1000))

    def _send(self, kind: Kind, body: bytes, key: bytes, at: float | None = None) -> int:
        datagram = seal(key, Packet(kind, self._seq, self._timestamp_ms(self._clock() if at is None else at), body))
        self._seq += 1
        try:
            self._sock.sendto(datagram, self._address)
        except OSError as exc:  # unreachable for now (ICMP refused, network down): keep trying
            log.debug("send failed: %s", exc)
        self._rate.add(self._clock(), len(datagram))
        return len(datagram)

    def connect(self, timeout_s: float | None = None, stop: threading.Event | None = None) -> bool:
        """Say HELLO every half second until the receiver answers; False on timeout or ``stop``."""
        deadline = None if timeout_s is None else self._clock() + timeout_s
        while deadline is None or self._clock() < deadline:
            with self._lock:
                if self._key is not None:
                    return True
                self._hello()
            if (stop or self._stop).wait(0.5):
                return False
        return False

    def change_identity(self, identity: StreamIdentity) -> None:
        """Drive another avatar (or model) from now on: a new session, so the receiver checks and
        loads it before the next motion frame."""
        with self._lock:
            if identity == self._identity:
                return
            self._identity, self._key, self._nonce = identity, None, secrets.token_bytes(16)
            self._last_hello_at = -1e9

    def _hello(self) -> None:
        self._last_hello_at = self._clock()
        ident = self._identity
        self._send(Kind.HELLO, HELLO_BODY.pack(self._nonce, ident.profile_id, ident.model_id, ident.num_kp), self._pairing)

    def send_motion(self, vector: np.ndarray, captured_at: float) -> int:
        """Send one frame's motion (a :func:`~vcam.stream.motion_vector.motion_to_vector`); the bytes sent, 0 while pairing."""
        now = self._clock()
        with self._lock:
            if self._key is None or (self._heard_at is not None and now - self._heard_at > 3.0):
                self._key = None
                if now - self._last_hello_at > 0.5:
                    self._hello()
                return 0
            q = codec.quantise(vector, self._quantiser, self._level)
            seq = self._seq
            ref = self._acked if self._acked is not None and 0 < seq - self._acked <= 255 else None
            if ref is None or ref not in self._history or now - self._last_key_at >= self._key_interval_s:
                kind, body = Kind.KEY, codec.encode(q)
                self._last_key_at = now
            else:
                kind, body = Kind.DELTA, codec.encode(q, self._history[ref][0], seq - ref)
            self._sent_frames += 1
            self._history[seq] = (q, self._sent_frames)
            while len(self._history) > HISTORY:
                self._history.popitem(last=False)
            return self._send(kind, body, self._key, at=captured_at)

    def _listen(self) -> None:
        serve_datagrams(self._sock, self._stop, lambda datagram, peer: self._handle(datagram), self._rejects)

    def _handle(self, datagram: bytes) -> None:
        kind = peek_kind(datagram)
        with self._lock:
            if kind == Kind.WELCOME:
                packet = open_packet(self._pairing, datagram)
                if len(packet.body) != WELCOME_BODY.size:
                    raise PacketError("malformed WELCOME")
                nonce, theirs = WELCOME_BODY.unpack(packet.body)
                if nonce != self._nonce:
                    raise PacketError("WELCOME for another session")
                if self._key is None:
                    self._key = session_key(self._pairing, self._nonce, theirs)
                    self._heard_at, self._acked, self._acks = self._clock(), None, ReplayWindow()
                    self._sent_frames, self._loss = 0, 0.0
                    self._last_key_at = -1e9
                    log.info("connected to %s", self.address_text)
                return
            if kind != Kind.ACK or self._key is None:
                raise PacketError(f"unexpected {kind.name} packet")
            packet = open_packet(self._key, datagram)
            if len(packet.body) != ACK_BODY.size:
                raise PacketError("malformed ACK")
            if not self._acks.accept(packet.seq):
                raise PacketError(f"replayed ACK {packet.seq}")
            acked, received = ACK_BODY.unpack(packet.body)
            if acked in self._history and (self._acked is None or acked > self._acked):
                self._acked = acked
                self._loss = max(0.0, 1.0 - received / self._history[acked][1])
            self._heard_at = self._clock()

    def status(self) -> LinkStatus:
        now = self._clock()
        with self._lock:
            if self._key is None:
                state = LinkState.WAITING
            elif self._heard_at is not None and now - self._heard_at > 1.0:
                state = LinkState.SILENT
            else:
                state = LinkState.CONNECTED
            return LinkStatus(state, self.address_text, self._rate.kbit_s(now), self._loss, self._sent_frames, self._rejects.total)


# -- receiver ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedFrame:
    seq: int
    timestamp_s: float  # the sender's clock
    arrival_s: float  # the receiver's clock
    vector: np.ndarray
    session: int  # counts the sender's sessions: a new one has a new clock


class ReceiverLink:
    """Accepts one paired sender at a time and hands its decoded frames to ``on_frame``.

    ``accept_identity`` decides whether a sender's avatar/model may drive this receiver; it is
    asked on each new session and returns an error text to refuse (logged once per session).
    """

    def __init__(
        self, address: tuple[str, int], pairing: bytes, on_frame: Callable[[ReceivedFrame], None],
        accept_identity: Callable[[StreamIdentity], str | None], quantiser: codec.Quantiser = codec.Quantiser(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sock, bound = _socket_for(*address, bind=True)
        self.address_text = f"{bound[0]}:{self._sock.getsockname()[1]}"
        self.port = self._sock.getsockname()[1]
        self._pairing, self._on_frame, self._accept = pairing, on_frame, accept_identity
        self._quantiser, self._clock = quantiser, clock
        self._lock = threading.Lock()
        self._pending: OrderedDict[bytes, tuple[bytes, bytes]] = OrderedDict()  # sender nonce → (our nonce, key)
        self._refused: set[bytes] = set()
        self._key: bytes | None = None
        self._ended = False
        self._peer: tuple | None = None
        self._window = ReplayWindow()
        self._history: OrderedDict[int, codec.QuantisedMotion] = OrderedDict()
        self._first_seq: int | None = None
        self._received = 0
        self._decoded_since_ack = 0
        self._ack_seq = 0
        self._heard_at: float | None = None
        self._rate = RateMeter()
        self._rejects = RejectLog(clock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="vcam-receive", daemon=True)
        self.sessions = 0

    def __enter__(self) -> "ReceiverLink":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    def _listen(self) -> None:
        serve_datagrams(self._sock, self._stop, self.handle, self._rejects)

    def handle(self, datagram: bytes, peer: tuple) -> None:
        """One datagram; raises PacketError/DecodeError saying why it is refused."""
        now = self._clock()
        kind = peek_kind(datagram)
        if kind == Kind.HELLO:
            self._hello(open_packet(self._pairing, datagram), peer)
            return
        if kind not in SESSION_KINDS or kind == Kind.ACK:
            raise PacketError(f"unexpected {kind.name} packet")
        with self._lock:
            packet, key = self._open_session_packet(datagram)
            if key != self._key:  # the first packet of a new session proves it: switch to it
                self._start_session(key)
            if not self._window.accept(packet.seq):
                raise PacketError(f"replayed or too old packet {packet.seq}")
            self._peer, self._heard_at = peer, now
            self._rate.add(now, len(datagram))
            self._received += 1
            if self._first_seq is None:
                self._first_seq = packet.seq
            if kind == Kind.BYE:  # the key stays: frames overtaken by the BYE still decode
                log.info("the sender ended the stream")
                self._ended = True
                return
            frame = self._decode(packet, now)
            self._decoded_since_ack += 1
            if kind == Kind.KEY or self._decoded_since_ack >= ACK_EVERY:
                self._decoded_since_ack = 0
                self._send_ack(packet.seq, peer)
        self._on_frame(frame)

    def _send_ack(self, seq: int, peer: tuple) -> None:
        assert self._key is not None
        try:
            self._sock.sendto(seal(self._key, Packet(Kind.ACK, self._ack_seq, 0, ACK_BODY.pack(seq, self._received))), peer)
        except OSError as exc:  # the sender's network is gone for now; it falls back to key frames
            log.debug("ACK not sent: %s", exc)
        self._ack_seq += 1

    def _hello(self, packet: Packet, peer: tuple) -> None:
        if len(packet.body) != HELLO_BODY.size:
            raise PacketError("malformed HELLO")
        nonce, profile_id, model_id, num_kp = HELLO_BODY.unpack(packet.body)
        if nonce in self._refused:
            return
        problem = self._accept(StreamIdentity(profile_id, model_id, num_kp))
        if problem is not None:
            self._refused.add(nonce)
            log.warning("refused the sender at %s: %s", peer, problem)
            return
        with self._lock:
            if nonce not in self._pending:
                ours = secrets.token_bytes(16)
                self._pending[nonce] = (ours, session_key(self._pairing, nonce, ours))
                while len(self._pending) > 4:
                    self._pending.popitem(last=False)
            ours = self._pending[nonce][0]
        try:
            self._sock.sendto(seal(self._pairing, Packet(Kind.WELCOME, 0, 0, WELCOME_BODY.pack(nonce, ours))), peer)
        except OSError as exc:
            log.debug("WELCOME not sent: %s", exc)

    def _open_session_packet(self, datagram: bytes) -> tuple[Packet, bytes]:
        keys = ([self._key] if self._key is not None else []) + [key for _, key in reversed(self._pending.values())]
        for key in keys:
            try:
                return open_packet(key, datagram), key
            except PacketError:
                continue
        raise PacketError("bad authentication tag (not the paired peer, or a stale session)")

    def _start_session(self, key: bytes) -> None:
        self._key, self._ended, self._window, self._history = key, False, ReplayWindow(), OrderedDict()
        self._first_seq, self._received, self._decoded_since_ack = None, 0, 0
        self._pending = OrderedDict((n, v) for n, v in self._pending.items() if v[1] != key)
        self.sessions += 1
        log.info("sender connected")

    def _decode(self, packet: Packet, now: float) -> ReceivedFrame:
        reference = None
        if packet.kind == Kind.DELTA:
            distance = codec.read_header(packet.body).num_kp_or_distance
            reference = self._history.get(packet.seq - distance)
            if reference is None:
                raise DecodeError(f"frame {packet.seq} refers to frame {packet.seq - distance}, which did not arrive")
        q = codec.decode(packet.body, reference)
        vector = codec.dequantise(q, self._quantiser)
        codec.check_motion(vector)
        self._history[packet.seq] = q
        while len(self._history) > HISTORY:
            self._history.popitem(last=False)
        return ReceivedFrame(packet.seq, packet.timestamp_ms / 1000, now, vector, self.sessions)

    def status(self) -> LinkStatus:
        now = self._clock()
        with self._lock:
            if self._key is None or self._ended:
                state = LinkState.WAITING
            elif self._heard_at is not None and now - self._heard_at > 1.0:
                state = LinkState.SILENT
            else:
                state = LinkState.CONNECTED
            expected = self._window.newest - self._first_seq + 1 if self._first_seq is not None else 0
            loss = 1.0 - self._received / expected if expected > 0 else 0.0
            peer = f"{self._peer[0]}:{self._peer[1]}" if self._peer else "-"
            return LinkStatus(state, peer, self._rate.kbit_s(now), max(0.0, loss), self._received, self._rejects.total)
