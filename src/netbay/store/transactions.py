"""The one transaction discipline of every store, so their nesting cannot drift apart."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class FlatTransactions:
    """Exclusive write transactions that nest by joining the outermost one, as SQLite's
    BEGIN IMMEDIATE does (no savepoints): an exception caught inside the outermost block
    keeps the writes made before it; one that leaves the outermost block undoes them all.

    The lock is held from begin to commit, so other threads wait, reads included.
    """

    def __init__(
        self,
        lock: threading.RLock,
        begin: Callable[[], None],
        commit: Callable[[], None],
        rollback: Callable[[], None],
    ) -> None:
        self._lock = lock
        self._begin, self._commit, self._rollback = begin, commit, rollback
        self._depth = 0

    @property
    def active(self) -> bool:
        """Inside a transaction (meaningful to the thread holding the lock)."""
        return self._depth > 0

    @contextmanager
    def join(self) -> Iterator[None]:
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._begin()
            self._depth = 1
            try:
                yield
            except BaseException:
                self._rollback()
                raise
            else:
                self._commit()
            finally:
                self._depth = 0
