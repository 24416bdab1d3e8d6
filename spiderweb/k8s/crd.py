"""The Spiderpool CRD contract: group, version, kinds, finalizer, and helpers on object metadata.

Reads and writes go through :class:`spiderweb.k8s.client.KubeClient`, which serves these kinds like any other.
Never imports Django.
"""

from __future__ import annotations

from spiderweb.k8s.resources import Resource

GROUP = "spiderpool.spidernet.io"
VERSION = "v2beta1"
API_VERSION = f"{GROUP}/{VERSION}"
FINALIZER = "spiderpool.spidernet.io"
EVENT_COMPONENT = "spiderweb"


SPIDER_IPPOOL = Resource(GROUP, VERSION, "SpiderIPPool", "spiderippools", namespaced=False, status_subresource=True)
SPIDER_SUBNET = Resource(GROUP, VERSION, "SpiderSubnet", "spidersubnets", namespaced=False, status_subresource=True)
SPIDER_RESERVEDIP = Resource(GROUP, VERSION, "SpiderReservedIP", "spiderreservedips", namespaced=False)
SPIDER_ENDPOINT = Resource(GROUP, VERSION, "SpiderEndpoint", "spiderendpoints")
SPIDER_MULTUSCONFIG = Resource(GROUP, VERSION, "SpiderMultusConfig", "spidermultusconfigs")
SPIDER_COORDINATOR = Resource(GROUP, VERSION, "SpiderCoordinator", "spidercoordinators", namespaced=False,
                              status_subresource=True)

KINDS: dict[str, Resource] = {
    k.kind: k
    for k in (SPIDER_IPPOOL, SPIDER_SUBNET, SPIDER_RESERVEDIP, SPIDER_ENDPOINT, SPIDER_MULTUSCONFIG, SPIDER_COORDINATOR)
}
# Kinds with admission webhooks, by the name used in the webhook path.
WEBHOOK_KINDS: dict[str, Resource] = {
    k.webhook_name: k
    for k in (SPIDER_SUBNET, SPIDER_IPPOOL, SPIDER_RESERVEDIP, SPIDER_COORDINATOR, SPIDER_MULTUSCONFIG)
}


def meta(obj: dict | None) -> dict:
    """``metadata`` of an object, ``{}`` when absent."""
    return (obj or {}).get("metadata") or {}


def uid_of(obj: dict | None) -> str:
    """``metadata.uid`` (``""`` when absent): which incarnation of a name an object is."""
    return str(meta(obj).get("uid") or "")


def resource_version_of(obj: dict | None) -> str:
    """``metadata.resourceVersion`` (``""`` when absent): the precondition of the next write."""
    return str(meta(obj).get("resourceVersion") or "")


def is_terminating(obj: dict | None) -> bool:
    """A ``deletionTimestamp`` is set: the object waits for its finalizers."""
    return bool(meta(obj).get("deletionTimestamp"))


