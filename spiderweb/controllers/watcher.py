"""The one watcher behind ``manage.py k8s_watch``: Kubernetes watch events become controller work.

One thread per watched kind runs a :class:`spiderweb.k8s.watch.WatchLoop` whose cursor lives in ``WatchCursor``
rows, so a restart resumes where the last run stopped and a 410 Gone relists. Every event goes to each registered
listener of that kind (see :mod:`spiderweb.controllers.registry`). Only the holder of the ``k8s-watch`` lease
watches; other replicas wait as warm standbys.
"""

from __future__ import annotations

import logging
import threading

from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from spiderweb.controllers.leases import lease_acquire, lease_holder_id, lease_release
from spiderweb.controllers.models import WatchCursor
from spiderweb.controllers.registry import Watch, watches_by_kind
from spiderweb.k8s.client import KubeClient
from spiderweb.k8s.watch import WatchEvent, WatchLoop

log = logging.getLogger(__name__)

LEASE_NAME = "k8s-watch"


def cursor_load(kind: str) -> str:
    """The stored resourceVersion to resume the watch of ``kind`` from (``""``: list first)."""
    close_old_connections()
    return WatchCursor.objects.filter(kind=kind).values_list("resource_version", flat=True).first() or ""


def cursor_save(kind: str, resource_version: str) -> None:
    """Store where the watch of ``kind`` resumes (``""`` forces a relist)."""
    WatchCursor.objects.update_or_create(kind=kind, defaults={"resource_version": resource_version})


def event_dispatch(listeners: list[Watch], event: WatchEvent) -> None:
    """Hand one event to every listener of its kind."""
    close_old_connections()
    for watch in listeners:
        watch.on_event(event)


def relist_dispatch(kind: str, listeners: list[Watch], items: list[dict]) -> None:
    """Hand a full list to every listener that wants one, then note when the kind was relisted."""
    close_old_connections()
    for watch in listeners:
        if watch.on_relist is not None:
            watch.on_relist(items)
    WatchCursor.objects.update_or_create(kind=kind, defaults={"relisted_at": timezone.now()})


class Watcher:
    """Runs one watch thread per kind while this process holds the lease; ``shutdown()`` stops everything."""

    def __init__(self, client: KubeClient, watches: list[Watch], *, watch_timeout: int = 60,
                 lease_ttl: float = 30.0) -> None:
        self.client = client
        self.by_kind = watches_by_kind(watches)
        self.watch_timeout = watch_timeout
        self.lease_ttl = lease_ttl
        self.holder = lease_holder_id()
        self.stop = threading.Event()
        self.loops: dict[str, WatchLoop] = {}
        self.threads: list[threading.Thread] = []

    @property
    def kinds(self) -> list[str]:
        return list(self.by_kind)

    def run(self) -> None:
        """Block until ``shutdown()``: renew the lease every third of its TTL, watch while holding it."""
        try:
            while not self.stop.is_set():
                try:
                    leading = lease_acquire(LEASE_NAME, holder=self.holder, ttl=self.lease_ttl)
                except DatabaseError as exc:
                    log.warning("cannot renew the %s lease: %s", LEASE_NAME, exc)
                    connection.close()
                    leading = False
                if leading and not self.threads:
                    log.info("leading: watching %s", ", ".join(self.kinds))
                    self._start()
                elif not leading and self.threads:
                    log.warning("lost the %s lease: stopping the watches", LEASE_NAME)
                    self._stop_loops()
                self.stop.wait(self.lease_ttl / 3)
        finally:
            self._stop_loops()
            try:
                lease_release(LEASE_NAME, holder=self.holder)
            except DatabaseError:
                pass
            connection.close()

    def shutdown(self) -> None:
        """Safe from a signal handler: interrupts the current watches and ends ``run()``."""
        self.stop.set()
        for loop in list(self.loops.values()):
            loop.shutdown()

    def _start(self) -> None:
        for kind, listeners in self.by_kind.items():
            loop = WatchLoop(
                client=self.client, resource=listeners[0].resource,
                load_cursor=lambda k=kind: cursor_load(k),
                save_cursor=lambda rv, k=kind: cursor_save(k, rv),
                handle=lambda event, ls=listeners: event_dispatch(ls, event),
                relist=lambda items, k=kind, ls=listeners: relist_dispatch(k, ls, items),
                timeout_seconds=self.watch_timeout,
            )
            self.loops[kind] = loop
            thread = threading.Thread(target=self._thread_main, args=(loop,), name=f"watch-{kind}", daemon=True)
            self.threads.append(thread)
            thread.start()

    @staticmethod
    def _thread_main(loop: WatchLoop) -> None:
        try:
            loop.run()
        finally:
            connection.close()

    def _stop_loops(self) -> None:
        for loop in self.loops.values():
            loop.shutdown()
        for thread in self.threads:
            thread.join(timeout=5)
        self.loops, self.threads = {}, []
