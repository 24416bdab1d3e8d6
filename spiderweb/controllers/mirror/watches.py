"""What the mirror watches: the Spiderpool kinds it stores (pools, subnets, reservations, coordinators).

A change of anything the mirror owns, or a DELETED, is a reason to reconcile that name (level-based: the task
reads both sides); a status-only change is not. A relist also enqueues the rows that came from Kubernetes but are
no longer listed (their DELETED events are lost for good once the cursor expired).
"""

from __future__ import annotations

from spiderweb.controllers.mirror.config import mirror_config
from spiderweb.controllers.mirror.documents import MIRROR_KINDS
from spiderweb.controllers.mirror.reconcile import event_needs_reconcile
from spiderweb.controllers.mirror.signals import mirror_in_enqueue
from spiderweb.controllers.registry import Watch
from spiderweb.k8s import crd
from spiderweb.k8s.watch import WatchEvent


def _on_event(kind: str):
    def handle(event: WatchEvent) -> None:
        if event_needs_reconcile(kind, event.object, event.type):
            mirror_in_enqueue(kind, event.name)
    return handle


def _on_relist(kind: str):
    def relist(items: list[dict]) -> None:
        names = {crd.meta(obj).get("name") for obj in items}
        for name in sorted(n for n in names if n):
            mirror_in_enqueue(kind, name)
        if kind in MIRROR_KINDS:
            gone = MIRROR_KINDS[kind].model.objects.exclude(k8s_uid="").exclude(name__in=names)
            for name in gone.values_list("name", flat=True):
                mirror_in_enqueue(kind, name)
    return relist


def _enabled() -> bool:
    return mirror_config().enabled


WATCHES = [
    Watch(controller="mirror", resource=crd.KINDS[kind], on_event=_on_event(kind), on_relist=_on_relist(kind),
          enabled=_enabled)
    for kind in ("SpiderSubnet", "SpiderIPPool", "SpiderReservedIP", "SpiderCoordinator")
]
