"""Leases in the database: singletons (the watcher, a status batch, a full GC scan) stay single across replicas.

One conditional UPDATE takes or renews a lease, so two contenders cannot both win, on PostgreSQL and on the
embedded demo's SQLite alike. A holder that dies simply stops renewing; the lease expires and a standby takes it.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from django.db.models import Q
from django.utils import timezone

from spiderweb.controllers.models import Lease


def lease_holder_id() -> str:
    """This process, as a lease holder: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def lease_acquire(name: str, *, holder: str, ttl: float) -> bool:
    """Take or renew the lease ``name`` for ``ttl`` seconds; False while someone else holds an unexpired one."""
    now = timezone.now()
    Lease.objects.get_or_create(name=name)
    free = Q(expires_at__lte=now) | Q(holder=holder) | Q(holder="")
    taken = Lease.objects.filter(free, name=name).update(holder=holder, expires_at=now + _dt.timedelta(seconds=ttl))
    return taken == 1


def lease_release(name: str, *, holder: str) -> None:
    """Give the lease up at once (a clean stop), so a standby need not wait for it to expire."""
    Lease.objects.filter(name=name, holder=holder).update(holder="", expires_at=timezone.now())


@contextmanager
def lease_held(name: str, *, ttl: float) -> Iterator[bool]:
    """``with lease_held("gc-scan", ttl=600) as mine:`` — ``mine`` is False when another process holds it; the
    lease is released on the way out only if this process took it. ``ttl`` must exceed the job's longest run."""
    holder = lease_holder_id()
    mine = lease_acquire(name, holder=holder, ttl=ttl)
    try:
        yield mine
    finally:
        if mine:
            lease_release(name, holder=holder)
