"""Thin Celery tasks of the IP GC: each calls one service of ``spiderweb.controllers.gc``."""

from celery import shared_task

from workers.retry import RETRY

SCAN_LEASE = "gc-scan"


@shared_task(name="workers.gc.gc_release_pod_task", **RETRY)
def gc_release_pod_task(uid: str) -> str:
    """A traced pod is due: release its addresses if, read fresh, it is still garbage."""
    from spiderweb.controllers.gc.services import traced_pod_release

    return traced_pod_release(uid)


@shared_task(name="workers.gc.gc_trace_sweep_task", acks_late=True)
def gc_trace_sweep_task() -> dict:
    """Beat: release every traced pod whose time has come (what a lost message or a dead worker left)."""
    from spiderweb.controllers.gc.services import traced_pods_sweep

    return traced_pods_sweep()


@shared_task(name="workers.gc.gc_scan_task", **RETRY)
def gc_scan_task() -> dict | str:
    """Beat (and on request): the full scan, never two at once."""
    from spiderweb.controllers.gc.config import gc_config
    from spiderweb.controllers.gc.services import gc_scan
    from spiderweb.controllers.leases import lease_held

    with lease_held(SCAN_LEASE, ttl=max(gc_config().scan_interval, 300)) as mine:
        return gc_scan() if mine else "another scan is running"
