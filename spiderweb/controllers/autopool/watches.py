"""What the application controller watches: the six native workload kinds of spec §4.2."""

from __future__ import annotations

from spiderweb.controllers.autopool.services import application_event
from spiderweb.controllers.config import kubernetes_configured
from spiderweb.controllers.registry import Watch
from spiderweb.k8s import workloads
from spiderweb.k8s.watch import WatchEvent


def _listener(kind: str):
    def handle(event: WatchEvent) -> None:
        application_event(kind, event)
    return handle


WATCHES = [
    Watch(controller="autopool", resource=resource, on_event=_listener(kind), enabled=kubernetes_configured)
    for kind, resource in workloads.NATIVE.items()
]
