"""How the mirror records what it does that a user should see: the terminating flag, conflicts, Events.

Shared by admission (``admission.py``) and reconciliation (``reconcile.py``).
"""

from __future__ import annotations

import json
import logging

from django.db import transaction

from spiderweb.changelog.context import Actor
from spiderweb.changelog.models import ObjectChange
from spiderweb.changelog.services import object_change_record, object_snapshot
from spiderweb.controllers.config import kube_client
from spiderweb.controllers.mirror.config import mirror_config
from spiderweb.controllers.mirror.documents import (
    MirrorKind,
)
from spiderweb.controllers.mirror.merge import FieldConflict
from spiderweb.ipam.allocation import pool_catalog_invalidate
from spiderweb.ipam.models import IPPool
from spiderweb.k8s import crd
from spiderweb.k8s.client import KubeClient, KubeError, KubeUnavailable

log = logging.getLogger(__name__)

CONFLICT_REASON = "SpiderwebConflict"
REFUSED_REASON = "SpiderwebRefused"


def kubernetes_actor(username: str) -> Actor:
    return Actor(name=f"kubernetes:{username or 'unknown'}"[:150])


def conflict_text(conflicts: tuple[FieldConflict, ...]) -> str:
    parts = [f"{c.path}: portal value {json.dumps(c.portal)} replaced by {json.dumps(c.kubernetes)}"
             for c in conflicts]
    return "Kubernetes and the portal changed the same field; Kubernetes wins and the portal's value is kept in " \
           "the Spiderweb change log: " + "; ".join(parts)


def conflicts_record(mk: MirrorKind, row, obj: dict, conflicts, before: dict, *,
                      client: KubeClient | None = None) -> None:
    """Keep the portal's losing values: a change-log record (full before/after snapshots, summary message) and a
    Warning Event on the CRD once the transaction commits."""
    fields = ", ".join(c.path for c in conflicts)
    object_change_record(instance=row, action=ObjectChange.Action.UPDATE, before=before,
                         message=f"conflict on {fields}: Kubernetes value kept, portal value in prechange data")
    text = conflict_text(conflicts)
    log.warning("%s %s: %s", mk.kind, row.name, text)
    transaction.on_commit(lambda: event_record(client, obj, CONFLICT_REASON, text))


def event_record(client: KubeClient | None, obj: dict, reason: str, message: str) -> None:
    """Best effort: a Warning Event that cannot be written is logged, never fatal."""
    if client is None and not mirror_config().enabled:
        return
    try:
        (client or kube_client()).event(obj, reason=reason, message=message)
    except (KubeError, KubeUnavailable) as exc:
        log.warning("could not record the %s event on %s: %s", reason, crd.meta(obj).get("name"), exc)



def terminating_set(mk: MirrorKind, row, flag: bool) -> None:
    """Set the ``terminating`` flag (no IPAM service does) with a change-log record; allocation skips such pools."""
    with transaction.atomic():
        before = object_snapshot(row)
        mk.model.objects.filter(pk=row.pk).update(terminating=flag)
        row.terminating = flag
        message = "deleted in Kubernetes; kept until it is no longer in use" if flag else "deletion did not happen"
        object_change_record(instance=row, action=ObjectChange.Action.UPDATE, before=before, message=message)
        if mk.model is IPPool:
            transaction.on_commit(pool_catalog_invalidate)

