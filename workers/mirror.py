"""Thin Celery tasks of the Kubernetes mirror: each calls one service of ``spiderweb.controllers.mirror``.

Ids and names, never objects; ``acks_late`` so a worker lost mid-task hands it to another; transient failures
(API server or database unreachable, a CRD that kept changing) retry with exponential backoff. Every task is
idempotent: it reads both sides and acts on the difference.
"""

from celery import shared_task

from workers.retry import RETRY

STATUS_LEASE = "mirror-status"


@shared_task(name="workers.mirror.mirror_in_task", **RETRY)
def mirror_in_task(kind: str, name: str) -> str:
    """A watch event for ``kind``/``name``: reconcile it (database ⇄ CRD)."""
    from spiderweb.controllers.mirror.reconcile import mirror_in

    return mirror_in(kind=kind, name=name)


@shared_task(name="workers.mirror.mirror_out_task", **RETRY)
def mirror_out_task(kind: str, pk: int) -> str:
    """A portal edit or delete of row ``pk``: reconcile it (database ⇄ CRD)."""
    from spiderweb.controllers.mirror.reconcile import mirror_out

    return mirror_out(kind=kind, pk=pk)


@shared_task(name="workers.mirror.mirror_status_task", **RETRY)
def mirror_status_task() -> dict | str:
    """Write pool/subnet status and SpiderEndpoints that changed since the last batch (never two batches at once)."""
    from spiderweb.controllers.leases import lease_held
    from spiderweb.controllers.mirror.status import mirror_status_write

    with lease_held(STATUS_LEASE, ttl=120) as mine:
        return mirror_status_write() if mine else "another batch is running"


@shared_task(name="workers.mirror.mirror_resync_task", acks_late=True)
def mirror_resync_task() -> int:
    """Level-based safety net: enqueue a reconcile for every row out of sync (a lost message, a missed event)."""
    from spiderweb.controllers.mirror.reconcile import mirror_resync_plan

    plan = mirror_resync_plan()
    for direction, kind, key in plan:
        (mirror_in_task if direction == "in" else mirror_out_task).delay(kind, key)
    return len(plan)
