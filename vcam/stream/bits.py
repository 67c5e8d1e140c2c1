"""Bit-level writing and reading, and the Golomb-Rice code the motion codec uses for residuals.

A Rice code with parameter k writes a non-negative integer u as ``u >> k`` in unary (that many
1 bits, then a 0) followed by the k low bits of u. Signed residuals are folded first (zigzag:
0, -1, 1, -2, 2 … → 0, 1, 2, 3, 4). A unary part of :data:`ESCAPE` ones is an escape: the value
follows as a plain 32-bit number, so one wild value costs 48 bits instead of thousands and a
reader never loops for long on hostile input.
"""

from __future__ import annotations

import numpy as np

ESCAPE = 16
RAW_BITS = 32
MAX_K = 15


class DecodeError(ValueError):
    """The bytes are not a valid encoding (truncated, or a value out of range)."""


class BitWriter:
    def __init__(self) -> None:
        self._bytes = bytearray()
        self._acc = 0
        self._n = 0

    def write(self, value: int, bits: int) -> None:
        """The ``bits`` low bits of ``value``, most significant first."""
        self._acc = (self._acc << bits) | (value & ((1 << bits) - 1))
        self._n += bits
        while self._n >= 8:
            self._n -= 8
            self._bytes.append((self._acc >> self._n) & 0xFF)
        self._acc &= (1 << self._n) - 1

    def getvalue(self) -> bytes:
        """The bits written so far, the last byte padded with zeros."""
        tail = bytes([(self._acc << (8 - self._n)) & 0xFF]) if self._n else b""
        return bytes(self._bytes) + tail


class BitReader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0  # in bits

    def read(self, bits: int) -> int:
        end = self._pos + bits
        if end > 8 * len(self._data):
            raise DecodeError("truncated bit stream")
        value = 0
        for i in range(self._pos, end):
            value = (value << 1) | ((self._data[i >> 3] >> (7 - (i & 7))) & 1)
        self._pos = end
        return value

    def unary(self, limit: int) -> int:
        """Count 1 bits up to a 0 (consumed) or up to ``limit`` ones (the 0 is then absent)."""
        count = 0
        while count < limit and self.read(1):
            count += 1
        return count

    @property
    def bits_left(self) -> int:
        return 8 * len(self._data) - self._pos


def zigzag(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.int64)
    return np.where(v >= 0, 2 * v, -2 * v - 1)


def unzigzag(u: int) -> int:
    return u >> 1 if u % 2 == 0 else -((u + 1) >> 1)


def rice_cost(values: np.ndarray, k: int) -> int:
    """Bits :func:`write_rice` spends on ``values`` (signed ints) with parameter ``k``."""
    q = zigzag(values) >> k
    escaped = q >= ESCAPE
    return int(np.where(escaped, ESCAPE + RAW_BITS, q + 1 + k).sum())


def best_k(values: np.ndarray) -> int:
    """The Rice parameter that codes ``values`` in the fewest bits."""
    if values.size == 0:
        return 0
    return min(range(MAX_K + 1), key=lambda k: rice_cost(values, k))


def write_rice(writer: BitWriter, values: np.ndarray, k: int) -> None:
    for u in zigzag(values).tolist():
        q = u >> k
        if q >= ESCAPE:
            writer.write((1 << ESCAPE) - 1, ESCAPE)
            writer.write(u, RAW_BITS)
        else:
            writer.write(((1 << q) - 1) << 1, q + 1)
            writer.write(u, k)


def read_rice(reader: BitReader, count: int, k: int) -> np.ndarray:
    out = np.empty(count, dtype=np.int64)
    for i in range(count):
        q = reader.unary(ESCAPE)
        u = reader.read(RAW_BITS) if q == ESCAPE else (q << k) | reader.read(k)
        out[i] = unzigzag(u)
    return out
