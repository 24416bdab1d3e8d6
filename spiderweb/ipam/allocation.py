"""Allocate and release addresses for pods (spec §3, §5.1, §6): the hot path.

One allocation is one short transaction:

1. lock the pod's endpoint row (serialises retries and parallel ADDs of one pod),
2. plan the NICs and candidate pools with `spiderweb.engine.selection` (pure, explains every rejection),
3. lock every candidate pool row in primary-key order (never a global lock, never a deadlock),
4. take the next address of each (NIC, family): never-used addresses first (walking up from the pool's
   `scan_from` hint with indexed range queries, so a /64 or a pool holding 60,000 allocations costs the same
   as an empty one), then released addresses least-recently-released first,
5. insert `Allocation` rows, whose unique constraints make a duplicate impossible even if this code is wrong.

Every NIC and family of a request succeeds or none does (no half-allocated dual-stack pod). ADD is idempotent by
(pod UID, interface); DEL is idempotent and guarded by pod UID, so a DEL for an older incarnation does nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings as django_settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from spiderweb.engine.errors import Conflict, Exhausted, InvalidInput, IPAMError, NoPoolAvailable, NotFound, Unavailable
from spiderweb.engine.facts import PodFacts
from spiderweb.engine.ranges import RangeSet, address_key, int_to_ip, key_to_int
from spiderweb.engine.routes import Route, default_route, parse_route_annotation
from spiderweb.engine.selection import (
    CniDefaults,
    NicRequest,
    PoolView,
    filter_pools,
    multus_network_for_nic,
    plan_nics,
)
from spiderweb.ipam.models import AddressHistory, Allocation, ClusterSettings, Endpoint, IPPool, ReleasedAddress
from spiderweb.ipam.validation import reserved_ranges

log = logging.getLogger(__name__)

SCAN_BATCH = 256
MAX_ATTEMPTS = 3
STATIC_KINDS = {"StatefulSet": "enable_statefulset", "VirtualMachineInstance": "enable_kubevirt_static_ip"}
ANNOTATION_SUBNET = "ipam.spidernet.io/subnet"
ANNOTATION_SUBNETS = "ipam.spidernet.io/subnets"
ANNOTATION_ROUTES = "ipam.spidernet.io/routes"


@dataclass(frozen=True)
class AllocateRequest:
    """One CNI ADD for one NIC, as the node agent forwards it."""

    facts: PodFacts
    if_name: str
    container_id: str = ""
    cni: CniDefaults = field(default_factory=CniDefaults)
    cluster_network: str = ""


@dataclass
class _Candidate:
    """Outcome of trying one pool, for the explanation of a failure."""

    pool: str
    reason: str


def pool_view(pool: IPPool) -> PoolView:
    """What the pure selection code needs to know about a pool."""
    return PoolView(
        name=pool.name,
        version=pool.ip_version,
        subnet=pool.subnet,
        default=pool.default,
        disable=pool.disable,
        terminating=pool.terminating,
        pod_affinity=pool.pod_affinity,
        namespace_affinity=pool.namespace_affinity,
        namespace_name=tuple(pool.namespace_name or ()),
        node_affinity=pool.node_affinity,
        node_name=tuple(pool.node_name or ()),
        multus_name=tuple(pool.multus_name or ()),
    )


def is_static_owner(kind: str, cluster: ClusterSettings) -> bool:
    """StatefulSet and KubeVirt pods keep their addresses by name when the feature switch is on."""
    switch = STATIC_KINDS.get(kind)
    return bool(switch and getattr(cluster, switch))


# ---------------------------------------------------------------------------------------------------- allocate


def ippool_allocate(*, request: AllocateRequest) -> dict:
    """Allocate every NIC the request implies and return Spiderpool's `IpamAddResponse` for the pod."""
    facts = request.facts
    if not facts.alive:
        raise InvalidInput(f"pod {facts.namespace}/{facts.name} is terminating or finished (dead Pod)")
    cluster = ClusterSettings.load()
    existing = _live_allocations(facts.uid)
    if any(a.interface == request.if_name for a in existing):
        return allocation_response(existing, cluster)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                _allocate_locked(request, cluster)
            break
        except IntegrityError as exc:
            # A concurrent request for the same pod or address won the race; the constraint held. Re-read.
            log.info("allocation race for %s/%s (attempt %d): %s", facts.namespace, facts.name, attempt, exc)
            if attempt == MAX_ATTEMPTS:
                raise Unavailable(f"allocation for pod {facts.namespace}/{facts.name} kept racing; retry") from exc
    return allocation_response(_live_allocations(facts.uid), cluster)


def _live_allocations(pod_uid: str) -> list[Allocation]:
    return list(Allocation.objects.filter(pod_uid=pod_uid).select_related("pool").order_by("interface", "ip_version"))


def _allocate_locked(request: AllocateRequest, cluster: ClusterSettings, trace: list | None = None) -> None:
    facts = request.facts
    endpoint = Endpoint.objects.select_for_update().filter(namespace=facts.namespace, name=facts.name).first()
    pools = {p.name: p for p in IPPool.objects.all()}
    views = {name: pool_view(p) for name, p in pools.items()}
    nics = _plan(request, cluster, pools)

    if endpoint is not None and endpoint.uid != facts.uid:
        if is_static_owner(facts.owner.kind, cluster) and endpoint.owner_kind == facts.owner.kind:
            if _static_rebind(endpoint, request, nics):
                return
        else:
            # Same name, new pod (stateless): the old incarnation is gone, its addresses can go now.
            _release_rows(list(endpoint.allocations.select_related("pool")), reason="pod-recreated")
    endpoint = _endpoint_upsert(endpoint, facts)
    held = {(a.interface, a.ip_version) for a in endpoint.allocations.filter(pod_uid=facts.uid)}
    if any(nic == request.if_name for nic, _ in held):
        return  # a parallel request for this pod finished first

    plan: list[tuple[NicRequest, int, list[str]]] = []
    for nic in nics:
        for version, names in ((4, nic.v4), (6, nic.v6)):
            if not names or (nic.interface, version) in held:
                continue
            nad = multus_network_for_nic(
                facts,
                nic.interface,
                first_nic=request.if_name if nic.rule != "ippools" else "eth0",
                spiderpool_namespace=django_settings.SPIDERWEB_NAMESPACE,
                cluster_network=request.cluster_network,
            )
            accepted, rejected = filter_pools(
                list(names),
                views,
                version=version,
                facts=facts,
                interface=nic.interface,
                nad=nad,
                spiderpool_namespace=django_settings.SPIDERWEB_NAMESPACE,
            )
            reasons = [{"pool": r.pool, "reason": r.reason} for r in rejected]
            if trace is not None:
                trace.append({"interface": nic.interface, "version": version, "rule": nic.rule,
                              "candidates": list(names), "accepted": accepted, "rejected": reasons})
            if not accepted:
                text = ", ".join(f"{r['pool']}: {r['reason']}" for r in reasons)
                raise NoPoolAvailable(
                    f"no IPPool available, all IPv{version} IPPools {list(names)} of {nic.interface} filtered out: "
                    f"{text}",
                    details={"interface": nic.interface, "version": version, "candidates": reasons},
                )
            plan.append((nic, version, accepted))
    if not plan:
        raise NoPoolAvailable(f"no IP family is enabled or configured for {request.if_name}")

    locked = {
        p.pk: p
        for p in IPPool.objects.select_for_update().filter(pk__in={pools[n].pk for _, _, ns in plan for n in ns}).order_by("pk")
    }
    by_name = {p.name: p for p in locked.values()}
    blocked = {v: reserved_ranges(v) for v in {version for _, version, _ in plan}}
    annotation_routes = _annotation_routes(facts)
    now = timezone.now()
    new_rows: list[Allocation] = []
    for nic, version, names in plan:
        tried: list[_Candidate] = []
        for name in names:
            pool = by_name[name]
            if pool.disable or pool.terminating:
                tried.append(_Candidate(name, "pool became disabled or terminating"))
                continue
            number, reason = _pool_take_address(pool, blocked[version])
            if number is None:
                tried.append(_Candidate(name, reason))
                continue
            new_rows.append(_new_allocation(pool, number, nic, version, endpoint, request, annotation_routes))
            if trace is not None:
                _trace_entry(trace, nic.interface, version)["tried"] = [c.__dict__ for c in tried] + [
                    {"pool": name, "reason": f"serves {new_rows[-1].address}"}
                ]
            break
        else:
            details = [{"pool": c.pool, "reason": c.reason} for c in tried]
            raise Exhausted(
                f"all IP addresses used out: no IPv{version} address for {nic.interface} in "
                + ", ".join(f"{c.pool} ({c.reason})" for c in tried),
                details={"interface": nic.interface, "version": version, "candidates": details},
            )
    history = AddressHistory.objects.bulk_create(
        [
            AddressHistory(
                pool=row.pool,
                pool_name=row.pool.name,
                ip_version=row.ip_version,
                address=row.address,
                pod_namespace=facts.namespace,
                pod_name=facts.name,
                pod_uid=facts.uid,
                node=facts.node,
                interface=row.interface,
                container_id=request.container_id,
                allocated_at=now,
            )
            for row in new_rows
        ]
    )
    for row, entry in zip(new_rows, history, strict=True):
        row.history = entry
    Allocation.objects.bulk_create(new_rows)
    for pool in {row.pool_id: row.pool for row in new_rows}.values():
        IPPool.objects.filter(pk=pool.pk).update(scan_from=pool.scan_from, fresh_exhausted=pool.fresh_exhausted)


def _trace_entry(trace: list, interface: str, version: int) -> dict:
    return next(e for e in trace if e["interface"] == interface and e["version"] == version)


def ippool_explain(*, request: AllocateRequest) -> dict:
    """Dry run of `ippool_allocate`: the same code in a transaction that is always rolled back.

    Says which pool would serve each NIC and family, and why every other candidate was rejected or skipped.
    """
    cluster = ClusterSettings.load()
    trace: list = []
    result: dict = {"ok": True}
    with transaction.atomic():
        try:
            _allocate_locked(request, cluster, trace)
            result["response"] = allocation_response(_live_allocations(request.facts.uid), cluster)
        except IPAMError as exc:
            result = {"ok": False, "error": exc.to_dict()}
        transaction.set_rollback(True)
    result["nics"] = trace
    return result


def _plan(request: AllocateRequest, cluster: ClusterSettings, pools: dict[str, IPPool]) -> list[NicRequest]:
    """Rule 1 (SpiderSubnet auto pools) here, rules 2–6 in the engine."""
    facts = request.facts
    annotations = facts.annotations
    if ANNOTATION_SUBNETS in annotations or ANNOTATION_SUBNET in annotations:
        return _plan_auto_pools(request, cluster, pools)
    names: dict[int, list[str]] = {4: [], 6: []}
    defaults: dict[int, list[str]] = {4: [], 6: []}
    for pool in sorted(pools.values(), key=lambda p: p.name):
        names[pool.ip_version].append(pool.name)
        if pool.default:
            defaults[pool.ip_version].append(pool.name)
    return plan_nics(
        facts,
        if_name=request.if_name,
        cni=request.cni,
        pool_names=names,
        cluster_default=defaults,
        families=cluster.families,
    )


def _plan_auto_pools(request: AllocateRequest, cluster: ClusterSettings, pools: dict[str, IPPool]) -> list[NicRequest]:
    """Spec §4.4: the agent only looks the auto pool up; the application controller creates and sizes it."""
    import json

    facts = request.facts
    if not (cluster.enable_spider_subnet and cluster.enable_auto_pool_for_application):
        raise InvalidInput("the ipam.spidernet.io/subnet(s) annotations need enableSpiderSubnet and "
                           "enableAutoPoolForApplication")
    if facts.owner.kind == "Pod":
        raise InvalidInput("auto-created IPPools from a SpiderSubnet don't support a pod without a controller")
    raw = facts.annotations.get(ANNOTATION_SUBNETS)
    try:
        if raw is not None:
            items = json.loads(raw)
        else:
            one = json.loads(facts.annotations[ANNOTATION_SUBNET])
            items = [dict(one, interface=request.if_name)]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ValueError("expected a JSON list of objects")
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"invalid subnet annotation: {exc}") from exc
    result = []
    for item in items:
        interface = item.get("interface") or request.if_name
        found: dict[int, tuple[str, ...]] = {4: (), 6: ()}
        for version in (4, 6):
            subnet_names = item.get(f"ipv{version}") or []
            if not subnet_names or version not in cluster.families:
                continue
            matches = [
                p.name
                for p in pools.values()
                if p.ip_version == version
                and p.auto_app_uid == facts.owner.uid
                and p.auto_interface == interface
                and p.owner_subnet is not None
                and p.owner_subnet.name == subnet_names[0]
            ]
            if not matches:
                raise Unavailable(
                    f"the auto-created IPv{version} IPPool of {facts.owner.kind} {facts.namespace}/{facts.owner.name}"
                    f" for {interface} from SpiderSubnet {subnet_names[0]} is not ready yet"
                )
            if len(matches) > 1:
                raise Conflict(f"more than one auto-created IPPool matches: {sorted(matches)}")
            found[version] = (matches[0],)
        result.append(NicRequest(interface=interface, clean_gateway=request.cni.clean_gateway, v4=found[4],
                                 v6=found[6], rule="subnet"))
    return result


def _static_rebind(endpoint: Endpoint, request: AllocateRequest, nics: list[NicRequest]) -> bool:
    """A StatefulSet/KubeVirt pod came back with a new UID: give it its recorded addresses (spec §5.1).

    Records of this NIC whose pool is no longer a candidate (the pool annotation changed) are released first, so
    the pod moves to the new pool. Returns True when the recorded addresses were re-bound and nothing else is
    needed.
    """
    facts = request.facts
    rows = list(endpoint.allocations.select_related("pool"))
    if facts.owner.kind == "StatefulSet":
        wanted = {(n.interface, 4): set(n.v4) for n in nics} | {(n.interface, 6): set(n.v6) for n in nics}
        outdated = [
            r for r in rows if r.interface == request.if_name and r.pool.name not in wanted.get((r.interface, r.ip_version), set())
        ]
        if outdated:
            _release_rows(outdated, reason="outdated-pool")
            rows = [r for r in rows if r not in outdated]
    if not any(r.interface == request.if_name for r in rows):
        return False
    Allocation.objects.filter(pk__in=[r.pk for r in rows]).update(
        pod_uid=facts.uid, container_id=request.container_id, node=facts.node
    )
    AddressHistory.objects.filter(pk__in=[r.history_id for r in rows if r.history_id]).update(
        pod_uid=facts.uid, node=facts.node, container_id=request.container_id
    )
    _endpoint_upsert(endpoint, facts)
    return True


def _endpoint_upsert(endpoint: Endpoint | None, facts: PodFacts) -> Endpoint:
    fields = dict(
        uid=facts.uid,
        node=facts.node,
        owner_kind=facts.owner.kind,
        owner_name=facts.owner.name,
        owner_uid=facts.owner.uid,
        owner_api_version=facts.owner.api_version,
    )
    if endpoint is None:
        return Endpoint.objects.create(namespace=facts.namespace, name=facts.name, **fields)
    if any(getattr(endpoint, k) != v for k, v in fields.items()):
        for key, value in fields.items():
            setattr(endpoint, key, value)
        endpoint.save(update_fields=[*fields, "updated_at"])
    return endpoint


def _annotation_routes(facts: PodFacts) -> list[Route]:
    raw = facts.annotations.get(ANNOTATION_ROUTES)
    return parse_route_annotation(raw) if raw else []


def _new_allocation(pool, number, nic, version, endpoint, request, annotation_routes) -> Allocation:
    network = pool.network
    routes = [dict(r) for r in pool.routes or []]
    for route in annotation_routes:
        gw_version = 6 if ":" in route.gw else 4
        if gw_version == version and _in_network(route.gw, network):
            routes.append(route.to_dict())
    return Allocation(
        endpoint=endpoint,
        pool=pool,
        ip_version=version,
        address=int_to_ip(number, version),
        address_key=address_key(number, version),
        prefix_length=network.prefixlen,
        interface=nic.interface,
        pod_uid=request.facts.uid,
        container_id=request.container_id,
        node=request.facts.node,
        gateway=pool.gateway or "",
        clean_gateway=nic.clean_gateway,
        routes=routes,
    )


def _in_network(address: str, network) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(address) in network
    except ValueError:
        return False


def _pool_take_address(pool: IPPool, blocked: RangeSet) -> tuple[int | None, str]:
    """Pick the next address of a locked pool: never-used first, then least-recently-released.

    Returns (address, "") or (None, reason). Updates `pool.scan_from` / `pool.fresh_exhausted` in memory; the
    caller persists them.
    """
    cap = django_settings.SPIDERWEB_IPPOOL_MAX_ALLOCATED_IPS
    if cap and Allocation.objects.filter(pool=pool).count() >= cap:
        return None, f"pool holds the maximum of {cap} allocations (SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS)"
    free = pool.total_ranges.subtract(blocked)
    if not free:
        return None, "pool has no addresses outside excludeIPs and reserved IPs"
    if not pool.fresh_exhausted:
        number = _fresh_address(pool, free)
        if number is not None:
            pool.scan_from = address_key(number, pool.ip_version)
            return number, ""
        pool.fresh_exhausted = True
    number = _recycled_address(pool, free)
    if number is not None:
        return number, ""
    return None, f"all {free.count()} addresses are in use"


def _fresh_address(pool: IPPool, free: RangeSet) -> int | None:
    """The lowest address ≥ scan_from in `free` that no allocation or released record has ever used.

    Walks with ordered index range scans of both tables, `SCAN_BATCH` keys at a time, so the cost does not
    grow with the number of live allocations below the hint.
    """
    version = pool.ip_version
    candidate = free.first_at_or_after(key_to_int(pool.scan_from)) if pool.scan_from else free.first()
    while candidate is not None:
        key = address_key(candidate, version)
        live = list(
            Allocation.objects.filter(pool=pool, address_key__gte=key)
            .order_by("address_key")
            .values_list("address_key", flat=True)[:SCAN_BATCH]
        )
        released = list(
            ReleasedAddress.objects.filter(pool=pool, address_key__gte=key)
            .order_by("address_key")
            .values_list("address_key", flat=True)[:SCAN_BATCH]
        )
        horizon = None
        for batch in (live, released):
            if len(batch) == SCAN_BATCH:
                last = key_to_int(batch[-1])
                horizon = last if horizon is None else min(horizon, last)
        used = sorted({key_to_int(k) for k in live} | {key_to_int(k) for k in released})
        for number in used:
            if horizon is not None and number > horizon:
                break
            if number < candidate:
                continue
            if number > candidate:
                return candidate
            candidate = free.first_at_or_after(candidate + 1)
            if candidate is None:
                return None
        if horizon is None or candidate <= horizon:
            return candidate
        # Everything up to the horizon was used; look at the next batch from the current candidate.
    return None


def _recycled_address(pool: IPPool, free: RangeSet) -> int | None:
    """The least-recently-released address still inside the pool and not reserved."""
    stale: list[int] = []
    found = None
    for record in ReleasedAddress.objects.filter(pool=pool).order_by("released_at", "id").iterator(chunk_size=SCAN_BATCH):
        number = key_to_int(record.address_key)
        if number in free:
            found = record
            break
        if number not in pool.total_ranges:
            stale.append(record.pk)  # the address left the pool; forget it
    if stale:
        ReleasedAddress.objects.filter(pk__in=stale).delete()
    if found is None:
        return None
    found.delete()
    return key_to_int(found.address_key)


# ----------------------------------------------------------------------------------------------------- release


def ippool_release(*, namespace: str, name: str, pod_uid: str, reason: str, node: str | None = None) -> list[str]:
    """Release every address held by this incarnation of the pod (all NICs) and drop its endpoint.

    Idempotent and UID-guarded: nothing happens when the pod holds nothing or the addresses belong to a newer
    incarnation. With `node`, only allocations made on that node are touched (node credentials).
    """
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().filter(namespace=namespace, name=name).first()
        rows = Allocation.objects.filter(pod_uid=pod_uid).select_related("pool")
        if node is not None:
            rows = rows.filter(node=node)
        rows = list(rows)
        released = _release_rows(rows, reason=reason)
        if endpoint is not None and endpoint.uid == pod_uid and not endpoint.allocations.exists():
            endpoint.delete()
    return released


def allocation_release(*, allocation: Allocation, reason: str) -> list[str]:
    """Release one allocation (admin action); the endpoint goes when it holds nothing more."""
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=allocation.endpoint_id)
        rows = list(Allocation.objects.filter(pk=allocation.pk).select_related("pool"))
        released = _release_rows(rows, reason=reason)
        if not endpoint.allocations.exists():
            endpoint.delete()
    return released


def _release_rows(rows: list[Allocation], *, reason: str) -> list[str]:
    """Delete live rows under their pools' locks, remember the addresses for LRU reuse, close the history."""
    if not rows:
        return []
    list(IPPool.objects.select_for_update().filter(pk__in={r.pool_id for r in rows}).order_by("pk").values_list("pk"))
    now = timezone.now()
    deleted = Allocation.objects.filter(pk__in=[r.pk for r in rows]).delete()[0]
    if deleted != len(rows):
        raise Conflict("allocations changed while releasing; retry")
    ReleasedAddress.objects.bulk_create(
        [ReleasedAddress(pool_id=r.pool_id, address_key=r.address_key, released_at=now) for r in rows],
        update_conflicts=True,
        unique_fields=["pool", "address_key"],
        update_fields=["released_at"],
    )
    AddressHistory.objects.filter(pk__in=[r.history_id for r in rows if r.history_id]).update(
        released_at=now, release_reason=reason
    )
    return [r.address for r in rows]


def endpoint_get(*, namespace: str, name: str) -> Endpoint:
    endpoint = Endpoint.objects.filter(namespace=namespace, name=name).first()
    if endpoint is None:
        raise NotFound(f"no SpiderEndpoint {namespace}/{name}")
    return endpoint


# ---------------------------------------------------------------------------------------------------- response


def allocation_response(rows: list[Allocation], cluster: ClusterSettings) -> dict:
    """Spiderpool's `IpamAddResponse` for every NIC of the pod."""
    ips, routes = [], []
    for row in rows:
        entry = {
            "version": row.ip_version,
            "address": row.cidr,
            "nic": row.interface,
            "ipPool": row.pool.name,
            "vlan": row.vlan,
            "enableGatewayDetection": cluster.enable_gateway_detection,
            "enableIPConflictDetection": cluster.enable_ip_conflict_detection,
        }
        if row.gateway:
            entry["gateway"] = row.gateway
        if row.mac:
            entry["mac"] = row.mac
        ips.append(entry)
        for route in row.routes or []:
            routes.append({"ifName": row.interface, "dst": route["dst"], "gw": route["gw"]})
        if row.gateway and not row.clean_gateway:
            routes.append({"ifName": row.interface, "dst": default_route(row.ip_version), "gw": row.gateway})
    return {"ips": ips, "routes": routes}
