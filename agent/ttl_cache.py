"""A small thread-safe cache whose entries expire after a fixed time, for Kubernetes objects read by the agent.

Why not an informer: the agent only ever needs the few pods being started on its node, their namespaces, one node
and a handful of owners. Watching every pod of the cluster from every node would cost the API server far more
than a GET per pod start; a short TTL bounds staleness the way an informer's lag does.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    """``get_or_load(key, loader)`` returns a cached value younger than ``ttl`` seconds or calls ``loader``.

    ``None`` results are cached too ("the namespace does not exist" is an answer). At most ``max_entries`` are
    kept; the oldest go first. Loader exceptions are not cached. ``ttl=0`` disables caching.

    >>> clock = iter([0.0, 0.0, 1.0, 10.0, 10.0]).__next__
    >>> cache, calls = TTLCache(ttl=5.0, clock=clock), []
    >>> [cache.get_or_load("k", lambda: calls.append(1) or len(calls)) for _ in range(3)]
    [1, 1, 2]
    """

    def __init__(self, ttl: float, *, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        """The cached value, or ``None`` when absent or expired."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] < self.ttl:
                return entry[1]
        return None

    def get_or_load(self, key: Hashable, loader: Callable[[], V]) -> V:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] < self.ttl:
                return entry[1]
        value = loader()
        self.put(key, value)
        return value

    def put(self, key: Hashable, value: V) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def invalidate(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
