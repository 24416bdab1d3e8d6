"""Send Celery tasks by name from any process, without importing ``workers`` (the portal never does).

The worker and beat processes have ``workers.celery`` as Celery's current app; the portal and the watcher have no
app of their own, so a sender-only app is made from the same Django settings (``CELERY_*``). Enqueueing is a
speed-up, never the guarantee: every controller has a beat resync that finds what a lost message missed, so a
broker that is down is logged, not raised.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from celery import Celery, current_app
from django.db import transaction

log = logging.getLogger(__name__)

APP_NAME = "spiderweb"


@lru_cache(maxsize=1)
def _sender_app() -> Celery:
    app = Celery(APP_NAME, set_as_current=True)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    return app


def celery_app() -> Celery:
    """The workers' app when this process runs it, else a sender configured from the Django settings."""
    app = current_app._get_current_object()
    return app if app.main == APP_NAME else _sender_app()


def task_send(name: str, *args, countdown: float | None = None) -> bool:
    """Send task ``name`` with ``args`` now (after ``countdown`` seconds when given); False when the broker is
    unreachable (logged: the controller's resync repairs a lost send)."""
    try:
        celery_app().send_task(name, args=list(args), countdown=countdown)
        return True
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds; the write that triggered it is committed
        log.warning("could not enqueue %s%r: %s", name, args, exc)
        return False


def task_send_on_commit(name: str, *args) -> None:
    """Send task ``name`` once the current transaction commits (nothing is sent for a rolled-back write)."""
    transaction.on_commit(lambda: task_send(name, *args))
