"""Allocate and release addresses for pods (spec §3, §5.1, §6): the hot path.

One allocation is one short transaction:

0. take the pod's lock (`_pod_lock`, by pod UID), which its DEL takes too, and refuse a sandbox whose DEL came
   first (`spiderweb.ipam.tombstones`),
1. lock the pod's endpoint row (serialises retries and parallel ADDs of one pod),
2. plan the NICs and candidate pools with `spiderweb.engine.selection` (pure, explains every rejection),
3. lock every candidate pool row in primary-key order, FOR NO KEY UPDATE so that the foreign-key checks of a
   release committing meanwhile never wait on it (never a global lock, never a deadlock),
4. take the next address of each (NIC, family): never-used addresses first (walking up from the pool's
   `scan_from` hint with indexed range queries, so a /64 or a pool holding 60,000 allocations costs the same
   as an empty one), then released addresses least-recently-released first,
5. insert `Allocation` rows, whose unique constraints make a duplicate impossible even if this code is wrong.

Every NIC and family of a request succeeds or none does (no half-allocated dual-stack pod). ADD is idempotent by
(pod UID, interface); DEL is idempotent and guarded by pod UID, so a DEL for an older incarnation does nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings as django_settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from spiderweb import metrics
from spiderweb.engine import autopool
from spiderweb.engine.errors import (
    Conflict,
    Exhausted,
    Forbidden,
    InvalidInput,
    IPAMError,
    NoPoolAvailable,
    NotFound,
    Unavailable,
)
from spiderweb.engine.facts import PodFacts
from spiderweb.engine.keys import ANNO_IPPOOL_IP_NUMBER, ANNO_IPPOOL_RECLAIM, ANNO_ROUTES, ANNO_SUBNET, ANNO_SUBNETS
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
from spiderweb.ipam.tombstones import pod_tombstone_record, pod_tombstone_refuse
from spiderweb.ipam.validation import reserved_ranges

log = logging.getLogger(__name__)

SCAN_BATCH = 256
MAX_ATTEMPTS = 3
STATIC_KINDS = {"StatefulSet": "enable_statefulset", "VirtualMachineInstance": "enable_kubevirt_static_ip"}


@dataclass(frozen=True)
class AllocateRequest:
    """One CNI ADD for one NIC, as the node agent forwards it."""

    facts: PodFacts
    if_name: str
    container_id: str = ""
    cni: CniDefaults = field(default_factory=CniDefaults)
    cluster_network: str = ""
    network: str = ""


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


# ---------------------------------------------------------------------------------------------------- pod lock

# First key of our pg_advisory_xact_lock(int, int) locks (the second is the hash of the pod UID), so they cannot
# collide with advisory locks anyone else takes with the other keys. Any constant works; this one spells "SWPD".
POD_LOCK_CLASS = 0x53575044


def _pod_lock(pod_uid: str) -> None:
    """Serialise the ADDs and DELs of one pod until the transaction ends: a DEL waits for an ADD in flight.

    Its own statement, first in the transaction: under READ COMMITTED every statement takes its snapshot when it
    starts, so the statements after this one see what the transaction it waited for committed (a lock taken inside
    the release statement would leave that statement with a snapshot from before the wait). Two UIDs whose hashes
    collide only wait for each other briefly. A per-pod lock, never a global one: other pods never wait on it.
    Always the first lock of its transaction, and a transaction takes one, so it cannot be part of a deadlock.
    SQLite needs nothing here: it has one writer at a time and serializable transactions.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor, metrics.lock_wait("pod"):
        cursor.execute("SELECT pg_advisory_xact_lock(%s::integer, hashtext(%s))", [POD_LOCK_CLASS, pod_uid])


# ---------------------------------------------------------------------------------------------------- allocate


def ippool_allocate(*, request: AllocateRequest, pod_reader: PodReader | None = None) -> dict:
    """Allocate every NIC the request implies and return Spiderpool's `IpamAddResponse` for the pod.

    `pod_reader(namespace, name)` reads the pod from the API server; it is called only when the pod's name is
    recorded on another node under another UID (a re-creation across nodes), never on the usual path. Without one,
    such a re-creation is refused with a retryable error (`CrossNodeReplacement`).
    """
    with metrics.timed(metrics.ALLOCATIONS, metrics.ALLOCATION_DURATION):
        return _ippool_allocate(request, pod_reader)


def _ippool_allocate(request: AllocateRequest, pod_reader: PodReader | None) -> dict:
    facts = request.facts
    if not facts.alive:
        raise InvalidInput(f"pod {facts.namespace}/{facts.name} is terminating or finished (dead Pod)")
    cluster = ClusterSettings.load_cached()
    third_party_autopools_ensure(facts)
    cross_node_confirmed = False
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                _pod_lock(facts.uid)
                rows = _allocate_locked(request, cluster, cross_node_confirmed=cross_node_confirmed)
            break
        except CrossNodeReplacement:
            # Read outside the transaction: no lock is held while the API server answers.
            if cross_node_confirmed or pod_reader is None:
                raise
            cross_node_confirmed = _api_server_confirms(pod_reader, facts)
        except (IntegrityError, _StaleCatalog) as exc:
            # A concurrent request for the same pod or address won the race (the constraint held), or a pool
            # changed after it was planned with: plan again from fresh data.
            log.info("allocation race for %s/%s (attempt %d): %s", facts.namespace, facts.name, attempt, exc)
            if attempt == MAX_ATTEMPTS:
                raise Unavailable(f"allocation for pod {facts.namespace}/{facts.name} kept racing; retry") from exc
    return allocation_response(rows, cluster)


PodReader = Callable[[str, str], "dict | None"]


def _api_server_confirms(pod_reader: PodReader, facts: PodFacts) -> bool:
    """True when the API server's pod has the caller's UID and node; else the claim is refused (403)."""
    pod = pod_reader(facts.namespace, facts.name) or {}
    uid = (pod.get("metadata") or {}).get("uid", "")
    node = (pod.get("spec") or {}).get("nodeName", "")
    if uid != facts.uid or node != facts.node:
        raise Forbidden(
            f"the API server shows pod {facts.namespace}/{facts.name} as UID {uid or '(none)'} on node "
            f"{node or '(none)'}, not UID {facts.uid} on node {facts.node}: its addresses stay where they are"
        )
    return True


class _StaleCatalog(Exception):
    """The cached pool catalog disagreed with the locked rows; retry with fresh data."""


_pool_catalog_cache: dict = {}
POOL_CATALOG_TTL = 1.0


def _pool_catalog() -> tuple[dict[str, IPPool], bool]:
    """Every pool, cached per process for POOL_CATALOG_TTL seconds, for planning only.

    The rows that allocation acts on are re-read under their row locks, and their `generation` must equal the
    cached one, so a stale cache can only cost a retry, never a wrong allocation. A pool created less than
    a second ago may not be a candidate yet.
    """
    now = time.monotonic()
    if _pool_catalog_cache.get("at", -1e9) + POOL_CATALOG_TTL >= now:
        return _pool_catalog_cache["pools"], True
    pools = {p.name: p for p in IPPool.objects.select_related("owner_subnet")}
    _pool_catalog_cache.update(pools=pools, at=now)
    return pools, False


def pool_catalog_invalidate() -> None:
    _pool_catalog_cache.clear()


def _live_allocations(pod_uid: str) -> list[Allocation]:
    return list(Allocation.objects.filter(pod_uid=pod_uid).select_related("pool").order_by("interface", "ip_version"))


def _allocate_locked(
    request: AllocateRequest, cluster: ClusterSettings, trace: list | None = None, *, dry_run: bool = False,
    visible: frozenset[str] | None = None, cross_node_confirmed: bool = False,
) -> list[Allocation]:
    """Everything under one transaction; returns every live allocation of the pod.

    `dry_run` (explain): no row lock is taken and nothing is written; `visible` limits the pools considered (and the
    held addresses shown) to those the caller may see, so another tenant's plan is never revealed.
    `cross_node_confirmed`: the API server confirmed the pod's new UID and node (see `ippool_allocate`).
    """
    facts = request.facts
    pod_tombstone_refuse(facts=facts, container_id=request.container_id)
    endpoints = Endpoint.objects if dry_run else Endpoint.objects.select_for_update()
    endpoint = endpoints.filter(namespace=facts.namespace, name=facts.name).first()
    held_rows: list[Allocation] = []
    if endpoint is not None and endpoint.uid == facts.uid:
        held_rows = _shown(list(endpoint.allocations.select_related("pool").order_by("interface", "ip_version")),
                           visible)
        if any(row.interface == request.if_name for row in held_rows):
            return held_rows  # idempotent ADD (sandbox re-created, retried request)
    pools, cached = _pool_catalog()
    if visible is not None:
        pools = {name: pool for name, pool in pools.items() if name in visible}
    views = {name: pool_view(p) for name, p in pools.items()}
    try:
        nics = _plan(request, cluster, pools)
        plan = _filter_candidates(request, nics, views, trace)
    except (NotFound, AutoPoolNotReady):
        if not cached:
            raise
        pool_catalog_invalidate()  # the pool may be younger than the cache: plan again from fresh data
        raise _StaleCatalog("a named pool is not in the cached catalog") from None

    if endpoint is not None and endpoint.uid != facts.uid:
        old = list(endpoint.allocations.select_related("pool"))
        if not cross_node_confirmed:
            _refuse_cross_node_replacement(endpoint, old, facts)
        static = is_static_owner(facts.owner.kind, cluster) and endpoint.owner_kind == facts.owner.kind
        if dry_run:
            if static and any(r.interface == request.if_name for r in old):
                return _shown(sorted(old, key=lambda r: (r.interface, r.ip_version)), visible)
        elif static:
            if _static_rebind(endpoint, request, nics):
                return _live_allocations(facts.uid)
        else:
            # Same name, new pod (stateless) on the same node: the old incarnation is gone, its addresses can go.
            _release_rows(old, reason="pod-recreated", endpoint=endpoint)
    if dry_run:
        endpoint = Endpoint(namespace=facts.namespace, name=facts.name, uid=facts.uid, node=facts.node)
    else:
        endpoint = _endpoint_upsert(endpoint, facts)
    held = {(a.interface, a.ip_version) for a in held_rows}
    plan = [(nic, version, names) for nic, version, names in plan if (nic.interface, version) not in held]
    if not plan:
        raise NoPoolAvailable(f"no IP family is enabled or configured for {request.if_name}")
    new_rows = _lock_and_take(request, endpoint, plan, pools, trace, dry_run=dry_run)
    return sorted(held_rows + new_rows, key=lambda r: (r.interface, r.ip_version))


def _shown(rows: list[Allocation], visible: frozenset[str] | None) -> list[Allocation]:
    return rows if visible is None else [row for row in rows if row.pool.name in visible]


class CrossNodeReplacement(Unavailable):
    """A pod name came back with a new UID on another node than the one its addresses are recorded on.

    A node's credential only vouches for pods on that node: the new UID and node are the caller's claim, so the
    addresses recorded elsewhere are neither released nor moved on its word (a compromised node could otherwise free
    any pod's address, or take a StatefulSet's). When the portal can read the API server, the claim is checked there
    (`ippool_allocate`); otherwise this error stands: retryable (503), and the owning node's CNI DEL or the GC (which
    compares UIDs read from the API server) frees the addresses.
    """


def _refuse_cross_node_replacement(endpoint: Endpoint, rows: list[Allocation], facts: PodFacts) -> None:
    elsewhere = sorted({row.node for row in rows if row.node != facts.node})
    if elsewhere:
        raise CrossNodeReplacement(
            f"pod {facts.namespace}/{facts.name} still holds {', '.join(r.address for r in rows)} recorded on node "
            f"{', '.join(elsewhere)} for pod UID {endpoint.uid}; a node may only replace allocations recorded on "
            f"itself, so they are freed by the CNI DEL on that node or by the GC once the API server shows the old "
            f"pod gone; retry",
            details={"nodes": elsewhere, "heldUID": endpoint.uid},
        )


def _filter_candidates(request, nics, views, trace) -> list[tuple[NicRequest, int, list[str]]]:
    """Affinity filtering and specificity order for every (NIC, family); explains every rejection."""
    facts = request.facts
    plan: list[tuple[NicRequest, int, list[str]]] = []
    for nic in nics:
        for version, names in ((4, nic.v4), (6, nic.v6)):
            if not names:
                continue
            nad = multus_network_for_nic(
                facts,
                nic.interface,
                first_nic="eth0",
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
    return plan


def _lock_and_take(request, endpoint, plan, pools, trace, *, dry_run: bool = False) -> list[Allocation]:
    """Lock every candidate pool in primary-key order, take one address per (NIC, family), insert the rows.

    Reservations are read before the lock so the lock is held for as few statements as possible; the locked
    rows must carry the generation the plan was made with (else the plan is redone).

    The pool rows are locked FOR NO KEY UPDATE, not FOR UPDATE: allocators still exclude each other, but a
    release committing at the same time can take the FOR KEY SHARE its deferred foreign-key checks need on the
    same rows (`ReleasedAddress` and `AddressHistory` reference the pool). Those checks run at commit in the
    order of the released rows, not in primary-key order, so with FOR UPDATE a dual-stack ADD and a DEL in the
    same two pools deadlocked.
    """
    facts = request.facts
    blocked = {v: reserved_ranges(v) for v in {version for _, version, _ in plan}}
    wanted = {pools[n].pk: pools[n].generation for _, _, ns in plan for n in ns}
    rows = IPPool.objects if dry_run else IPPool.objects.select_for_update(no_key=True)
    with metrics.lock_wait("pool"):
        locked = list(rows.filter(pk__in=wanted).order_by("pk"))
    if len(locked) != len(wanted) or any(p.generation != wanted[p.pk] for p in locked):
        pool_catalog_invalidate()
        raise _StaleCatalog("a candidate pool changed while planning")
    by_name = {p.name: p for p in locked}
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
            row = _new_allocation(pool, number, nic, version, endpoint, request, annotation_routes)
            row.bound_at = now
            new_rows.append(row)
            if trace is not None:
                _trace_entry(trace, nic.interface, version)["tried"] = [c.__dict__ for c in tried] + [
                    {"pool": name, "reason": f"serves {row.address}"}
                ]
            break
        else:
            growing = [by_name[n] for n in names if by_name[n].auto_app_uid
                       and by_name[n].auto_desired > by_name[n].total_ip_count]
            if growing:
                raise AutoPoolNotReady(f"auto pool {growing[0].name} is full but still growing to "
                                       f"{growing[0].auto_desired} addresses; retry")
            details = [{"pool": c.pool, "reason": c.reason} for c in tried]
            raise Exhausted(
                f"all IP addresses used out: no IPv{version} address for {nic.interface} in "
                + ", ".join(f"{c.pool} ({c.reason})" for c in tried),
                details={"interface": nic.interface, "version": version, "candidates": details},
            )
    if dry_run:
        return new_rows
    Allocation.objects.bulk_create(new_rows)
    for pool in {row.pool_id: row.pool for row in new_rows}.values():
        IPPool.objects.filter(pk=pool.pk).update(scan_from=pool.scan_from, fresh_exhausted=pool.fresh_exhausted)
    return new_rows


def _trace_entry(trace: list, interface: str, version: int) -> dict:
    return next(e for e in trace if e["interface"] == interface and e["version"] == version)


def ippool_explain(*, request: AllocateRequest, visible: frozenset[str] | None = None) -> dict:
    """Dry run of `ippool_allocate`: the same planning, without a row lock or a write.

    Says which pool would serve each NIC and family, and why every other candidate was rejected or skipped.
    `visible`: the pool names the caller may see (None: all); the others are not candidates and are never named, so
    a tenant learns nothing of another tenant's pools. A stale pool catalog is retried as `ippool_allocate` does.
    """
    cluster = ClusterSettings.load_cached()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        trace: list = []
        result: dict = {"ok": True}
        try:
            with transaction.atomic():
                rows = _allocate_locked(request, cluster, trace, dry_run=True, visible=visible)
                result["response"] = allocation_response(rows, cluster)
                transaction.set_rollback(True)
            break
        except _StaleCatalog as exc:
            if attempt == MAX_ATTEMPTS:
                result = {"ok": False, "error": Unavailable(f"the pool catalog kept changing ({exc}); retry").to_dict()}
        except IPAMError as exc:
            result = {"ok": False, "error": exc.to_dict()}
            break
    result["nics"] = trace
    return result


def _plan(request: AllocateRequest, cluster: ClusterSettings, pools: dict[str, IPPool]) -> list[NicRequest]:
    """Rule 1 (SpiderSubnet auto pools) here, rules 2–6 in the engine."""
    facts = request.facts
    annotations = facts.annotations
    if ANNO_SUBNETS in annotations or ANNO_SUBNET in annotations:
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


class AutoPoolNotReady(Unavailable):
    """Spec §4.4: the application's auto pool does not exist yet or is still growing; the agent waits and retries
    (the portal answers at once instead of holding the request)."""

    code = "autopool_not_ready"


def _plan_auto_pools(request: AllocateRequest, cluster: ClusterSettings, pools: dict[str, IPPool]) -> list[NicRequest]:
    """Spec §4.4: look the application's auto pool up for every NIC and family the annotation names; the
    application controller creates and sizes it (third-party controllers: ``third_party_autopools_ensure``)."""
    facts = request.facts
    if not (cluster.enable_spider_subnet and cluster.enable_auto_pool_for_application):
        raise InvalidInput("the ipam.spidernet.io/subnet(s) annotations need enableSpiderSubnet and "
                           "enableAutoPoolForApplication")
    if facts.owner.kind == "Pod":
        raise InvalidInput("auto-created IPPools from a SpiderSubnet don't support a pod without a controller")
    result = []
    for item in autopool.subnet_requests(facts.annotations):
        found: dict[int, tuple[str, ...]] = {4: (), 6: ()}
        for version in (4, 6):
            subnet_name = item.subnet(version)
            if not subnet_name or version not in cluster.families:
                continue
            matches = [
                p.name
                for p in pools.values()
                if p.ip_version == version
                and p.auto_app_uid == facts.owner.uid
                and p.auto_interface == item.interface
                and p.owner_subnet is not None
                and p.owner_subnet.name == subnet_name
            ]
            if not matches:
                raise AutoPoolNotReady(
                    f"the auto-created IPv{version} IPPool of {facts.owner.kind} {facts.namespace}/{facts.owner.name}"
                    f" for {item.interface} from SpiderSubnet {subnet_name} is not ready yet"
                )
            if len(matches) > 1:
                raise Conflict(f"more than one auto-created IPPool matches: {sorted(matches)}")
            found[version] = (matches[0],)
        result.append(NicRequest(interface=item.interface, clean_gateway=request.cni.clean_gateway, v4=found[4],
                                 v6=found[6], rule="subnet"))
    return result


def third_party_autopools_ensure(facts: PodFacts) -> None:
    """Spec §4.2: a pod of a third-party controller (an OpenKruise CloneSet, say) gets its auto pools made here,
    during its ADD, sized by ``ipam.spidernet.io/ippool-ip-number`` (required: replicas are unknown, so ``N`` and
    ``+N`` both mean N addresses; C8 keeps the value as written)."""
    from spiderweb.ipam import autopools

    if facts.owner.kind == "Pod" or autopool.is_native(facts.owner.kind, facts.owner.api_version) \
            or not autopool.wants_auto_pools(facts.annotations):
        return
    raw = facts.annotations.get(ANNO_IPPOOL_IP_NUMBER)
    if raw is None:
        raise InvalidInput(f"a pod of the third-party controller {facts.owner.kind} {facts.owner.name} needs "
                           f"{ANNO_IPPOOL_IP_NUMBER} to size its auto pool")
    number = autopool.ip_number_parse(raw, cluster_default=0)
    app = autopool.App(api_version=facts.owner.api_version, kind=facts.owner.kind, namespace=facts.namespace,
                       name=facts.owner.name, uid=facts.owner.uid)
    autopools.autopools_reconcile(app=app, requests=autopool.subnet_requests(facts.annotations), ip_number=number,
                                  replicas=0, reclaim=autopool.reclaim_parse(facts.annotations.get(
                                      ANNO_IPPOOL_RECLAIM)))
    pool_catalog_invalidate()


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
            r
            for r in rows
            if r.interface == request.if_name and r.pool.name not in wanted.get((r.interface, r.ip_version), set())
        ]
        if outdated:
            _release_rows(outdated, reason="outdated-pool", endpoint=endpoint)
            rows = [r for r in rows if r not in outdated]
    if not any(r.interface == request.if_name for r in rows):
        return False
    now = timezone.now()
    _history_close(rows, endpoint, reason="rebound-to-new-pod", now=now)
    Allocation.objects.filter(pk__in=[r.pk for r in rows]).update(
        pod_uid=facts.uid, container_id=request.container_id, node=facts.node, bound_at=now
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
    raw = facts.annotations.get(ANNO_ROUTES)
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
        network=request.network,
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
        batch = _used_keys_from(pool.pk, key)
        horizon = key_to_int(batch[-1]) if len(batch) == SCAN_BATCH else None
        used = sorted({key_to_int(k) for k in batch})
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


def _used_keys_from(pool_id: int, key: str) -> list[str]:
    """The SCAN_BATCH lowest keys ≥ key that are live or released in the pool, in one index-ordered query."""
    live = Allocation.objects.filter(pool_id=pool_id, address_key__gte=key).order_by("address_key")
    released = ReleasedAddress.objects.filter(pool_id=pool_id, address_key__gte=key).order_by("address_key")
    if not connection.features.supports_slicing_ordering_in_compound:  # SQLite: two queries
        keys = list(live.values_list("address_key", flat=True)[:SCAN_BATCH])
        keys += released.values_list("address_key", flat=True)[:SCAN_BATCH]
        return sorted(keys)[:SCAN_BATCH]
    union = live.values_list("address_key")[:SCAN_BATCH].union(
        released.values_list("address_key")[:SCAN_BATCH], all=True
    )
    return sorted(k for (k,) in union)[:SCAN_BATCH]


def _recycled_address(pool: IPPool, free: RangeSet) -> int | None:
    """The least-recently-released address still inside the pool and not reserved."""
    stale: list[int] = []
    found = None
    oldest_first = ReleasedAddress.objects.filter(pool=pool).order_by("released_at", "id")
    for record in oldest_first.iterator(chunk_size=SCAN_BATCH):
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


def ippool_release(
    *, namespace: str, name: str, pod_uid: str, reason: str, node: str | None = None, dead_sandbox_id: str = ""
) -> list[str]:
    """Release every address held by this incarnation of the pod (all NICs) and drop its endpoint.

    Idempotent and UID-guarded: nothing happens when the pod holds nothing or the addresses belong to a newer
    incarnation. With `node`, only allocations made on that node are touched (node credentials). It waits for an
    ADD of the pod in flight (`_pod_lock`), so it releases what that ADD took, every NIC of it.

    `dead_sandbox_id` is the container ID of a CNI DEL for a pod the agent knows will never be alive again: the
    sandbox is remembered (`PodTombstone`), so an ADD of it that this DEL overtook is refused when it arrives.
    """
    with metrics.timed(metrics.RELEASES, metrics.RELEASE_DURATION), transaction.atomic():
        _pod_lock(pod_uid)
        if connection.vendor == "postgresql":
            return _release_postgresql(namespace=namespace, name=name, pod_uid=pod_uid, reason=reason, node=node,
                                       dead_sandbox_id=dead_sandbox_id)
        if dead_sandbox_id:
            pod_tombstone_record(pod_uid=pod_uid, container_id=dead_sandbox_id)
        endpoint = Endpoint.objects.select_for_update().filter(namespace=namespace, name=name).first()
        if endpoint is None or endpoint.uid != pod_uid:
            return []  # nothing, or a newer incarnation: a DEL for an old pod must not touch it
        rows = Allocation.objects.filter(endpoint=endpoint, pod_uid=pod_uid).select_related("pool")
        if node is not None:
            rows = rows.filter(node=node)
        released = _release_rows(list(rows), reason=reason, endpoint=endpoint)
        _endpoint_delete_if_empty(endpoint)
    return released


# The same release as the ORM code above, tombstone included, as one statement after the pod lock. Data-modifying
# CTEs share one snapshot, hence the explicit exclusion of the rows being deleted when deciding whether the endpoint
# is now empty; the endpoint foreign key is checked at commit (deferred). The snapshot is taken after the pod lock
# was granted, so it sees every NIC an ADD of the pod committed meanwhile.
_RELEASE_SQL = """
WITH ep AS (
    SELECT id, namespace, name FROM ipam_endpoint
    WHERE namespace = %(namespace)s AND name = %(name)s AND uid = %(uid)s
    FOR UPDATE
), gone AS (
    DELETE FROM ipam_allocation a USING ep
    WHERE a.endpoint_id = ep.id AND a.pod_uid = %(uid)s AND (%(node)s::text IS NULL OR a.node = %(node)s)
    RETURNING a.id, a.pool_id, a.address_key, a.address, a.ip_version, a.pod_uid, a.node, a.interface,
              a.container_id, a.bound_at, ep.id AS endpoint_id, ep.namespace, ep.name
), recycled AS (
    INSERT INTO ipam_releasedaddress (pool_id, address_key, released_at)
    SELECT pool_id, address_key, now() FROM gone
    ON CONFLICT (pool_id, address_key) DO UPDATE SET released_at = EXCLUDED.released_at
), history AS (
    INSERT INTO ipam_addresshistory (pool_id, pool_name, ip_version, address, pod_namespace, pod_name, pod_uid,
                                     node, interface, container_id, allocated_at, released_at, release_reason)
    SELECT g.pool_id, p.name, g.ip_version, g.address, g.namespace, g.name, g.pod_uid, g.node, g.interface,
           g.container_id, g.bound_at, now(), %(reason)s
    FROM gone g JOIN ipam_ippool p ON p.id = g.pool_id
), dropped AS (
    DELETE FROM ipam_endpoint e USING ep
    WHERE e.id = ep.id AND NOT EXISTS (
        SELECT 1 FROM ipam_allocation a WHERE a.endpoint_id = ep.id AND a.id NOT IN (SELECT id FROM gone)
    )
), tombstone AS (
    INSERT INTO ipam_podtombstone (pod_uid, container_id, created_at)
    SELECT %(uid)s, %(dead_sandbox_id)s, now() WHERE %(dead_sandbox_id)s <> ''
    ON CONFLICT (pod_uid, container_id) DO NOTHING
)
SELECT host(address) FROM gone ORDER BY interface, ip_version
"""


def _release_postgresql(
    *, namespace: str, name: str, pod_uid: str, reason: str, node: str | None, dead_sandbox_id: str
) -> list[str]:
    params = {"namespace": namespace, "name": name, "uid": pod_uid, "node": node, "reason": reason,
              "dead_sandbox_id": dead_sandbox_id}
    with connection.cursor() as cursor:
        cursor.execute(_RELEASE_SQL, params)
        released = [address for (address,) in cursor.fetchall()]
    if released:
        metrics.RELEASED_IPS.labels(reason=metrics.release_reason_label(reason)).inc(len(released))
    return released


def allocation_release(*, allocation: Allocation, reason: str, pod_uid: str | None = None) -> list[str]:
    """Release one allocation (admin action); the endpoint goes when it holds nothing more.

    With ``pod_uid`` it is guarded like a CNI DEL: when the address is now held by another pod incarnation (a
    StatefulSet pod re-bound to a new UID keeps the row), nothing is released and ``Conflict`` says who holds it.
    Released already: nothing happens (an empty list).
    """
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=allocation.endpoint_id)
        rows = list(Allocation.objects.filter(pk=allocation.pk).select_related("pool"))
        if pod_uid is not None and rows and rows[0].pod_uid != pod_uid:
            raise Conflict(f"{rows[0].address} is held by pod UID {rows[0].pod_uid}, not {pod_uid}; nothing released",
                           details={"address": rows[0].address, "podUID": rows[0].pod_uid})
        released = _release_rows(rows, reason=reason, endpoint=endpoint)
        _endpoint_delete_if_empty(endpoint)
    return released


def _release_rows(rows: list[Allocation], *, reason: str, endpoint: Endpoint | None = None) -> list[str]:
    """Delete live rows, remember the addresses for least-recently-released reuse, write the history.

    No pool lock is needed: a released address is not live, so no allocation can be choosing it concurrently,
    and an allocator walking the pool sees the address as used in the live or the released table (each query
    has its own snapshot, and the row moves from one to the other in one commit). The caller holds the
    endpoint's row lock.
    """
    if not rows:
        return []
    now = timezone.now()
    deleted = Allocation.objects.filter(pk__in=[r.pk for r in rows])._raw_delete(Allocation.objects.db)
    if deleted != len(rows):
        raise Conflict("allocations changed while releasing; retry")
    ReleasedAddress.objects.bulk_create(
        [ReleasedAddress(pool_id=r.pool_id, address_key=r.address_key, released_at=now) for r in rows],
        update_conflicts=True,
        unique_fields=["pool", "address_key"],
        update_fields=["released_at"],
    )
    _history_close(rows, endpoint, reason=reason, now=now)
    metrics.RELEASED_IPS.labels(reason=metrics.release_reason_label(reason)).inc(len(rows))
    return [r.address for r in rows]


def _history_close(rows: list[Allocation], endpoint: Endpoint | None, *, reason: str, now) -> None:
    """Record finished holdings (the live ones are the allocation rows themselves)."""
    endpoints = {endpoint.pk: endpoint} if endpoint is not None else {}
    missing = {r.endpoint_id for r in rows} - set(endpoints)
    endpoints |= {e.pk: e for e in Endpoint.objects.filter(pk__in=missing)}
    AddressHistory.objects.bulk_create(
        [
            AddressHistory(
                pool_id=r.pool_id,
                pool_name=r.pool.name,
                ip_version=r.ip_version,
                address=r.address,
                pod_namespace=endpoints[r.endpoint_id].namespace,
                pod_name=endpoints[r.endpoint_id].name,
                pod_uid=r.pod_uid,
                node=r.node,
                interface=r.interface,
                container_id=r.container_id,
                allocated_at=r.bound_at,
                released_at=now,
                release_reason=reason,
            )
            for r in rows
        ]
    )


def _endpoint_delete_if_empty(endpoint: Endpoint) -> None:
    """Drop the endpoint when it holds nothing more, in one statement (no ORM delete collector)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM ipam_endpoint WHERE id = %s AND NOT EXISTS "
            "(SELECT 1 FROM ipam_allocation WHERE endpoint_id = %s)",
            [endpoint.pk, endpoint.pk],
        )


def endpoints_without_addresses_delete() -> int:
    """Spec §6 ``enableCleanOutdatedEndpoint``: drop every endpoint that holds no address any more (one statement,
    so an endpoint that gets an allocation meanwhile is kept). Returns how many went."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM ipam_endpoint e WHERE NOT EXISTS "
                       "(SELECT 1 FROM ipam_allocation a WHERE a.endpoint_id = e.id)")
        return cursor.rowcount


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


def node_gc(*, node: str, network: str, valid_attachments: list[tuple[str, str]]) -> list[str]:
    """CNI 1.1 GC: release this node's allocations of `network` whose container the runtime no longer knows.

    The runtime's list covers one network (one conflist), so only allocations made through that network are
    candidates: a pod attached to other networks only is never touched. StatefulSet and KubeVirt allocations
    are kept (their pod comes back by name); allocations without a container id or network name are left to
    the cluster GC, never guessed at here.
    """
    if not network:
        raise InvalidInput("GC needs the network name: the valid attachments list covers one network only")
    valid = {(c, i) for c, i in valid_attachments}
    valid_containers = {c for c, _ in valid}
    cluster = ClusterSettings.load_cached()
    stale = (
        Allocation.objects.filter(node=node, network=network)
        .exclude(container_id="")
        .exclude(container_id__in=valid_containers)
        .select_related("endpoint")
    )
    released: list[str] = []
    for endpoint in {row.endpoint for row in stale if not is_static_owner(row.endpoint.owner_kind, cluster)}:
        released += ippool_release(
            namespace=endpoint.namespace, name=endpoint.name, pod_uid=endpoint.uid, reason="cni-gc", node=node
        )
    return released
