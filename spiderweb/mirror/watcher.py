"""The CRD watcher behind ``manage.py k8s_watch``: watch events become ``mirror_in`` tasks.

One thread per kind runs a :class:`spiderweb.k8s.watch.WatchLoop` whose cursor lives in ``WatchCursor`` rows, so a
restart resumes where the last run stopped and a 410 Gone relists. A relist also enqueues the rows that came from
Kubernetes but are no longer listed (their DELETED events are lost for good once the cursor expired). Only the
holder of the ``k8s-watch`` lease watches; other replicas wait as warm standbys.
"""

from __future__ import annotations

import logging
import threading

from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from spiderweb.k8s import crd
from spiderweb.k8s.watch import WatchEvent, WatchLoop
from spiderweb.mirror.documents import MIRROR_KINDS
from spiderweb.mirror.models import WatchCursor
from spiderweb.mirror.services import event_needs_reconcile, lease_acquire, lease_holder_id, lease_release
from spiderweb.mirror.signals import mirror_in_enqueue

log = logging.getLogger(__name__)

WATCHED_KINDS = ("SpiderSubnet", "SpiderIPPool", "SpiderReservedIP", "SpiderCoordinator")
LEASE_NAME = "k8s-watch"


def cursor_load(kind: str) -> str:
    """The stored resourceVersion to resume the watch of ``kind`` from (``""``: list first)."""
    close_old_connections()
    return WatchCursor.objects.filter(kind=kind).values_list("resource_version", flat=True).first() or ""


def cursor_save(kind: str, resource_version: str) -> None:
    """Store where the watch of ``kind`` resumes (``""`` forces a relist)."""
    WatchCursor.objects.update_or_create(kind=kind, defaults={"resource_version": resource_version})


def event_handle(kind: str, event: WatchEvent) -> None:
    """A change of anything the mirror owns, or a DELETED, is a reason to reconcile that name (level-based: the task
    reads both sides); a status-only change is not."""
    close_old_connections()
    if event_needs_reconcile(kind, event.object, event.type):
        mirror_in_enqueue(kind, event.name)


def relist_handle(kind: str, items: list[dict]) -> None:
    """Reconcile every listed object, and every row from Kubernetes that the list no longer has."""
    close_old_connections()
    names = {crd.meta(obj).get("name") for obj in items}
    for name in sorted(n for n in names if n):
        mirror_in_enqueue(kind, name)
    if kind in MIRROR_KINDS:
        gone = MIRROR_KINDS[kind].model.objects.exclude(k8s_uid="").exclude(name__in=names)
        for name in gone.values_list("name", flat=True):
            mirror_in_enqueue(kind, name)
    WatchCursor.objects.update_or_create(kind=kind, defaults={"relisted_at": timezone.now()})


class Watcher:
    """Runs one watch thread per kind while this process holds the lease; ``shutdown()`` stops everything."""

    def __init__(self, client: crd.CrdClient, *, kinds=WATCHED_KINDS, watch_timeout: int = 60,
                 lease_ttl: float = 30.0) -> None:
        self.client = client
        self.kinds = tuple(kinds)
        self.watch_timeout = watch_timeout
        self.lease_ttl = lease_ttl
        self.holder = lease_holder_id()
        self.stop = threading.Event()
        self.loops: dict[str, WatchLoop] = {}
        self.threads: list[threading.Thread] = []

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
        for kind in self.kinds:
            loop = WatchLoop(
                client=self.client, kind=crd.KINDS[kind],
                load_cursor=lambda k=kind: cursor_load(k),
                save_cursor=lambda rv, k=kind: cursor_save(k, rv),
                handle=lambda event, k=kind: event_handle(k, event),
                relist=lambda items, k=kind: relist_handle(k, items),
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
