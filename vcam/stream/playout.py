"""Receiver timing: the motion to render at any instant of the receiver's own clock.

Frames arrive late by a varying amount (network jitter) and some never arrive. The receiver
renders on its own clock and asks :class:`Playout` for the motion of "now": it maps the sender's
timestamps onto the local clock through the smallest transit time seen recently (so neither a
clock offset nor a slow drift between the two machines accumulates), plays a little behind that
(the jitter delay, adapted to the measured jitter), interpolates between the frames around the
play point (a lost frame is bridged by its neighbours), and only when the play point runs past
the newest frame extrapolates along the last velocity, easing into a hold.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PlayoutSample:
    vector: np.ndarray
    ahead_s: float
    """How far the play point is past the newest received frame (> 0: extrapolated or held)."""
    delay_s: float
    """The current jitter delay."""


class Playout:
    def __init__(
        self,
        min_delay_s: float = 0.02,
        max_delay_s: float = 0.4,
        margin_s: float = 0.035,
        window_s: float = 4.0,
        ease_s: float = 0.08,
        keep_s: float = 2.0,
    ) -> None:
        self.min_delay_s, self.max_delay_s, self.margin_s = min_delay_s, max_delay_s, margin_s
        self.window_s, self.ease_s, self.keep_s = window_s, ease_s, keep_s
        self._times: list[float] = []  # sender timestamps (s), sorted
        self._vectors: list[np.ndarray] = []
        self._transits: deque[tuple[float, float]] = deque()  # (arrival, arrival - timestamp)
        self._delay: float | None = None
        self._last_now: float | None = None

    def add(self, timestamp_s: float, arrival_s: float, vector: np.ndarray) -> None:
        i = bisect.bisect_left(self._times, timestamp_s)
        if i < len(self._times) and self._times[i] == timestamp_s:
            return
        self._times.insert(i, timestamp_s)
        self._vectors.insert(i, vector)
        self._transits.append((arrival_s, arrival_s - timestamp_s))
        while self._transits and self._transits[0][0] < arrival_s - self.window_s:
            self._transits.popleft()
        while self._times and self._times[0] < self._times[-1] - self.keep_s:
            self._times.pop(0)
            self._vectors.pop(0)

    @property
    def empty(self) -> bool:
        return not self._times

    def _base(self) -> float:
        return min(t for _, t in self._transits)

    def _target_delay(self, base: float) -> float:
        jitter = np.array([t - base for _, t in self._transits])
        return float(np.clip(np.quantile(jitter, 0.97) + self.margin_s, self.min_delay_s, self.max_delay_s))

    def sample(self, now_s: float) -> PlayoutSample | None:
        """The motion for local time ``now_s``, or None before the first frame."""
        if not self._times:
            return None
        base = self._base()
        target = self._target_delay(base)
        if self._delay is None or self._last_now is None:
            self._delay = target
        else:  # follow the target at most 10 % faster or slower than real time: no visible jumps
            step = 0.1 * max(0.0, now_s - self._last_now)
            self._delay += float(np.clip(target - self._delay, -step, step))
        self._last_now = now_s
        play = now_s - base - self._delay
        return PlayoutSample(self._at(play), play - self._times[-1], self._delay)

    def _at(self, t: float) -> np.ndarray:
        times, vectors = self._times, self._vectors
        i = bisect.bisect_right(times, t)
        if i == 0:
            return vectors[0].copy()
        if i < len(times):
            w = (t - times[i - 1]) / (times[i] - times[i - 1])
            return vectors[i - 1] + w * (vectors[i] - vectors[i - 1])
        last = vectors[-1]
        if len(times) < 2:
            return last.copy()
        velocity = (last - vectors[-2]) / max(times[-1] - times[-2], 1e-3)
        # x(dt) = last + v·τ·(1 − e^(−dt/τ)): starts along the last velocity, settles into a hold
        reach = self.ease_s * (1.0 - math.exp(-(t - times[-1]) / self.ease_s))
        return last + velocity * reach
