"""Thin Celery tasks: each calls one service and carries an explicit name."""

from celery import shared_task


@shared_task(name="workers.tasks.verify_allocation_integrity_task", acks_late=True)
def verify_allocation_integrity_task() -> dict:
    """Report allocations that sit outside their pool's addresses or on a reserved address (never silently fix)."""
    from spiderweb.ipam.integrity import allocation_integrity_report

    return allocation_integrity_report()


@shared_task(name="workers.tasks.prune_change_log_task", acks_late=True)
def prune_change_log_task() -> int:
    """Drop change-log rows older than SPIDERWEB_CHANGELOG_RETENTION_DAYS (NetBox's CHANGELOG_RETENTION)."""
    from spiderweb.changelog.retention import change_log_prune

    return change_log_prune()


@shared_task(name="workers.tasks.prune_pod_tombstones_task", acks_late=True)
def prune_pod_tombstones_task() -> int:
    """Forget deleted pod sandboxes after an hour (the ADD a tombstone guards against has arrived or given up)."""
    from spiderweb.ipam.tombstones import pod_tombstone_prune

    return pod_tombstone_prune()
