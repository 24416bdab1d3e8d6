"""The agent's portal credential: a fixed value, or a file that may appear, change or vanish while the agent runs.

In Kubernetes the token comes from a Secret mounted as files (helm/README.md, "Node tokens"): an agent may start
before its node's token is issued, and a rotated token reaches the running pod when the kubelet refreshes the
volume. So the file is re-read when it changes (checked at most once per ``recheck_seconds``), while it is missing,
and after the portal answered 401; an agent without a token serves 503 ("try again later") and reports not ready
instead of crash-looping.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class NodeToken:
    """``get()`` returns the current token, ``""`` while none is available.

    >>> NodeToken(value="swn_a.b").get()
    'swn_a.b'
    >>> NodeToken(path="/nonexistent/token").get()
    ''
    """

    def __init__(self, *, value: str = "", path: str | None = None, recheck_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._value = value.strip()
        self._recheck = recheck_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._stamp: tuple[int, int, int] | None = None

    @property
    def source(self) -> str:
        """Where the token comes from, for messages (never the token itself)."""
        return f"SPIDERWEB_NODE_TOKEN_FILE={self.path}" if self.path else "SPIDERWEB_NODE_TOKEN"

    def get(self) -> str:
        if self.path is None:
            return self._value
        with self._lock:
            now = self._clock()
            if self._checked_at is not None and now - self._checked_at < self._recheck and self._value:
                return self._value
            self._checked_at = now
            self._reload()
            return self._value

    def invalidate(self) -> None:
        """The portal refused the token: look at the file again on the next ``get()``."""
        with self._lock:
            self._checked_at = None
            self._stamp = None

    def _reload(self) -> None:
        try:
            info = os.stat(self.path)
            stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
            if stamp == self._stamp:
                return
            with open(self.path, encoding="utf-8") as handle:
                value = handle.read().strip()
        except FileNotFoundError:
            if self._value:
                log.warning("node token file %s disappeared", self.path)
            self._value, self._stamp = "", None
            return
        except OSError as exc:
            log.warning("node token file %s cannot be read: %s", self.path, exc)
            self._value, self._stamp = "", None
            return
        if value != self._value:
            log.info("node token %s from %s", "loaded" if value else "file is empty", self.path)
        self._value, self._stamp = value, stamp
