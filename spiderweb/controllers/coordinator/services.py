"""SpiderCoordinator status (spec §8.7): read the cluster, compute the status, write it to the CRD and its mirror.

``coordinator_reconcile(name)`` is level-based and safe to run twice: it reads the SpiderCoordinator and every
source of CIDRs fresh (the node's CNI configuration for ``podCIDRType: auto``, ``kube-system/kubeadm-config`` or the
kube-controller-manager pod's flags, ``ServiceCIDR`` objects, Calico IPPools, Cilium's ConfigMap), computes the status
with the pure rules of :mod:`spiderweb.k8s.clustercidr`, patches the CRD's status only when it differs, and stores it
on the portal's row, which the agents read. When the status cannot be told the phase is ``NotReady`` with the reason
(the agents then refuse coordinator work) and a Warning Event says why, once per change.
"""

from __future__ import annotations

import logging
import os

from spiderweb.controllers.config import kube_client
from spiderweb.controllers.coordinator.config import CoordinatorControllerConfig, coordinator_config
from spiderweb.controllers.coordinator.models import ObservedCoordinator
from spiderweb.controllers.enqueue import task_send
from spiderweb.controllers.leases import lease_held
from spiderweb.engine.errors import Unavailable
from spiderweb.ipam import services as ipam_services
from spiderweb.k8s import clustercidr as cc
from spiderweb.k8s import crd, resources
from spiderweb.k8s.client import KubeClient, KubeError, KubeUnavailable

log = logging.getLogger(__name__)

RECONCILE_TASK = "workers.coordinator.coordinator_reconcile_task"
MAX_CNI_CONFIG_BYTES = 1 << 20


def coordinator_enqueue(name: str) -> None:
    """Ask a worker to reconcile SpiderCoordinator ``name``."""
    task_send(RECONCILE_TASK, name)


def cni_config_files(directory: str) -> list[tuple[str, str]]:
    """``(file name, contents)`` of the CNI configuration files in ``directory`` (the node's ``/etc/cni/net.d``,
    mounted into the worker); :class:`DiscoveryFailed` when the directory cannot be read."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise cc.DiscoveryFailed(f"podCIDRType is auto but the CNI configuration directory {directory} cannot be "
                                 f"read: {exc.strerror or exc}", cc.EVENT_CNI_NOT_FOUND) from None
    files = []
    for name in names:
        if not name.endswith(cc.CNI_CONFIG_SUFFIXES):
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8", errors="replace") as handle:
                files.append((name, handle.read(MAX_CNI_CONFIG_BYTES)))
        except OSError as exc:
            raise cc.DiscoveryFailed(f"cannot read the CNI configuration {directory}/{name}: {exc.strerror or exc}",
                                     cc.EVENT_CNI_NOT_FOUND) from None
    return files


def pod_cidr_type_effective(obj: dict, config: CoordinatorControllerConfig) -> str:
    """``spec.podCIDRType``, with ``auto`` resolved from the name of the node's default CNI configuration."""
    kind = str((obj.get("spec") or {}).get("podCIDRType") or cc.AUTO)
    if kind != cc.AUTO:
        return kind
    return cc.pod_cidr_type_for_cni(cc.default_cni_name(cni_config_files(config.cni_config_dir)))


def cluster_cidrs(client: KubeClient) -> cc.ClusterCIDRs:
    """The cluster's own CIDRs: ``kube-system/kubeadm-config``, else the kube-controller-manager pod's flags."""
    configmap = client.get(resources.CONFIGMAP, cc.KUBEADM_CONFIG, namespace=cc.KUBE_SYSTEM)
    if configmap is not None:
        return cc.kubeadm_cidrs(configmap)
    pods, _ = client.list(resources.POD, label_selector=cc.KCM_SELECTOR)
    live = [p for p in pods if not crd.is_terminating(p)]
    return cc.kcm_cidrs(live[0]) if live else cc.ClusterCIDRs()


def cluster_observe(obj: dict, client: KubeClient, config: CoordinatorControllerConfig) -> cc.Observed:
    """Read every source the status of ``obj`` depends on (only what its pod CIDR type needs)."""
    kind = pod_cidr_type_effective(obj, config)
    calico = cilium = None
    cilium_pools: tuple = ()
    if kind == cc.CALICO and client.discover(cc.CALICO_IPPOOL.api_version, cc.CALICO_IPPOOL.kind) is not None:
        calico = tuple(client.list(cc.CALICO_IPPOOL)[0])
    if kind == cc.CILIUM:
        namespace, name = config.cilium_configmap
        cilium = client.get(resources.CONFIGMAP, name, namespace=namespace)
        multi_pool = cilium is not None and (cilium.get("data") or {}).get("ipam") == "multi-pool"
        if multi_pool and client.discover(cc.CILIUM_POD_IPPOOL.api_version, cc.CILIUM_POD_IPPOOL.kind) is not None:
            cilium_pools = tuple(client.list(cc.CILIUM_POD_IPPOOL)[0])
    service_cidrs, _ = client.list(resources.SERVICE_CIDR)  # an API server without the kind answers an empty list
    return cc.Observed(pod_cidr_type=kind, cluster=cluster_cidrs(client), service_cidr_objects=tuple(service_cidrs),
                       calico_ippools=calico, cilium_config=cilium, cilium_pod_ippools=cilium_pools)


def coordinator_reconcile(name: str, *, client: KubeClient | None = None,
                          config: CoordinatorControllerConfig | None = None) -> str:
    """Bring SpiderCoordinator ``name``'s status (CRD and portal row) in line with the cluster; returns what it did.

    One reconcile per name at a time (a lease): a second one raises :class:`Unavailable` and is retried, so no
    change is lost and no status flaps between two readers.
    """
    client = client or kube_client()
    config = config or coordinator_config()
    with lease_held(f"coordinator-status-{name}", ttl=60) as mine:
        if not mine:
            raise Unavailable(f"another reconcile of SpiderCoordinator {name} is running")
        return _reconcile(name, client, config)


def _reconcile(name: str, client: KubeClient, config: CoordinatorControllerConfig) -> str:
    obj = client.get(crd.SPIDER_COORDINATOR, name)
    if obj is None:
        ObservedCoordinator.objects.filter(name=name).delete()
        return "absent"
    if crd.is_terminating(obj):
        return "terminating"
    _pod_cidr_type_change_record(obj, client)
    event = None
    try:
        status = cc.coordinator_status(cluster_observe(obj, client, config))
    except cc.DiscoveryFailed as exc:
        status, event = cc.status_not_ready(exc.reason), exc.event
    except KubeUnavailable:
        raise
    except KubeError as exc:  # RBAC or a refused read: a reason to show, not a retry loop
        status = cc.status_not_ready(f"cannot read the cluster's CIDRs: {exc.message}")
        event = cc.EVENT_CLUSTER_NOT_READY
    changed = not cc.status_equal(obj.get("status"), status)
    if changed:
        client.patch(crd.SPIDER_COORDINATOR, name, {"status": status}, subresource="status")
        log.info("SpiderCoordinator %s: %s %s", name, status["phase"], status["reason"] or
                 f"overlayPodCIDR={status['overlayPodCIDR']} serviceCIDR={status['serviceCIDR']}")
        if event is not None:
            client.event_best_effort(obj, reason=event, message=status["reason"], type_="Warning")
    if ipam_services.coordinator_status_set(name=name, status=status) is None:
        raise Unavailable(f"SpiderCoordinator {name} is not in the portal's database yet (the mirror takes it in)")
    return f"{status['phase']} ({'changed' if changed else 'unchanged'})"


def _pod_cidr_type_change_record(obj: dict, client: KubeClient) -> None:
    """Spec §8.7 step 5: a changed ``podCIDRType`` of the same incarnation is announced with a Normal Event."""
    m = crd.meta(obj)
    kind = str((obj.get("spec") or {}).get("podCIDRType") or "")
    seen = ObservedCoordinator.objects.filter(name=m["name"]).first()
    if seen is not None and seen.uid == crd.uid_of(obj) and seen.pod_cidr_type != kind:
        client.event_best_effort(obj, reason=cc.EVENT_POD_CIDR_TYPE_CHANGED, type_="Normal",
                     message=f"Pod CIDR type changed from {seen.pod_cidr_type} to {kind}")
    if seen is None or seen.uid != crd.uid_of(obj) or seen.pod_cidr_type != kind:
        ObservedCoordinator.objects.update_or_create(name=m["name"],
                                                     defaults={"uid": crd.uid_of(obj), "pod_cidr_type": kind})


def coordinators_resync(*, client: KubeClient | None = None) -> list[str]:
    """Beat: enqueue a reconcile of every SpiderCoordinator (ConfigMap changes reach the status this way)."""
    client = client or kube_client()
    items, _ = client.list(crd.SPIDER_COORDINATOR)
    names = sorted({crd.meta(o).get("name") for o in items} - {None})
    for name in names:
        coordinator_enqueue(name)
    return names
