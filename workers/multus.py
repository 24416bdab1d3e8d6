"""Thin Celery tasks of the SpiderMultusConfig controller (SMC → NetworkAttachmentDefinition, spec §10.3)."""

from celery import shared_task

from workers.retry import RETRY

RESYNC_LEASE = "multus-resync"


@shared_task(name="workers.multus.multusconfig_reconcile_task", **RETRY)
def multusconfig_reconcile_task(namespace: str, name: str) -> str:
    """A SpiderMultusConfig (or the NAD it owns) changed: write its NAD."""
    from spiderweb.controllers.multus.services import multusconfig_reconcile

    return multusconfig_reconcile(namespace, name)


@shared_task(name="workers.multus.multusconfigs_resync_task", **RETRY)
def multusconfigs_resync_task() -> int | str:
    """Beat: reconcile every SpiderMultusConfig by level."""
    from spiderweb.controllers.leases import lease_held
    from spiderweb.controllers.multus.services import multusconfigs_resync

    with lease_held(RESYNC_LEASE, ttl=120) as mine:
        return multusconfigs_resync() if mine else "another resync is running"
