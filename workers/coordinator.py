"""Thin Celery tasks of the coordinator controller (SpiderCoordinator status, spec §8.7)."""

from celery import shared_task

from workers.retry import RETRY


@shared_task(name="workers.coordinator.coordinator_reconcile_task", **RETRY)
def coordinator_reconcile_task(name: str) -> str:
    """A SpiderCoordinator or one of its CIDR sources changed: discover its status again."""
    from spiderweb.controllers.coordinator.services import coordinator_reconcile

    return coordinator_reconcile(name)


@shared_task(name="workers.coordinator.coordinators_resync_task", **RETRY)
def coordinators_resync_task() -> list[str]:
    """Beat: reconcile every SpiderCoordinator by level (ConfigMap changes and lost events are found this way)."""
    from spiderweb.controllers.coordinator.services import coordinators_resync

    return coordinators_resync()
