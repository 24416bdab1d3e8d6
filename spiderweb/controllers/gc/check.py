"""``calicoctl ipam check`` for Spiderweb: everything that is wrong between the database and the cluster, and which
leaks can be proven (so ``--release-leaks`` releases those and nothing else)."""

from __future__ import annotations

import datetime as _dt
import ipaddress
from dataclasses import dataclass, field

from django.db.models import Count
from django.utils import timezone

from spiderweb.controllers.gc.config import gc_config
from spiderweb.controllers.gc.services import OwnerValidity, _scan_decider, gc_release_endpoint
from spiderweb.ipam.integrity import allocation_integrity_report
from spiderweb.ipam.models import Allocation, Endpoint, IPPool, ReservedIP, Subnet
from spiderweb.k8s import crd, podgc, resources
from spiderweb.k8s.client import KubeClient
from spiderweb.k8s.crd import meta


@dataclass
class CheckReport:
    """Findings by category; each finding is one line a person can act on."""

    leaked: list[str] = field(default_factory=list)
    pods_without_addresses: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    outside_pool: list[str] = field(default_factory=list)
    on_reserved: list[str] = field(default_factory=list)
    crd_disagreements: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)

    PROBLEMS = ("leaked", "pods_without_addresses", "duplicates", "outside_pool", "on_reserved", "crd_disagreements")

    @property
    def problems(self) -> int:
        return sum(len(getattr(self, name)) for name in self.PROBLEMS)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in (*self.PROBLEMS, "released")} | {"problems": self.problems}


def ipam_check(*, client: KubeClient, release_leaks: bool = False, now: _dt.datetime | None = None) -> CheckReport:
    """Compare the database with the API server; with ``release_leaks``, release each provable leak (the pod, read
    again, is gone or is another incarnation, and no StatefulSet/VM wants the addresses).

    A pod that still exists as the same incarnation is never a leak here, even when the GC's rules would reclaim
    it (a zombie terminating past its deadline, a Running pod without ``status.podIPs``): its sandbox may still
    use the address, and the GC decides about it under its own switches.
    """
    now = now or timezone.now()
    report = CheckReport()
    pods = {(meta(p).get("namespace"), meta(p).get("name")): p for p in client.list(resources.POD)[0]}
    ready = {meta(n).get("name"): podgc.node_is_ready(n) for n in client.list(resources.NODE)[0]}
    owners = OwnerValidity(client)
    for endpoint in Endpoint.objects.order_by("namespace", "name"):
        decide = _scan_decider(endpoint, owners, ready, gc_config().switches)
        pod = pods.get((endpoint.namespace, endpoint.name))
        if not _provable_leak(endpoint, pod, decide(pod, now)):
            continue
        # The list is a snapshot: read the pod again so an endpoint written after it is never taken for a leak.
        pod = client.pod(endpoint.namespace, endpoint.name)
        decision = decide(pod, now)
        if not _provable_leak(endpoint, pod, decision):
            continue
        addresses = ", ".join(endpoint.allocations.order_by("interface", "ip_version").values_list("address",
                                                                                                   flat=True))
        report.leaked.append(f"{addresses} held by {endpoint.namespace}/{endpoint.name} ({endpoint.uid}): "
                             f"{decision.reason}")
        if release_leaks:
            report.released += gc_release_endpoint(endpoint, reason=decision.reason)
    _pods_against_allocations(report, pods)
    integrity = allocation_integrity_report()
    report.outside_pool, report.on_reserved = integrity["outside"], integrity["reserved"]
    _crds_against_rows(report, client)
    return report


def _provable_leak(endpoint: Endpoint, pod: dict | None, decision: podgc.Decision) -> bool:
    """The GC would release it now and the incarnation that holds it is gone (no pod, or a pod of another UID)."""
    return decision.action == podgc.RELEASE and (pod is None or meta(pod).get("uid") != endpoint.uid)


def _pods_against_allocations(report: CheckReport, pods: dict) -> None:
    """Live pods whose ``status.podIPs`` lie in our pools: each address must be this pod's allocation, and no two
    live pods may show the same address."""
    networks = [ipaddress.ip_network(s) for s in IPPool.objects.values_list("subnet", flat=True).distinct()]
    held = {(a, uid) for a, uid in Allocation.objects.values_list("address", "pod_uid")}
    shown: dict[str, list[str]] = {}
    for (namespace, name), pod in sorted(pods.items()):
        if (pod.get("spec") or {}).get("hostNetwork") or podgc.pod_finished(pod) or meta(pod).get("deletionTimestamp"):
            continue
        uid = meta(pod).get("uid")
        for entry in (pod.get("status") or {}).get("podIPs") or []:
            try:
                ip = ipaddress.ip_address(str((entry or {}).get("ip") or ""))
            except ValueError:
                continue
            # The API server takes IPv6 spelled out in full; the database holds the canonical (shortest) form.
            address = str(ip)
            if not any(ip in net for net in networks):
                continue
            shown.setdefault(address, []).append(f"{namespace}/{name}")
            if (address, uid) not in held:
                report.pods_without_addresses.append(f"{namespace}/{name} ({uid}) shows {address}, which Spiderweb "
                                                     f"does not record for it")
    for address, holders in sorted(shown.items()):
        if len(holders) > 1:
            report.duplicates.append(f"{address} shown by {', '.join(holders)}")
    for key, n in Allocation.objects.values("ip_version", "address_key").annotate(n=Count("id")).filter(n__gt=1) \
            .values_list("address_key", "n"):
        report.duplicates.append(f"address key {key} recorded {n} times")


def _crds_against_rows(report: CheckReport, client: KubeClient) -> None:
    """Mirrored kinds: a CRD without its row, a row from Kubernetes whose CRD is gone; SpiderEndpoints likewise."""
    for resource, model in ((crd.SPIDER_IPPOOL, IPPool), (crd.SPIDER_SUBNET, Subnet),
                            (crd.SPIDER_RESERVEDIP, ReservedIP)):
        names = {meta(obj).get("name") for obj in client.list(resource)[0]}
        # A row kept terminating after its CRD went (a subnet whose pools are still leaving) is expected, not drift.
        rows = dict(model.objects.filter(terminating=False).values_list("name", "k8s_uid"))
        for name in sorted(names - set(rows)):
            report.crd_disagreements.append(f"{resource.kind} {name} exists in Kubernetes but not in Spiderweb")
        for name, uid in sorted(rows.items()):
            if uid and name not in names:
                report.crd_disagreements.append(f"{resource.kind} {name} is in Spiderweb but gone from Kubernetes")
    recorded = {f"{ns}/{name}" for ns, name in Endpoint.objects.values_list("namespace", "name")}
    for obj in client.list(crd.SPIDER_ENDPOINT)[0]:
        key = f"{meta(obj).get('namespace')}/{meta(obj).get('name')}"
        if key not in recorded and not meta(obj).get("deletionTimestamp"):
            report.crd_disagreements.append(f"SpiderEndpoint {key} has no allocation in Spiderweb")
