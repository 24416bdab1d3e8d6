"""SpiderSubnet auto pools (spec §4), the pure part: what a workload asks for, how big its pools are, their names.

Shared by the application controller, the allocator (the CNI side looks the pool up and waits for it) and the
admission rules, so the desired count has one definition and one cluster key (Appendix A3).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from spiderweb.engine.errors import InvalidInput
from spiderweb.engine.keys import (
    ANNO_IPPOOL_IP_NUMBER,
    ANNO_IPPOOL_RECLAIM,
    ANNO_SUBNET,
    ANNO_SUBNETS,
    APP_API_GROUP,
    APP_API_VERSION,
    APP_KIND,
    APP_NAME,
    APP_NAMESPACE,
    LABEL_INTERFACE,
    LABEL_IP_VERSION,
    LABEL_IPPOOL_RECLAIM,
    LABEL_OWNER_APP_GV,
    LABEL_OWNER_APP_KIND,
    LABEL_OWNER_APP_NAME,
    LABEL_OWNER_APP_NAMESPACE,
    LABEL_OWNER_APP_UID,
    LABEL_OWNER_SUBNET,
)
from spiderweb.engine.ranges import RangeSet

# The kinds the application controller serves (spec §4.2); every other top controller is a third-party one.
NATIVE_KINDS = {"Deployment": "apps", "ReplicaSet": "apps", "StatefulSet": "apps", "DaemonSet": "apps",
                "Job": "batch", "CronJob": "batch"}
MAX_NAME = 253
MAX_LABEL_VALUE = 63
_IP_NUMBER = re.compile(r"^(\+?)([0-9]+)$")


@dataclass(frozen=True)
class App:
    """The application an auto pool serves: a workload's identity (spec §2.4 owner-application labels)."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


@dataclass(frozen=True)
class SubnetRequest:
    """One NIC's request for auto pools: the SpiderSubnet per family (``""`` when that family is not asked)."""

    interface: str
    v4: str = ""
    v6: str = ""

    def subnet(self, version: int) -> str:
        return self.v4 if version == 4 else self.v6


@dataclass(frozen=True)
class IPNumber:
    """``ipam.spidernet.io/ippool-ip-number``: ``N`` (fixed) or ``+N`` (replicas + N)."""

    flexible: bool
    n: int

    def desired(self, replicas: int) -> int:
        """The pool size for ``replicas`` (spec §4.3).

        >>> IPNumber(True, 1).desired(2), IPNumber(False, 5).desired(2)
        (3, 5)
        """
        return replicas + self.n if self.flexible else self.n

    def __str__(self) -> str:
        return f"+{self.n}" if self.flexible else str(self.n)


def is_native(kind: str, api_version: str) -> bool:
    """A Kubernetes workload kind the application controller watches (not a third-party controller).

    >>> is_native("Deployment", "apps/v1"), is_native("CloneSet", "apps.kruise.io/v1alpha1")
    (True, False)
    """
    return NATIVE_KINDS.get(kind) == api_version.rpartition("/")[0]


def ip_number_parse(value: str | None, *, cluster_default: int) -> IPNumber:
    """The annotation's value, or ``+<clusterSubnetDefaultFlexibleIPNumber>`` when absent (A3: one key, one rule).

    >>> ip_number_parse("+2", cluster_default=1), ip_number_parse(None, cluster_default=1)
    (IPNumber(flexible=True, n=2), IPNumber(flexible=True, n=1))
    >>> ip_number_parse("++1", cluster_default=1)
    Traceback (most recent call last):
    ...
    spiderweb.engine.errors.InvalidInput: ipam.spidernet.io/ippool-ip-number must be N or +N (N >= 0), got '++1'
    """
    if value is None:
        return IPNumber(True, cluster_default)
    match = _IP_NUMBER.match(value.strip())
    if match is None:
        raise InvalidInput(f"{ANNO_IPPOOL_IP_NUMBER} must be N or +N (N >= 0), got {value!r}")
    return IPNumber(bool(match.group(1)), int(match.group(2)))


def reclaim_parse(value: str | None) -> bool:
    """``ipam.spidernet.io/ippool-reclaim`` (default true)."""
    if value is None or value == "":
        return True
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidInput(f"{ANNO_IPPOOL_RECLAIM} must be true or false, got {value!r}")


def wants_auto_pools(annotations: dict[str, str]) -> bool:
    """The pod (template) asks for SpiderSubnet auto pools."""
    return ANNO_SUBNETS in annotations or ANNO_SUBNET in annotations


def subnet_requests(annotations: dict[str, str], *, default_interface: str = "eth0") -> list[SubnetRequest]:
    """Spec §2.1: ``subnets`` (per NIC) wins over ``subnet`` (``default_interface``); only the first subnet name of
    each family is used; interface and subnet names are unique; every item names at least one family.

    >>> subnet_requests({"ipam.spidernet.io/subnet": '{"ipv4": ["s4"], "ipv6": ["s6"]}'})
    [SubnetRequest(interface='eth0', v4='s4', v6='s6')]
    >>> subnet_requests({"ipam.spidernet.io/subnets": '[{"interface": "net1", "ipv4": ["a"]}]'})
    [SubnetRequest(interface='net1', v4='a', v6='')]
    """
    key = ANNO_SUBNETS if ANNO_SUBNETS in annotations else ANNO_SUBNET
    try:
        raw = json.loads(annotations[key])
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidInput(f"invalid {key} annotation: {exc}") from exc
    items = raw if key == ANNO_SUBNETS else [dict(raw, interface=default_interface) if isinstance(raw, dict) else raw]
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        shape = "list of objects" if key == ANNO_SUBNETS else "object"
        raise InvalidInput(f"invalid {key} annotation: expected a JSON {shape}")
    requests: list[SubnetRequest] = []
    for index, item in enumerate(items):
        interface = item.get("interface") or (default_interface if len(items) == 1 else "")
        if not isinstance(interface, str) or not interface:
            raise InvalidInput(f"{key}[{index}]: every item needs an interface when there are several")
        names = {}
        for version in (4, 6):
            value = item.get(f"ipv{version}") or []
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise InvalidInput(f"{key}[{index}].ipv{version} must be a list of SpiderSubnet names")
            if any(ch in v for v in value for ch in "*?["):
                raise InvalidInput(f"{key}[{index}].ipv{version}: wildcards are not supported for subnets")
            names[version] = value[0] if value else ""
        if not names[4] and not names[6]:
            raise InvalidInput(f"{key}[{index}]: name an ipv4 or ipv6 SpiderSubnet")
        requests.append(SubnetRequest(interface=interface, v4=names[4], v6=names[6]))
    if len({r.interface for r in requests}) != len(requests):
        raise InvalidInput(f"{key}: interface names must be unique")
    subnets = [r.subnet(v) for r in requests for v in (4, 6) if r.subnet(v)]
    if len(set(subnets)) != len(subnets):
        raise InvalidInput(f"{key}: a SpiderSubnet may serve only one interface")
    return requests


def auto_pool_name(version: int, app_name: str, interface: str, app_uid: str) -> str:
    """``auto<4|6>-<app>-<nic>-<first 5 chars of the UID's last segment>``, the app name cut to fit 253 (C7).

    >>> auto_pool_name(4, "Test-App-1", "eth0", "0d3c4f6e-1b2a-4c3d-9e8f-a5bd3c2e1f00")
    'auto4-test-app-1-eth0-a5bd3'
    >>> len(auto_pool_name(6, "x" * 300, "net1", "u-12345"))
    253
    """
    suffix = f"-{interface.lower()}-{app_uid.rsplit('-', 1)[-1][:5]}"
    prefix = f"auto{version}-"
    room = MAX_NAME - len(prefix) - len(suffix)
    return f"{prefix}{app_name.lower()[:room]}{suffix}"


def auto_pool_labels(app: App, *, subnet: str, interface: str, version: int, reclaim: bool) -> dict[str, str]:
    """The owner labels of spec §2.4 (``kubectl get spiderippool -l ipam.spidernet.io/owner-application-name=web``).

    >>> app = App("apps/v1", "Deployment", "default", "web", "u1")
    >>> auto_pool_labels(app, subnet="s4", interface="eth0", version=4, reclaim=True)[LABEL_OWNER_APP_GV]
    'apps_v1'
    """
    return {
        LABEL_OWNER_SUBNET: subnet,
        LABEL_OWNER_APP_GV: app.api_version.replace("/", "_"),
        LABEL_OWNER_APP_KIND: app.kind,
        LABEL_OWNER_APP_NAMESPACE: app.namespace,
        LABEL_OWNER_APP_NAME: app.name,
        LABEL_OWNER_APP_UID: app.uid,
        LABEL_INTERFACE: interface,
        LABEL_IP_VERSION: f"IPv{version}",
        LABEL_IPPOOL_RECLAIM: "true" if reclaim else "false",
    }


def auto_pool_pod_affinity(app: App) -> dict:
    """``spec.podAffinity``: the five ``ipam.spidernet.io/app-*`` keys, matched against the pod's top controller."""
    return {"matchLabels": {APP_API_GROUP: app.group, APP_API_VERSION: app.version, APP_KIND: app.kind,
                            APP_NAMESPACE: app.namespace, APP_NAME: app.name}}


def app_name_fits(app: App) -> bool:
    """C7: an application whose name does not fit the 63-character owner-name label gets no auto pool."""
    return len(app.name) <= MAX_LABEL_VALUE


INSUFFICIENT_SUBNET = "insufficient subnet FreeIPs"
INSUFFICIENT_POOL = "IPPool available free IPs are not enough"


@dataclass(frozen=True)
class Resize:
    """The pool's new addresses and, when the target could not be reached yet, why (the caller retries)."""

    ips: RangeSet
    shortfall: str = ""


def resize(current: RangeSet, *, desired: int, subnet_free: RangeSet, in_use: RangeSet) -> Resize:
    """Spec §4.5 pre-allocation: grow with the lowest free subnet addresses (as many as there are: pods that fit can
    start while the rest waits); shrink by dropping only addresses no pod holds, lowest first, never below what is
    in use.

    >>> from spiderweb.engine.ranges import RangeSet as R
    >>> pool = R.parse(["10.0.0.10-10.0.0.12"])
    >>> resize(pool, desired=5, subnet_free=R.parse(["10.0.0.13-10.0.0.20"]), in_use=R.empty(4)).ips.to_strings()
    ['10.0.0.10-10.0.0.14']
    >>> resize(pool, desired=1, subnet_free=R.empty(4), in_use=R.parse(["10.0.0.11"])).ips.to_strings()
    ['10.0.0.11']
    >>> r = resize(pool, desired=9, subnet_free=R.parse(["10.0.0.13"]), in_use=R.empty(4))
    >>> r.ips.count(), r.shortfall
    (4, 'insufficient subnet FreeIPs: 6 more needed, 1 free')
    """
    have = current.count()
    if desired > have:
        extra = subnet_free.take(min(desired - have, subnet_free.count()))
        grown = current.union(extra)
        missing = desired - grown.count()
        return Resize(grown, f"{INSUFFICIENT_SUBNET}: {desired - have} more needed, {subnet_free.count()} free"
                      if missing else "")
    if desired < have:
        removable = current.subtract(in_use)
        drop = removable.take(min(have - desired, removable.count()))
        shrunk = current.subtract(drop)
        if shrunk.count() > desired:
            return Resize(shrunk, f"{INSUFFICIENT_POOL}: {shrunk.count() - desired} more addresses are in use than "
                                  f"the {desired} wanted")
        return Resize(shrunk)
    return Resize(current)
