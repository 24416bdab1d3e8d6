"""Thin Celery tasks of the application controller (SpiderSubnet auto pools)."""

from celery import shared_task

from workers.retry import RETRY

RESYNC_LEASE = "autopool-resync"


@shared_task(name="workers.autopool.application_reconcile_task", **RETRY)
def application_reconcile_task(kind: str, namespace: str, name: str, uid: str) -> str:
    """A workload changed: size its auto pools (retried with backoff while the subnet or the pods hold it up)."""
    from spiderweb.controllers.autopool.services import application_reconcile

    return application_reconcile(kind, namespace, name, uid)


@shared_task(name="workers.autopool.application_reclaim_task", **RETRY)
def application_reclaim_task(uid: str) -> str:
    """A workload is gone: delete its reclaimable auto pools once they are empty."""
    from spiderweb.controllers.autopool.services import application_reclaim

    return application_reclaim(uid)


@shared_task(name="workers.autopool.applications_resync_task", acks_late=True)
def applications_resync_task() -> dict | str:
    """Beat: reconcile every application by level and reclaim the pools of those that are gone."""
    from spiderweb.controllers.autopool.services import applications_resync
    from spiderweb.controllers.leases import lease_held

    with lease_held(RESYNC_LEASE, ttl=300) as mine:
        return applications_resync() if mine else "another resync is running"
