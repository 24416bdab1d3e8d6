"""What the SpiderMultusConfig controller watches: SMCs, and the NADs they own (a hand edit or delete of a NAD is
put right). Keys are ``namespace/name`` of the SMC."""

from __future__ import annotations

from spiderweb.controllers.multus.config import multus_config
from spiderweb.controllers.multus.services import multusconfig_enqueue
from spiderweb.controllers.registry import Watch
from spiderweb.k8s import crd, nad
from spiderweb.k8s.crd import meta
from spiderweb.k8s.resources import NETWORK_ATTACHMENT_DEFINITION
from spiderweb.k8s.watch import WatchEvent


def _smc_event(event: WatchEvent) -> None:
    multusconfig_enqueue(event.namespace, event.name)


def _smc_relist(items: list[dict]) -> None:
    for smc in items:
        multusconfig_enqueue(meta(smc)["namespace"], meta(smc)["name"])


def _nad_event(event: WatchEvent) -> None:
    owner = nad.controller_owner(event.object)
    if owner is not None and owner.get("kind") == crd.SPIDER_MULTUSCONFIG.kind:
        multusconfig_enqueue(event.namespace, str(owner.get("name")))


def _enabled() -> bool:
    return multus_config().enabled


WATCHES = [
    Watch(controller="multus", resource=crd.SPIDER_MULTUSCONFIG, on_event=_smc_event, on_relist=_smc_relist,
          enabled=_enabled),
    Watch(controller="multus", resource=NETWORK_ATTACHMENT_DEFINITION, on_event=_nad_event, enabled=_enabled),
]
