"""What the coordinator controller watches: SpiderCoordinators, ServiceCIDRs and the kube-controller-manager pod.

Any change of a source re-syncs the SpiderCoordinator pods use (Spiderpool re-syncs the same instance). ConfigMaps
(``kubeadm-config``, ``cilium-config``) are not watched: the controller may read ConfigMaps in ``kube-system`` only,
so a cluster-wide watch would be refused; the beat resync (``SPIDERPOOL_COORDINATOR_INFORMER_RESYNC_PERIOD``) picks
their changes up, as Spiderpool's informer resync does.
"""

from __future__ import annotations

from spiderweb.controllers.coordinator.config import coordinator_config
from spiderweb.controllers.coordinator.services import coordinator_enqueue
from spiderweb.controllers.registry import Watch
from spiderweb.k8s import crd, resources
from spiderweb.k8s.crd import meta
from spiderweb.k8s.watch import WatchEvent

KCM_LABEL = ("component", "kube-controller-manager")


def _coordinator_event(event: WatchEvent) -> None:
    coordinator_enqueue(event.name)


def _coordinator_relist(items: list[dict]) -> None:
    for name in sorted({meta(o).get("name") for o in items} - {None}):
        coordinator_enqueue(name)


def _source_event(event: WatchEvent) -> None:
    coordinator_enqueue(coordinator_config().name)


def _source_relist(items: list[dict]) -> None:
    coordinator_enqueue(coordinator_config().name)


def _pod_event(event: WatchEvent) -> None:
    """Only the kube-controller-manager pod's flags matter here; every other pod is someone else's business."""
    if (meta(event.object).get("labels") or {}).get(KCM_LABEL[0]) == KCM_LABEL[1]:
        coordinator_enqueue(coordinator_config().name)


def _enabled() -> bool:
    return coordinator_config().enabled


WATCHES = [
    Watch(controller="coordinator", resource=crd.SPIDER_COORDINATOR, on_event=_coordinator_event,
          on_relist=_coordinator_relist, enabled=_enabled),
    Watch(controller="coordinator", resource=resources.SERVICE_CIDR, on_event=_source_event,
          on_relist=_source_relist, enabled=_enabled),
    Watch(controller="coordinator", resource=resources.POD, on_event=_pod_event, enabled=_enabled),
]
