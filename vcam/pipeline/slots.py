"""The one-item queues that join the pipeline's threads."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Slot(Generic[T]):
    """A one-item queue. Live: ``put`` replaces the waiting item (counted as dropped), so a slow
    consumer drops old items instead of building a backlog. Lossless: ``put`` waits until the item
    has been taken."""

    def __init__(self, lossless: bool) -> None:
        self.lossless = lossless
        self.dropped = 0
        self._item: T | None = None
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item: T) -> bool:
        """False if the slot was closed (the consumer is gone)."""
        with self._cond:
            while self.lossless and self._item is not None and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """The waiting item, or None after ``timeout`` / once closed and empty."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed and self._item is None
