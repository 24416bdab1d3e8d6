"""Bounds the work in flight in the agent: ``max_active`` requests run, up to ``max_waiting`` queue, the rest get 503.

Spiderpool's agent serialises same-pool requests per node with named tickets (spec §7.6) because it allocates by
optimistic writes to one CRD. The portal locks pool rows itself, so no per-pool ticket is needed here; what remains
useful is the bound: a node starting hundreds of pods at once must not open hundreds of portal calls at once, and a
runtime flooding the socket gets "queue is full" (HTTP 503, which the CNI turns into "try again later") instead of
an agent that runs out of threads. Waiters are served first come, first served.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from agent.errors import QueueFull


class Admission:
    """FIFO admission with ``max_active`` slots and a waiting line of at most ``max_waiting``.

    >>> gate = Admission(max_active=1, max_waiting=0)
    >>> with gate.slot() as waited:
    ...     gate.try_enter()
    Traceback (most recent call last):
    ...
    agent.errors.QueueFull: queue is full
    """

    def __init__(self, *, max_active: int, max_waiting: int) -> None:
        if max_active < 1 or max_waiting < 0:
            raise ValueError("max_active must be >= 1 and max_waiting >= 0")
        self.max_active = max_active
        self.max_waiting = max_waiting
        self._active = 0
        self._waiters: deque[threading.Event] = deque()
        self._changed = threading.Condition()

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def acquire(self) -> float:
        """Take a slot, waiting in line if needed; return the seconds waited. Raises :class:`QueueFull`."""
        started = time.monotonic()
        with self._changed:
            if self._active < self.max_active and not self._waiters:
                self._active += 1
                return 0.0
            if len(self._waiters) >= self.max_waiting:
                raise QueueFull(self.max_waiting)
            turn = threading.Event()
            self._waiters.append(turn)
        turn.wait()  # release() hands its slot straight to us, so nobody can overtake the line
        return time.monotonic() - started

    def try_enter(self) -> None:
        """Take a slot now or raise :class:`QueueFull` without waiting (used by tests and probes)."""
        with self._changed:
            if self._active >= self.max_active or self._waiters:
                raise QueueFull(self.max_waiting)
            self._active += 1

    def release(self) -> None:
        """Give the slot to the first waiter, or free it."""
        with self._changed:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._active -= 1
            self._changed.notify_all()

    @contextmanager
    def slot(self) -> Iterator[float]:
        """``with admission.slot() as waited:`` runs the body holding a slot."""
        waited = self.acquire()
        try:
            yield waited
        finally:
            self.release()

    def drain(self, timeout: float) -> bool:
        """Wait until nothing runs or waits (shutdown); False when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._active or self._waiters:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True
