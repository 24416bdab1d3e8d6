"""Portal edits flow out: a saved or deleted pool, subnet or reservation enqueues ``mirror_out`` after commit.

Writes that come *from* Kubernetes (the admission webhook, ``mirror_in``) run inside :func:`from_kubernetes`, so
they do not echo a task back: the webhook's object is not stored in etcd yet when its transaction commits, and a
``mirror_out`` running in that window would see the old CRD. ``mirror_in`` writes both sides itself.

Enqueueing is a speed-up, not the guarantee: a lost message (broker down) is found by the resync sweep, which
compares ``generation`` with ``synced_generation`` (level-based).
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager

from django.db.models.signals import post_delete, post_save

from spiderweb.controllers.enqueue import task_send, task_send_on_commit
from spiderweb.controllers.mirror.config import mirror_config
from spiderweb.controllers.mirror.documents import MIRROR_KINDS

MIRROR_IN_TASK = "workers.mirror.mirror_in_task"
MIRROR_OUT_TASK = "workers.mirror.mirror_out_task"

_from_kubernetes: contextvars.ContextVar[bool] = contextvars.ContextVar("spiderweb_from_kubernetes", default=False)


@contextmanager
def from_kubernetes():
    """Mark the writes inside the block as coming from Kubernetes (no ``mirror_out`` echo)."""
    token = _from_kubernetes.set(True)
    try:
        yield
    finally:
        _from_kubernetes.reset(token)


def mirror_out_enqueue(kind: str, pk: int) -> None:
    """Enqueue ``mirror_out(kind, pk)`` when the current transaction commits."""
    task_send_on_commit(MIRROR_OUT_TASK, kind, pk)


def mirror_in_enqueue(kind: str, name: str) -> None:
    """Enqueue ``mirror_in(kind, name)`` (right away: the caller is not in a transaction)."""
    task_send(MIRROR_IN_TASK, kind, name)


def _changed(sender, instance, **kwargs) -> None:
    if _from_kubernetes.get() or not mirror_config().enabled:
        return
    mirror_out_enqueue(_KIND_OF[sender], instance.pk)


_KIND_OF = {mk.model: mk.kind for mk in MIRROR_KINDS.values()}


def connect() -> None:
    for model in _KIND_OF:
        post_save.connect(_changed, sender=model, dispatch_uid=f"mirror-out-save-{model.__name__}")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"mirror-out-delete-{model.__name__}")
