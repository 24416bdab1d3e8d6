"""Where a cluster's pod and service CIDRs are written down, and the SpiderCoordinator status they make (spec §8.7).

Pure functions on the API's JSON dicts (and on CNI configuration file contents), so every rule is testable
without a server; ``spiderweb.controllers.coordinator`` reads the objects and writes the status. Never imports
Django.

Sources, in Spiderpool's order: the pod CIDR type (``podCIDRType``, or for ``auto`` the name of the node's first CNI
configuration), the cluster's own CIDRs (``kube-system/kubeadm-config``, else the flags of the
``component=kube-controller-manager`` pod), then per type the overlay's pools (Calico IPPools, Cilium's
configuration), and the service CIDRs (``ServiceCIDR`` objects when the API has them, else the cluster's own).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spiderweb.k8s.resources import Resource

AUTO, CLUSTER, CALICO, CILIUM, NONE = "auto", "cluster", "calico", "cilium", "none"
SYNCED, NOT_READY = "Synced", "NotReady"
KUBE_SYSTEM = "kube-system"
KUBEADM_CONFIG = "kubeadm-config"
KCM_SELECTOR = "component=kube-controller-manager"
CALICO_IPPOOL = Resource("crd.projectcalico.org", "v1", "IPPool", "ippools", namespaced=False)
CILIUM_POD_IPPOOL = Resource("cilium.io", "v2alpha1", "CiliumPodIPPool", "ciliumpodippools", namespaced=False)
CNI_CONFIG_SUFFIXES = (".conf", ".conflist")

# Event reasons (Spiderpool's).
EVENT_CLUSTER_NOT_READY = "ClusterNotReady"
EVENT_CALICO_NOT_READY = "CalicoNotReady"
EVENT_CILIUM_NOT_READY = "CiliumNotReady"
EVENT_CNI_NOT_FOUND = "FoundCNIErr"
EVENT_POD_CIDR_TYPE_CHANGED = "PodCIDRTypeChanged"

_KUBEADM_POD = re.compile(r"podSubnet:\s*(\S.*)")
_KUBEADM_SERVICE = re.compile(r"serviceSubnet:\s*(\S.*)")
_KCM_POD = re.compile(r"--cluster-cidr=(.*)")
_KCM_SERVICE = re.compile(r"--service-cluster-ip-range=(.*)")


class DiscoveryFailed(Exception):
    """The status cannot be told: ``reason`` goes into ``status.reason``, ``event`` is the Warning Event's reason."""

    def __init__(self, reason: str, event: str = EVENT_CLUSTER_NOT_READY) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event = event


def cidr_list(text: str) -> list[str]:
    """The valid CIDRs of a comma- (or space-) separated list, in order; anything else is skipped, as Spiderpool does.

    >>> cidr_list("10.244.0.0/16, fd00:10:244::/56,junk")
    ['10.244.0.0/16', 'fd00:10:244::/56']
    """
    out = []
    for item in re.split(r"[,\s]+", text.strip().strip('"').strip("'")):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            continue
        out.append(item)
    return out


# ------------------------------------------------------------------------------------------------- CNI type


def default_cni_name(files: Iterable[tuple[str, str]]) -> str:
    """The ``name`` inside the node's default CNI configuration: the first ``.conf``/``.conflist`` file by name,
    Multus' own ``00-multus*`` skipped (what the kubelet's runtime would pick). ``""`` when there is none.
    ``files`` are ``(file name, contents)``; a file that is not a JSON object raises :class:`DiscoveryFailed`.

    >>> default_cni_name([("10-calico.conflist", '{"name": "k8s-pod-network"}'), ("00-multus.conf", "{}")])
    'k8s-pod-network'
    >>> default_cni_name([("README", "x")])
    ''
    """
    candidates = sorted((name, text) for name, text in files
                        if name.endswith(CNI_CONFIG_SUFFIXES) and "00-multus" not in name)
    if not candidates:
        return ""
    name, text = candidates[0]
    try:
        config = json.loads(text)
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise DiscoveryFailed(f"the default CNI configuration {name} is not a JSON object", EVENT_CNI_NOT_FOUND)
    return str(config.get("name") or "")


def pod_cidr_type_for_cni(name: str) -> str:
    """The ``podCIDRType`` that ``auto`` means for a default network named ``name`` (spec §8.7 step 1).

    >>> [pod_cidr_type_for_cni(n) for n in ("calico", "k8s-pod-network", "cilium", "flannel", "cbr0", "")]
    ['calico', 'calico', 'cilium', 'cluster', 'none', 'none']
    """
    if name in ("calico", "k8s-pod-network"):
        return CALICO
    if name == "cilium":
        return CILIUM
    if name == "flannel":
        return CLUSTER
    return NONE


# ------------------------------------------------------------------------------------------- cluster CIDRs


@dataclass(frozen=True)
class ClusterCIDRs:
    """The cluster's own pod and service CIDRs and where they were read (``source`` ``""``: nowhere)."""

    pod: tuple[str, ...] = ()
    service: tuple[str, ...] = ()
    source: str = ""


def kubeadm_cidrs(configmap: Mapping[str, Any]) -> ClusterCIDRs:
    """``podSubnet`` / ``serviceSubnet`` of kubeadm's ``ClusterConfiguration`` (any data key).

    >>> cm = {"data": {"ClusterConfiguration": "networking:\\n  podSubnet: 10.244.0.0/16\\n"
    ...                "  serviceSubnet: 10.96.0.0/12,fd00:96::/108\\n"}}
    >>> kubeadm_cidrs(cm)
    ClusterCIDRs(pod=('10.244.0.0/16',), service=('10.96.0.0/12', 'fd00:96::/108'), source='kube-system/kubeadm-config')
    """
    pod: list[str] = []
    service: list[str] = []
    for text in (configmap.get("data") or {}).values():
        if not pod and (match := _KUBEADM_POD.search(str(text))):
            pod = cidr_list(match.group(1))
        if not service and (match := _KUBEADM_SERVICE.search(str(text))):
            service = cidr_list(match.group(1))
    return ClusterCIDRs(tuple(pod), tuple(service), f"{KUBE_SYSTEM}/{KUBEADM_CONFIG}")


def kcm_cidrs(pod: Mapping[str, Any]) -> ClusterCIDRs:
    """``--cluster-cidr`` / ``--service-cluster-ip-range`` of the kube-controller-manager pod's first container
    (command first, then args).

    >>> kcm = {"metadata": {"namespace": "kube-system", "name": "kcm-m1"}, "spec": {"containers": [{"command": [
    ...     "kube-controller-manager", "--cluster-cidr=10.244.0.0/16", "--service-cluster-ip-range=10.0.0.0/24"]}]}}
    >>> kcm_cidrs(kcm)
    ClusterCIDRs(pod=('10.244.0.0/16',), service=('10.0.0.0/24',), source='pod kube-system/kcm-m1')
    """
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    words = [str(w) for w in (containers[0].get("command") or []) + (containers[0].get("args") or [])]
    found: dict[str, list[str]] = {}
    for word in words:
        for key, pattern in (("pod", _KCM_POD), ("service", _KCM_SERVICE)):
            if key not in found and (match := pattern.match(word)):
                found[key] = cidr_list(match.group(1))
    meta = pod.get("metadata") or {}
    return ClusterCIDRs(tuple(found.get("pod", ())), tuple(found.get("service", ())),
                        f"pod {meta.get('namespace')}/{meta.get('name')}")


def _by_creation(items: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(items, key=lambda o: (str((o.get("metadata") or {}).get("creationTimestamp") or ""),
                                        str((o.get("metadata") or {}).get("name") or "")))


def service_cidrs(items: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every CIDR of the ``ServiceCIDR`` objects, oldest object first (the ``kubernetes`` default comes first).

    >>> service_cidrs([{"metadata": {"name": "extra", "creationTimestamp": "2026-02-01T00:00:00Z"},
    ...                 "spec": {"cidrs": ["10.1.0.0/24"]}},
    ...                {"metadata": {"name": "kubernetes", "creationTimestamp": "2026-01-01T00:00:00Z"},
    ...                 "spec": {"cidrs": ["10.0.0.0/24", "fd00::/108"]}}])
    ['10.0.0.0/24', 'fd00::/108', '10.1.0.0/24']
    """
    out: list[str] = []
    for item in _by_creation(items):
        if (item.get("metadata") or {}).get("deletionTimestamp"):
            continue
        for cidr in (item.get("spec") or {}).get("cidrs") or []:
            out += [c for c in cidr_list(str(cidr)) if c not in out]
    return out


def calico_cidrs(items: Iterable[Mapping[str, Any]]) -> list[str]:
    """CIDRs of the Calico IPPools that are not disabled, oldest first.

    >>> calico_cidrs([{"metadata": {"creationTimestamp": "2"}, "spec": {"cidr": "10.2.0.0/16"}},
    ...               {"metadata": {"creationTimestamp": "1"}, "spec": {"cidr": "10.1.0.0/16"}},
    ...               {"metadata": {"creationTimestamp": "0"}, "spec": {"cidr": "10.0.0.0/16", "disabled": True}}])
    ['10.1.0.0/16', '10.2.0.0/16']
    """
    return [c for item in _by_creation(items) if not (item.get("spec") or {}).get("disabled")
            for c in cidr_list(str((item.get("spec") or {}).get("cidr") or ""))]


def cilium_cidrs(config: Mapping[str, Any], *, cluster: ClusterCIDRs,
                 pod_ippools: Iterable[Mapping[str, Any]] = ()) -> list[str]:
    """Pod CIDRs of Cilium from its ``cilium-config`` ConfigMap (``ipam`` mode decides where they are).

    >>> cilium_cidrs({"data": {"ipam": "cluster-pool", "cluster-pool-ipv4-cidr": "10.0.0.0/8"}},
    ...              cluster=ClusterCIDRs())
    ['10.0.0.0/8']
    >>> cilium_cidrs({"data": {"ipam": "eni"}}, cluster=ClusterCIDRs())
    Traceback (most recent call last):
    ...
    spiderweb.k8s.clustercidr.DiscoveryFailed: unsupported Cilium IPAM mode 'eni'
    """
    data = config.get("data") or {}
    mode = str(data.get("ipam") or "")
    if mode in ("cluster-pool", "cluster-pool-v2beta"):
        return [c for key in ("cluster-pool-ipv4-cidr", "cluster-pool-ipv6-cidr")
                for c in cidr_list(str(data.get(key) or ""))]
    if mode == "multi-pool":
        out: list[str] = []
        for item in _by_creation(pod_ippools):
            spec = item.get("spec") or {}
            for family in ("ipv4", "ipv6"):
                out += [c for cidr in (spec.get(family) or {}).get("cidrs") or [] for c in cidr_list(str(cidr))]
        return out
    if mode == "kubernetes":
        if not cluster.pod:
            raise DiscoveryFailed("Cilium uses the cluster's pod CIDRs (ipam: kubernetes), which cannot be found "
                                  "in kubeadm-config nor in the kube-controller-manager's --cluster-cidr")
        return list(cluster.pod)
    raise DiscoveryFailed(f"unsupported Cilium IPAM mode {mode!r}", EVENT_CILIUM_NOT_READY)


# ------------------------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class Observed:
    """What the controller read from the cluster for one SpiderCoordinator (``None``: not found / not served)."""

    pod_cidr_type: str  # the effective type (``auto`` already resolved)
    cluster: ClusterCIDRs = field(default_factory=ClusterCIDRs)
    service_cidr_objects: tuple[Mapping[str, Any], ...] = ()
    calico_ippools: tuple[Mapping[str, Any], ...] | None = None  # None: Calico's IPPool API is not served
    cilium_config: Mapping[str, Any] | None = None
    cilium_pod_ippools: tuple[Mapping[str, Any], ...] = ()


def status_synced(overlay: list[str], service: list[str]) -> dict:
    """A ``Synced`` status."""
    return {"phase": SYNCED, "reason": "", "overlayPodCIDR": list(overlay), "serviceCIDR": list(service)}


def status_not_ready(reason: str) -> dict:
    """A ``NotReady`` status: both CIDR lists are cleared, as Spiderpool does, so nothing routes on stale data."""
    return {"phase": NOT_READY, "reason": reason, "overlayPodCIDR": [], "serviceCIDR": []}


def coordinator_status(observed: Observed) -> dict:
    """The status of spec §8.7 from what was observed; raises :class:`DiscoveryFailed` when it cannot be told.

    >>> coordinator_status(Observed("cluster", ClusterCIDRs(("10.244.0.0/16",), ("10.96.0.0/12",), "kcm"),
    ...                             service_cidr_objects=({"spec": {"cidrs": ["10.0.0.0/24"]}},)))
    {'phase': 'Synced', 'reason': '', 'overlayPodCIDR': ['10.244.0.0/16'], 'serviceCIDR': ['10.0.0.0/24']}
    >>> coordinator_status(Observed("none"))
    Traceback (most recent call last):
    ...
    spiderweb.k8s.clustercidr.DiscoveryFailed: cannot tell the service CIDRs: no ServiceCIDR objects, no \
kube-system/kubeadm-config ConfigMap and no kube-controller-manager pod (label component=kube-controller-manager)
    """
    cluster = observed.cluster
    kind = observed.pod_cidr_type
    if kind == CLUSTER:
        if not cluster.pod:
            raise DiscoveryFailed(_missing("pod CIDRs", cluster, "podSubnet", "--cluster-cidr"))
        overlay = list(cluster.pod)
    elif kind == CALICO:
        if observed.calico_ippools is None:
            raise DiscoveryFailed("podCIDRType is calico but Calico is not installed (no IPPool API "
                                  "crd.projectcalico.org/v1)", EVENT_CALICO_NOT_READY)
        overlay = calico_cidrs(observed.calico_ippools)
    elif kind == CILIUM:
        if observed.cilium_config is None:
            raise DiscoveryFailed("podCIDRType is cilium but Cilium's ConfigMap cannot be found",
                                  EVENT_CILIUM_NOT_READY)
        overlay = cilium_cidrs(observed.cilium_config, cluster=cluster, pod_ippools=observed.cilium_pod_ippools)
    elif kind == NONE:
        overlay = []
    else:
        raise DiscoveryFailed(f"unknown podCIDRType {kind!r}")
    services = service_cidrs(observed.service_cidr_objects) or list(cluster.service)
    if not services:
        raise DiscoveryFailed(_missing("service CIDRs", cluster, "serviceSubnet", "--service-cluster-ip-range",
                                       service_cidr_api=True))
    return status_synced(overlay, services)


def _missing(what: str, cluster: ClusterCIDRs, kubeadm_key: str, flag: str, *, service_cidr_api: bool = False) -> str:
    if cluster.source:
        where = (f"{cluster.source} has no {kubeadm_key}" if "kubeadm" in cluster.source
                 else f"{cluster.source} has no {flag} flag")
        return f"cannot tell the {what}: {'no ServiceCIDR objects and ' if service_cidr_api else ''}{where}"
    return (f"cannot tell the {what}: {'no ServiceCIDR objects, ' if service_cidr_api else ''}no "
            f"{KUBE_SYSTEM}/{KUBEADM_CONFIG} ConfigMap and no kube-controller-manager pod (label {KCM_SELECTOR})")


def status_equal(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Two statuses say the same (a missing ``reason`` or list is empty).

    >>> status_equal({"phase": "NotReady"}, status_synced([], []))
    False
    >>> status_equal({"phase": "Synced", "serviceCIDR": ["10.0.0.0/24"]}, status_synced([], ["10.0.0.0/24"]))
    True
    """
    def norm(s):
        s = s or {}
        return (s.get("phase") or "", s.get("reason") or "", list(s.get("overlayPodCIDR") or []),
                list(s.get("serviceCIDR") or []))
    return norm(a) == norm(b)
