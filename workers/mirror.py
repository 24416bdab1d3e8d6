"""Thin Celery tasks of the Kubernetes mirror: each calls one service in ``spiderweb.mirror.services``.

Ids and names, never objects; ``acks_late`` so a worker lost mid-task hands it to another; transient failures
(API server or database unreachable, a CRD that kept changing) retry with exponential backoff. Every task is
idempotent: it reads both sides and acts on the difference.
"""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from spiderweb.engine.errors import Unavailable

TRANSIENT = (Unavailable, OperationalError, InterfaceError)
RETRY = dict(acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True, retry_backoff_max=60, retry_jitter=True,
             max_retries=10)
STATUS_LEASE = "mirror-status"


@shared_task(name="workers.mirror.mirror_in_task", **RETRY)
def mirror_in_task(kind: str, name: str) -> str:
    """A watch event for ``kind``/``name``: reconcile it (database ⇄ CRD)."""
    from spiderweb.mirror.services import mirror_in

    return mirror_in(kind=kind, name=name)


@shared_task(name="workers.mirror.mirror_out_task", **RETRY)
def mirror_out_task(kind: str, pk: int) -> str:
    """A portal edit or delete of row ``pk``: reconcile it (database ⇄ CRD)."""
    from spiderweb.mirror.services import mirror_out

    return mirror_out(kind=kind, pk=pk)


@shared_task(name="workers.mirror.mirror_status_task", **RETRY)
def mirror_status_task() -> dict | str:
    """Write pool/subnet status and SpiderEndpoints that changed since the last batch (never two batches at once)."""
    from spiderweb.mirror.services import lease_acquire, lease_holder_id, lease_release, mirror_status_write

    holder = lease_holder_id()
    if not lease_acquire(STATUS_LEASE, holder=holder, ttl=120):
        return "another batch is running"
    try:
        return mirror_status_write()
    finally:
        lease_release(STATUS_LEASE, holder=holder)


@shared_task(name="workers.mirror.mirror_resync_task", acks_late=True)
def mirror_resync_task() -> int:
    """Level-based safety net: enqueue a reconcile for every row out of sync (a lost message, a missed event)."""
    from spiderweb.mirror.services import mirror_resync_plan

    plan = mirror_resync_plan()
    for direction, kind, key in plan:
        (mirror_in_task if direction == "in" else mirror_out_task).delay(kind, key)
    return len(plan)
