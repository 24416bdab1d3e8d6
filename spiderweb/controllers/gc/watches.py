"""What the GC watches: every pod (deleted, terminating, finished → a trace) and every node (a node that goes away
takes its pods' kubelet with it: a full scan finds what no CNI DEL will ever release)."""

from __future__ import annotations

from spiderweb.controllers.gc.config import gc_config
from spiderweb.controllers.gc.services import gc_scan_request, pod_event_trace
from spiderweb.controllers.registry import Watch
from spiderweb.k8s import resources
from spiderweb.k8s.watch import WatchEvent


def _pod_event(event: WatchEvent) -> None:
    pod_event_trace(event)


def _pods_relisted(items: list[dict]) -> None:
    """After a relist, DELETED events may be lost for good: the full scan compares everything by level."""
    gc_scan_request()


def _node_event(event: WatchEvent) -> None:
    if event.type == "DELETED":
        gc_scan_request()


def _enabled() -> bool:
    return gc_config().enabled


WATCHES = [
    Watch(controller="gc", resource=resources.POD, on_event=_pod_event, on_relist=_pods_relisted, enabled=_enabled),
    Watch(controller="gc", resource=resources.NODE, on_event=_node_event, enabled=_enabled),
]
