"""A UDP relay on loopback that drops and delays datagrams, like a bad network, both ways."""

from __future__ import annotations

import heapq
import random
import socket
import threading
import time


class LossyRelay:
    """Forwards what arrives on ``port`` to ``target`` and the answers back to the last client.

    Each datagram is dropped with probability ``loss`` and otherwise delayed by a uniform random
    0..``jitter_s`` (so datagrams overtake each other); ``duplicate`` sends every forwarded one
    twice (a replay). Seeded: the same run drops the same datagrams.
    """

    def __init__(self, target: tuple[str, int], loss: float = 0.0, jitter_s: float = 0.0, seed: int = 0, duplicate: bool = False) -> None:
        self.target, self.loss, self.jitter_s, self.duplicate = target, loss, jitter_s, duplicate
        self._random = random.Random(seed)
        self._outside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._outside.bind(("127.0.0.1", 0))
        self._inside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._inside.bind(("127.0.0.1", 0))
        self.port = self._outside.getsockname()[1]
        self._client: tuple[str, int] | None = None
        self._queue: list[tuple[float, int, socket.socket, bytes, tuple[str, int]]] = []
        self._count = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.forwarded = self.dropped = 0
        for sock in (self._outside, self._inside):
            sock.settimeout(0.1)
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._from_client, self._from_target, self._deliver)]

    def __enter__(self) -> "LossyRelay":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(2)
        self._outside.close()
        self._inside.close()

    def _schedule(self, sock: socket.socket, data: bytes, to: tuple[str, int]) -> None:
        with self._cond:
            if self._random.random() < self.loss:
                self.dropped += 1
                return
            self.forwarded += 1
            for _ in range(2 if self.duplicate else 1):
                self._count += 1
                heapq.heappush(self._queue, (time.monotonic() + self._random.uniform(0, self.jitter_s), self._count, sock, data, to))
            self._cond.notify_all()

    def _from_client(self) -> None:
        while not self._stop.is_set():
            try:
                data, self._client = self._outside.recvfrom(65536)
            except (TimeoutError, socket.timeout, OSError):
                continue
            self._schedule(self._inside, data, self.target)

    def _from_target(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self._inside.recvfrom(65536)
            except (TimeoutError, socket.timeout, OSError):
                continue
            if self._client is not None:
                self._schedule(self._outside, data, self._client)

    def _deliver(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._stop.is_set() and (not self._queue or self._queue[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._queue else max(0.0, self._queue[0][0] - time.monotonic()))
                if self._stop.is_set():
                    return
                _, _, sock, data, to = heapq.heappop(self._queue)
            try:
                sock.sendto(data, to)
            except OSError:
                pass
