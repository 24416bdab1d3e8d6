"""Tasks keep their database connection between tasks, as the portal's requests do.

Celery's Django fixup closes every database connection before and after each task unless ``CELERY_DB_REUSE_MAX``
is set, so each task paid for a new PostgreSQL session: a backend process forked and a password exchange. A pod
storm sends a GC release task per deleted pod; in the lab that was about 20 new sessions a second while the pods
went, about a fifth of a core of PostgreSQL's time. Here the fixup is told to reuse connections, and the task
signals do what Django does around a request: ``close_old_connections`` drops a connection that failed or outlived
``SPIDERWEB_DB_CONN_MAX_AGE`` and has the next query health-check a kept one (``CONN_HEALTH_CHECKS``).

Eager tasks (run inside the caller, as tests do) are left alone, as the fixup leaves them: closing the caller's
connection there would end its transaction. A prefork pool process still drops what it inherited from its parent
(the fixup's ``worker_process_init``, which ignores the reuse setting).
"""

from __future__ import annotations

from celery import Celery, signals
from django.db import close_old_connections

# The fixup closes every connection after twice this many tasks whatever their age: never, in practice.
_REUSE_TASKS = 2**30


def connections_reused(app: Celery) -> None:
    """Tell ``app``'s Django fixup to keep connections; the handlers below decide when one is closed."""
    app.conf.CELERY_DB_REUSE_MAX = _REUSE_TASKS


def _around_task(sender=None, **_) -> None:
    if not getattr(sender.request, "is_eager", False):
        close_old_connections()


signals.task_prerun.connect(_around_task)
signals.task_postrun.connect(_around_task)
