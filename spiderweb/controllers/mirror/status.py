"""Status flows out in batches: SpiderIPPool and SpiderSubnet status and the SpiderEndpoints, written only when
changed (a digest per object), never from the allocation hot path.
"""

from __future__ import annotations

import hashlib
import json
import logging

from django.db.models import Count, Max, Sum
from django.utils import timezone

from spiderweb.controllers.config import kube_client
from spiderweb.controllers.mirror.config import mirror_config
from spiderweb.controllers.mirror.models import MirrorState
from spiderweb.engine import keys
from spiderweb.ipam.models import Allocation, Endpoint, IPPool, Subnet
from spiderweb.k8s import crd
from spiderweb.k8s.client import KubeClient, KubeConflict, KubeError
from spiderweb.k8s.resources import Resource

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------------- status


def _digest(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


INT64_MAX = 9_223_372_036_854_775_807


def int64_saturated(count: int) -> int:
    """A count as the CRD's int64 status field holds it: upstream saturates at the int64 maximum (an IPv6 pool over a
    /64 has more addresses), else the API server refuses the whole status write.

    >>> int64_saturated(2**64), int64_saturated(5)
    (9223372036854775807, 5)
    """
    return min(count, INT64_MAX)


def ippool_status(pool: IPPool) -> dict:
    """SpiderIPPool status: ``allocatedIPs`` (JSON string, ``null`` when empty), counts."""
    rows = (Allocation.objects.filter(pool=pool).order_by("address_key")
            .values_list("address", "endpoint__namespace", "endpoint__name", "pod_uid"))
    allocated = {address: {"pod": f"{ns}/{name}", "podUid": uid} for address, ns, name, uid in rows}
    return {
        "allocatedIPs": json.dumps(allocated, separators=(",", ":")) if allocated else None,
        "allocatedIPCount": int64_saturated(len(allocated)),
        "totalIPCount": int64_saturated(pool.total_ip_count),
    }


def _application_of(pool: IPPool) -> str:
    """``<group>_<version>_<Kind>_<ns>_<name>`` of an auto-created pool (from its owner-application labels)."""
    labels = pool.labels or {}
    parts = [labels.get(k) for k in (keys.LABEL_OWNER_APP_GV, keys.LABEL_OWNER_APP_KIND, keys.LABEL_OWNER_APP_NAMESPACE,
                                      keys.LABEL_OWNER_APP_NAME)]
    return "_".join(parts) if all(parts) else ""


def subnet_status(subnet: Subnet) -> dict:
    """SpiderSubnet status: ``controlledIPPools`` (JSON string), total and pre-allocated counts (spec §1.3)."""
    total = subnet.total_ranges
    controlled, allocated = {}, 0
    for pool in IPPool.objects.filter(owner_subnet=subnet).order_by("name"):
        inside = pool.total_ranges.intersect(total)
        entry = {"ips": inside.to_strings()}
        application = _application_of(pool)
        if application:
            entry["application"] = application
        controlled[pool.name] = entry
        allocated += inside.count()
    return {
        "controlledIPPools": json.dumps(controlled, separators=(",", ":")) if controlled else None,
        "totalIPCount": int64_saturated(total.count()),
        "allocatedIPCount": int64_saturated(allocated),
    }


def spiderendpoint_status(endpoint: Endpoint) -> dict:
    """SpiderEndpoint status (spec §1.5): one ``ips`` entry per NIC, both families merged into it."""
    nics: dict[str, dict] = {}
    for a in endpoint.allocations.select_related("pool").order_by("interface", "ip_version"):
        nic = nics.setdefault(a.interface, {"interface": a.interface})
        family = f"ipv{a.ip_version}"
        nic[family] = a.cidr
        nic[f"{family}Pool"] = a.pool.name
        if a.gateway:
            nic[f"{family}Gateway"] = a.gateway
        if a.clean_gateway:
            nic["cleanGateway"] = True
        if a.vlan:
            nic["vlan"] = a.vlan
        if a.mac:
            nic["mac"] = a.mac
        if a.routes:
            nic["routes"] = [*nic.get("routes", []), *a.routes]
    return {
        "current": {"uid": endpoint.uid, "node": endpoint.node, "ips": list(nics.values())},
        "ownerControllerType": endpoint.owner_kind,
        "ownerControllerName": endpoint.owner_name or endpoint.name,
    }


def mirror_status_write(*, client: KubeClient | None = None) -> dict:
    """Write the status of every mirrored pool and subnet, and every SpiderEndpoint, whose value changed since the
    last write; delete SpiderEndpoints whose endpoint row is gone. Returns counts of what was written.

    Change detection without building every status: a pool's fingerprint is its generation plus count, id sum
    and latest ``bound_at`` of its allocations (ids are never reused, a release deletes a row, a StatefulSet
    re-bind moves ``bound_at``), all from one GROUP BY.
    """
    if client is None and not mirror_config().enabled:
        return {"disabled": True}
    client = client or kube_client()
    counts = {"ippools": 0, "subnets": 0, "endpoints": 0, "endpoints_deleted": 0}
    states = {(s.kind, s.name): s for s in MirrorState.objects.filter(kind__in=["SpiderIPPool", "SpiderSubnet"])}
    prints = {r["pool_id"]: r for r in Allocation.objects.order_by().values("pool_id")
              .annotate(n=Count("id"), s=Sum("id"), b=Max("bound_at"))}
    for pk, name, k8s_uid, generation in (IPPool.objects.exclude(k8s_uid="").order_by("pk")
                                          .values_list("pk", "name", "k8s_uid", "generation")):
        state = states.get(("SpiderIPPool", name))
        if state is None or state.k8s_uid != k8s_uid:
            continue
        p = prints.get(pk, {})
        digest = _digest(generation, p.get("n"), p.get("s"), p.get("b"))
        if state.status_digest == digest:
            continue  # unchanged: the pool itself (ranges and all) is never loaded
        pool = IPPool.objects.filter(pk=pk).first()
        if pool is not None and _status_patch(client, crd.SPIDER_IPPOOL, name, ippool_status(pool)):
            _status_recorded(state, digest)
            counts["ippools"] += 1
    for subnet in Subnet.objects.exclude(k8s_uid="").order_by("pk"):
        state = states.get(("SpiderSubnet", subnet.name))
        if state is None or state.k8s_uid != subnet.k8s_uid:
            continue
        status = subnet_status(subnet)
        digest = _digest(json.dumps(status, sort_keys=True))
        if state.status_digest != digest and _status_patch(client, crd.SPIDER_SUBNET, subnet.name, status):
            _status_recorded(state, digest)
            counts["subnets"] += 1
    counts.update(_endpoints_write(client))
    return counts


def _status_patch(client: KubeClient, kind: Resource, name: str, status: dict) -> bool:
    try:
        return client.patch(kind, name, {"status": status}, subresource="status") is not None
    except KubeError as exc:  # refused (schema): log and try again next batch; transient errors propagate
        log.warning("status of %s %s not written: %s", kind.kind, name, exc)
        return False


def _status_recorded(state: MirrorState, digest: str) -> None:
    MirrorState.objects.filter(pk=state.pk).update(status_digest=digest, status_written_at=timezone.now())


def _endpoints_write(client: KubeClient) -> dict:
    """Write the SpiderEndpoints whose fingerprint changed and delete those whose endpoint row is gone.

    Every batch compares every endpoint, so the comparison reads plain values (no model instances, no timestamps
    but the one in the fingerprint): a cluster with thousands of pods pays for that every few seconds even when
    nothing changed. The changed endpoints are then loaded whole, in one query."""
    counts = {"endpoints": 0, "endpoints_deleted": 0}
    states = {name: (pk, uid, digest) for pk, name, uid, digest in MirrorState.objects.filter(
        kind=MirrorState.Kind.ENDPOINT).values_list("pk", "name", "k8s_uid", "status_digest")}
    rows = (Endpoint.objects.order_by("pk").values_list("pk", "namespace", "name", "uid", "node", "owner_kind",
                                                        "owner_name")
            .annotate(n=Count("allocations"), s=Sum("allocations__id"), b=Max("allocations__bound_at")))
    changed = []  # (endpoint pk, key, digest, written before)
    for pk, namespace, name, uid, node, owner_kind, owner_name, n, total, bound in rows:
        key = f"{namespace}/{name}"
        state = states.pop(key, None)
        digest = _digest(uid, node, owner_kind, owner_name, n, total, bound)
        if state is None or state[2] != digest:
            changed.append((pk, key, digest, state is not None))
    loaded = Endpoint.objects.in_bulk([pk for pk, *_ in changed])
    for pk, key, digest, written_before in changed:
        endpoint = loaded.get(pk)
        if endpoint is None:  # released since the comparison read it: the next batch deletes its SpiderEndpoint
            continue
        written = _spiderendpoint_put(client, endpoint, written_before=written_before)
        if written is None:
            continue
        MirrorState.objects.update_or_create(
            kind=MirrorState.Kind.ENDPOINT, name=key,
            defaults=dict(object_id=endpoint.pk, k8s_uid=crd.uid_of(written),
                          resource_version=crd.resource_version_of(written), status_digest=digest,
                          status_written_at=timezone.now()),
        )
        counts["endpoints"] += 1
    for key, (state_pk, uid, _) in states.items():  # endpoint rows that are gone: their addresses are released
        namespace, name = key.split("/", 1)
        _spiderendpoint_remove(client, namespace, name, uid)
        MirrorState.objects.filter(pk=state_pk).delete()
        counts["endpoints_deleted"] += 1
    return counts


def _spiderendpoint_remove(client: KubeClient, namespace: str, name: str, uid: str) -> None:
    """Spec §6: once the addresses are released, the SpiderEndpoint goes and its finalizer with it (this
    incarnation only: a newer object of the same name belongs to a newer pod)."""
    obj = client.get(crd.SPIDER_ENDPOINT, name, namespace=namespace)
    if obj is None or (uid and crd.uid_of(obj) != uid):
        return
    if not crd.is_terminating(obj):  # usually it is: Kubernetes deleted it with its pod, our finalizer holds it
        incarnation = crd.uid_of(obj)
        client.delete(crd.SPIDER_ENDPOINT, name, namespace=namespace, uid=incarnation)
        obj = client.get(crd.SPIDER_ENDPOINT, name, namespace=namespace)
        if obj is None or crd.uid_of(obj) != incarnation:
            return
    client.finalizer_remove(crd.SPIDER_ENDPOINT, obj)


def spiderendpoint_metadata(endpoint: Endpoint) -> dict:
    """Spec §6: the ``spiderpool.spidernet.io`` finalizer (the object outlives its pod until the addresses are
    released) and, except for StatefulSet and KubeVirt endpoints, an ownerReference to the pod, so Kubernetes
    deletes it with the pod."""
    owners = [] if endpoint.is_static else [
        {"apiVersion": "v1", "kind": "Pod", "name": endpoint.name, "uid": endpoint.uid, "blockOwnerDeletion": False}
    ]
    return {"finalizers": [crd.FINALIZER], "ownerReferences": owners}


def _spiderendpoint_put(client: KubeClient, endpoint: Endpoint, *, written_before: bool = True) -> dict | None:
    """Create or replace one SpiderEndpoint; ``None`` when it cannot be written this round (retried next batch).

    A SpiderEndpoint never written before (a new pod's) is created without reading it first, one API call instead
    of two for each pod of a storm; when the name is taken after all, it is read and replaced as any other. A
    SpiderEndpoint of an older incarnation that Kubernetes is already deleting (its pod is gone) is let go, its
    finalizer removed; the next batch writes the new pod's."""
    status = spiderendpoint_status(endpoint)
    lifecycle = spiderendpoint_metadata(endpoint)
    body = {"apiVersion": crd.API_VERSION, "kind": "SpiderEndpoint",
            "metadata": {"name": endpoint.name, "namespace": endpoint.namespace,
                         "labels": {"app.kubernetes.io/managed-by": "spiderweb"}, **lifecycle},
            "status": status}
    try:
        if not written_before:
            try:
                return client.create(crd.SPIDER_ENDPOINT, body)
            except KubeConflict:
                pass  # an object of that name exists: read it below
        existing = client.get(crd.SPIDER_ENDPOINT, endpoint.name, namespace=endpoint.namespace)
        if existing is not None and crd.is_terminating(existing):
            client.finalizer_remove(crd.SPIDER_ENDPOINT, existing)
            return None
        if existing is None:
            return client.create(crd.SPIDER_ENDPOINT, body)
        m = dict(existing.get("metadata") or {})
        m["finalizers"] = sorted({*(m.get("finalizers") or []), crd.FINALIZER})
        m["ownerReferences"] = lifecycle["ownerReferences"]
        return client.replace(crd.SPIDER_ENDPOINT, {**existing, "metadata": m, "status": status})
    except KubeConflict:
        return None
    except KubeError as exc:  # e.g. the namespace does not exist (yet)
        log.info("SpiderEndpoint %s/%s not written: %s", endpoint.namespace, endpoint.name, exc)
        return None

