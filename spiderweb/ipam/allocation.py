"""Allocate and release addresses for pods (spec §3, §5.1, §6): the hot path.

One allocation is one short transaction:

0. take the pod's lock (`POD_LOCK_CLASS`, by pod UID), which its DEL takes too,
1. lock the pod's endpoint row (serialises retries and parallel ADDs of one pod; on PostgreSQL the statement
   that takes the pod lock inserts it for a new pod or locks it, `_endpoint_lock`), and refuse a sandbox whose
   DEL came first (`spiderweb.ipam.tombstones`),
2. plan the NICs and candidate pools with `spiderweb.engine.selection` (pure, explains every rejection),
3. lock every candidate pool row in primary-key order (never a global lock, never a deadlock): on PostgreSQL
   FOR KEY SHARE, which allocators share and pool edits wait for; on SQLite, for `explain` and for a capped
   pool, FOR NO KEY UPDATE (see `_lock_and_take`),
4. take the next address of each (NIC, family): never-used addresses first (walking up from the pool's
   `scan_from` hint with indexed range queries, so a /64 or a pool holding 60,000 allocations costs the same
   as an empty one), then released addresses least-recently-released first; on PostgreSQL each is *claimed*
   (`_claim`), so concurrent allocations of one pool take neighbouring addresses side by side,
5. insert `Allocation` rows, whose unique constraints make a duplicate impossible even if this code is wrong.

On PostgreSQL a new pod's allocation is one round trip (`_allocate_in_one_call`): the plan and the rows are made
here from cached pools, and one server-side function (`spiderweb_allocate`, migration 0010) carries out steps 0–5
for the pod's first candidate pools in one statement. It and a release are prepared once per connection
(`spiderweb.ipam.prepared`). Everything else (a retried ADD, a re-created pod, released addresses, claims that
must wait or move on, the first candidate pool unusable) takes the usual transaction, five round trips: BEGIN, the
pod lock with the endpoint, the pool lock, the claim, COMMIT.

Every NIC and family of a request succeeds or none does (no half-allocated dual-stack pod). ADD is idempotent by
(pod UID, interface); DEL is idempotent and guarded by pod UID, so a DEL for an older incarnation does nothing.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson
from django.conf import settings as django_settings
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    OperationalError,
    connection,
    connections,
    transaction,
)
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
from spiderweb.ipam import prepared
from spiderweb.ipam.models import AddressHistory, Allocation, ClusterSettings, Endpoint, IPPool, ReleasedAddress
from spiderweb.ipam.tombstones import pod_tombstone_conflict, pod_tombstone_record, pod_tombstone_refuse
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

# The pod lock, pg_advisory_xact_lock(POD_LOCK_CLASS, hashtext(pod UID)), serialises the ADDs and DELs of one pod
# until their transactions end: a DEL waits for an ADD in flight. Every PostgreSQL transaction that allocates or
# releases takes it first, in a statement of its own (the endpoint statement, or the first statement of
# `spiderweb_allocate` and `spiderweb_release`): under READ COMMITTED each statement takes its snapshot when it
# starts, so the statements after it see what the transaction it waited for committed. Always the first lock of its
# transaction, and one per transaction, so it cannot be part of a deadlock; per pod, never global (two UIDs whose
# hashes collide only wait for each other briefly). SQLite needs none: one writer at a time, serializable
# transactions. The constant keeps the keys apart from anyone else's advisory locks; it spells "SWPD".
POD_LOCK_CLASS = 0x53575044


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
    if _one_call_possible(request):
        rows = _allocate_in_one_call(request, cluster)
        if rows is not None:
            return allocation_response(rows, cluster)
    cross_node_confirmed = False
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with transaction.atomic():
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
    pools, versions = _pool_catalog_load(_pool_catalog_cache.get("pools"), _pool_catalog_cache.get("versions"))
    _pool_catalog_cache.update(pools=pools, versions=versions, at=now)
    return pools, False


# Every pool's and subnet's row version. A row's xmin changes with every UPDATE of it (a row lock leaves it alone).
_ROW_VERSIONS_SQL = ("SELECT 'p', id, xmin::text FROM ipam_ippool UNION ALL "
                     "SELECT 's', id, xmin::text FROM ipam_subnet")


def _pool_catalog_load(pools: dict[str, IPPool] | None, versions: dict | None) -> tuple[dict[str, IPPool], dict | None]:
    """The catalog and its row versions, read again: on PostgreSQL only the pools whose row changed since `versions`
    (a refresh with a thousand pools reads two small columns of each, not every pool's JSON); all of them the first
    time, on SQLite, or when a subnet changed (a pool carries its subnet).

    The versions are read before the rows, so a row changed in between is read again at the next refresh rather
    than kept stale.
    """
    if connection.vendor != "postgresql":
        return {p.name: p for p in IPPool.objects.select_related("owner_subnet")}, None
    with connection.cursor() as cursor:
        cursor.execute(_ROW_VERSIONS_SQL)
        fresh = {(kind, pk): xmin for kind, pk, xmin in cursor.fetchall()}
    subnets = {key: xmin for key, xmin in fresh.items() if key[0] == "s"}
    if pools is None or versions is None or subnets != {k: x for k, x in versions.items() if k[0] == "s"}:
        return {p.name: p for p in IPPool.objects.select_related("owner_subnet")}, fresh
    unchanged = {pk for (kind, pk), xmin in fresh.items() if kind == "p" and versions.get((kind, pk)) == xmin}
    changed = [pk for kind, pk in fresh if kind == "p" and pk not in unchanged]
    kept = {name: pool for name, pool in pools.items() if pool.pk in unchanged}
    if changed:
        kept.update((p.name, p) for p in IPPool.objects.select_related("owner_subnet").filter(pk__in=changed))
    return kept, fresh


def pool_catalog_invalidate() -> None:
    """Read the whole catalog again at the next allocation (after a change made in this process)."""
    _pool_catalog_cache.clear()


@dataclass(frozen=True)
class _CatalogIndex:
    """What planning reads of every pool: their views for the selection rules, and their names (sorted) and the
    `default: true` ones by family."""

    views: dict[str, PoolView]
    names: dict[int, list[str]]
    defaults: dict[int, list[str]]


def _catalog_index(pools: dict[str, IPPool]) -> _CatalogIndex:
    """`pools`' index, built once per catalog load rather than once per allocation: with a thousand pools (an auto
    pool per application), building it took ~10 ms of every ADD. Any other dict (explain's visible pools) gets its
    own."""
    cached = _pool_catalog_cache.get("index")
    if cached is not None and cached[0] is pools:
        return cached[1]
    names: dict[int, list[str]] = {4: [], 6: []}
    defaults: dict[int, list[str]] = {4: [], 6: []}
    for pool in sorted(pools.values(), key=lambda p: p.name):
        names[pool.ip_version].append(pool.name)
        if pool.default:
            defaults[pool.ip_version].append(pool.name)
    index = _CatalogIndex(views={name: pool_view(pool) for name, pool in pools.items()}, names=names,
                          defaults=defaults)
    if pools is _pool_catalog_cache.get("pools"):
        _pool_catalog_cache["index"] = (pools, index)  # with its catalog: a thread may be loading a newer one
    return index


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
    endpoint, created = _endpoint_lock(facts, dry_run=dry_run)  # takes the pod lock first (not for a dry run)
    # A new endpoint cannot return before the pools are locked, so the claim path reads the tombstone on that
    # statement (a round trip fewer); every other path checks it here, before it may return what the pod holds.
    tombstone_on_pool_lock = created and not dry_run and _claims_addresses() and bool(request.container_id)
    if not tombstone_on_pool_lock:
        pod_tombstone_refuse(facts=facts, container_id=request.container_id)
    held_rows: list[Allocation] = []
    if not created and endpoint is not None and endpoint.uid == facts.uid:
        held_rows = _shown(list(endpoint.allocations.select_related("pool").order_by("interface", "ip_version")),
                           visible)
        if any(row.interface == request.if_name for row in held_rows):
            return held_rows  # idempotent ADD (sandbox re-created, retried request)
    pools, cached = _pool_catalog()
    if visible is not None:
        pools = {name: pool for name, pool in pools.items() if name in visible}
    try:
        nics = _plan(request, cluster, pools)
        plan = _filter_candidates(request, nics, _catalog_index(pools).views, trace)
    except (NotFound, AutoPoolNotReady):
        if not cached:
            raise
        pool_catalog_invalidate()  # the pool may be younger than the cache: plan again from fresh data
        raise _StaleCatalog("a named pool is not in the cached catalog") from None

    if not created and endpoint is not None and endpoint.uid != facts.uid:
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
    new_rows = _lock_and_take(request, endpoint, plan, pools, trace, dry_run=dry_run,
                              tombstone_on_pool_lock=tombstone_on_pool_lock)
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


def _lock_and_take(request, endpoint, plan, pools, trace, *, dry_run: bool = False,
                   tombstone_on_pool_lock: bool = False) -> list[Allocation]:
    """Lock every candidate pool in primary-key order, take one address per (NIC, family), insert the rows.

    Two ways, one rule (never-used addresses first, lowest first, then least-recently-released; reserved and
    excluded addresses never), chosen by `_claims_addresses`:

    - PostgreSQL: the pool rows are only share-locked (FOR KEY SHARE: allocators of one pool do not wait for each
      other; a pool edit, which takes FOR UPDATE, waits for them and they for it), and each address is *claimed*
      (`_claim`): a non-blocking per-address advisory lock plus an INSERT ... ON CONFLICT DO NOTHING, so
      concurrent allocations of one pool take neighbouring addresses at the same time instead of queueing for
      the whole transaction. Locking, reservations and the first scan are one statement; the claim another.
    - SQLite (one writer at a time), `explain` (no lock, no write) and a pool with a cap on its allocations
      (the count must be serialised): the pool rows are locked FOR NO KEY UPDATE and the address is picked and
      inserted under that lock, as `_pool_take_address` says.

    FOR KEY SHARE and FOR NO KEY UPDATE both leave room for the FOR KEY SHARE that the deferred foreign-key
    checks of a release committing meanwhile take on the same rows (`ReleasedAddress` and `AddressHistory`
    reference the pool), in the order of the released rows, not in primary-key order; FOR UPDATE deadlocked
    there. The locked rows must carry the generation the plan was made with (else the plan is redone).
    `tombstone_on_pool_lock`: the share-lock statement also refuses a sandbox whose DEL came first.
    """
    facts = request.facts
    wanted = {pools[n].pk: pools[n].generation for _, _, ns in plan for n in ns}
    versions = {version for _, version, _ in plan}
    claims = not dry_run and _claims_addresses()
    if claims:
        catalog = {pools[n].pk: pools[n] for _, _, ns in plan for n in ns}
        tombstone = (facts.uid, request.container_id) if tombstone_on_pool_lock else None
        locked, blocked, first_batches, tombstoned = _pools_share_lock(catalog, versions, tombstone)
        if tombstoned:
            raise pod_tombstone_conflict(facts=facts, container_id=request.container_id)
    else:
        blocked = {v: reserved_ranges(v) for v in versions}
        first_batches = {}
        rows = IPPool.objects if dry_run else IPPool.objects.select_for_update(no_key=True)
        with metrics.lock_wait("pool"):
            locked = list(rows.filter(pk__in=wanted).order_by("pk"))
    if len(locked) != len(wanted) or any(p.generation != wanted[p.pk] for p in locked):
        pool_catalog_invalidate()
        raise _StaleCatalog("a candidate pool changed while planning")
    by_name = {p.name: _with_cached_ranges(p, pools.get(p.name)) for p in locked}
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
            row = _new_allocation(pool, nic, version, endpoint, request, annotation_routes)
            row.bound_at = now
            if claims:
                number, reason = _claim(pool, blocked[version], row, first_batches.get(pool.pk))
            else:
                number, reason = _pool_take_address(pool, blocked[version])
            if number is None:
                tried.append(_Candidate(name, reason))
                continue
            row.address, row.address_key = int_to_ip(number, version), address_key(number, version)
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
    if dry_run or claims:
        return new_rows  # a claim inserted its row already
    Allocation.objects.bulk_create(new_rows)
    for pool in {row.pool_id: row.pool for row in new_rows}.values():
        IPPool.objects.filter(pk=pool.pk).update(scan_from=pool.scan_from, fresh_exhausted=pool.fresh_exhausted)
    return new_rows


def _with_cached_ranges(pool: IPPool, cached: IPPool | None) -> IPPool:
    """Reuse the catalog's parsed ranges for a freshly read row of the same generation (the spec is the same)."""
    if cached is not None and cached.generation == pool.generation:
        for name in ("total_ranges", "network"):
            if name in cached.__dict__:
                pool.__dict__[name] = cached.__dict__[name]
    return pool


def _claims_addresses() -> bool:
    """Whether allocations claim addresses concurrently (`_claim`) rather than under an exclusive pool lock.

    PostgreSQL only, and only without SPIDERPOOL_IPPOOL_MAX_ALLOCATED_IPS: a cap is a count of a pool's
    allocations, which stays exact only while one allocator at a time inserts into the pool.
    """
    return connection.vendor == "postgresql" and not django_settings.SPIDERWEB_IPPOOL_MAX_ALLOCATED_IPS


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
    index = _catalog_index(pools)
    return plan_nics(
        facts,
        if_name=request.if_name,
        cni=request.cni,
        pool_names=index.names,
        cluster_default=index.defaults,
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


def _endpoint_lock(facts: PodFacts, *, dry_run: bool) -> tuple[Endpoint | None, bool]:
    """Take the pod's lock, then its endpoint row-locked (serialises retries and parallel ADDs of one pod).

    Returns (endpoint, created). On PostgreSQL one statement takes the pod lock (`POD_LOCK_CLASS`, first of the
    transaction) and then inserts the endpoint for a new pod or locks the one recorded, returned as it was so
    the caller still sees an older incarnation's UID and owner. The insert and its conflict check see the
    endpoint as committed when the lock was granted (ON CONFLICT does not use the statement's snapshot), and
    every later statement has a snapshot taken after it, as the pod lock requires. Elsewhere (one writer) the
    endpoint is locked if it exists (None if not). `dry_run` (explain): read only, no lock, nothing created.
    """
    if dry_run or connection.vendor != "postgresql":
        lookup = Endpoint.objects.filter(namespace=facts.namespace, name=facts.name)
        if dry_run:
            return lookup.first(), False
        return lookup.select_for_update().first(), False
    sql, params = _endpoint_statement(facts)
    with connection.cursor() as cursor, metrics.lock_wait("pod"):
        cursor.execute(sql, params)
        return _endpoint_from_row(cursor.fetchone())


def _endpoint_statement(facts: PodFacts) -> tuple[str, list]:
    """`_endpoint_lock`'s statement on PostgreSQL: the pod lock, then insert the endpoint or lock the recorded one;
    it returns the endpoint's columns and whether it was created."""
    new = Endpoint(namespace=facts.namespace, name=facts.name, **_endpoint_fields(facts))
    db = connections[DEFAULT_DB_ALIAS]
    params = [f.get_db_prep_save(f.pre_save(new, add=True), db) for f in _insert_fields(Endpoint)]
    return _endpoint_sql(), [*params, POD_LOCK_CLASS, facts.uid]


@functools.cache
def _endpoint_sql() -> str:
    fields = _insert_fields(Endpoint)
    columns = [f.column for f in Endpoint._meta.concrete_fields]
    # Typed: a value in a SELECT list takes no type from the column it goes to (a NULL would be text).
    placeholders = ", ".join(f"%s::{f.cast_db_type(connection)}" for f in fields)
    return (f"INSERT INTO ipam_endpoint ({', '.join(f.column for f in fields)}) SELECT {placeholders}"
            f" FROM (SELECT pg_advisory_xact_lock(%s::integer, hashtext(%s))) AS pod_lock"
            f" ON CONFLICT (namespace, name) DO UPDATE SET namespace = EXCLUDED.namespace"
            f" RETURNING {', '.join(columns)}, xmax = 0")


def _endpoint_from_row(row: tuple) -> tuple[Endpoint, bool]:
    *values, created = row
    return Endpoint.from_db(connection.alias, [f.attname for f in Endpoint._meta.concrete_fields], values), created


@functools.cache
def _insert_fields(model, without: tuple[str, ...] = ()) -> list:
    """The columns a hand-written INSERT of `model` fills (all but the primary key and `without`)."""
    return [f for f in model._meta.concrete_fields if not f.primary_key and f.name not in without]


def _endpoint_fields(facts: PodFacts) -> dict:
    return dict(
        uid=facts.uid,
        node=facts.node,
        owner_kind=facts.owner.kind,
        owner_name=facts.owner.name,
        owner_uid=facts.owner.uid,
        owner_api_version=facts.owner.api_version,
    )


def _endpoint_upsert(endpoint: Endpoint | None, facts: PodFacts) -> Endpoint:
    fields = _endpoint_fields(facts)
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


def _new_allocation(pool, nic, version, endpoint, request, annotation_routes) -> Allocation:
    """The row a (NIC, family) gets from `pool`; its address is filled in once one is taken."""
    return Allocation(endpoint=endpoint, **_allocation_values(pool, nic, version, request, annotation_routes))


def _allocation_values(pool, nic, version, request, annotation_routes) -> dict:
    """What a (NIC, family) allocation from `pool` records, by column: the one home of those values for the ORM
    row (`_new_allocation`) and the one-call path's JSON row."""
    network = pool.network
    routes = [dict(r) for r in pool.routes or []]
    for route in annotation_routes:
        gw_version = 6 if ":" in route.gw else 4
        if gw_version == version and _in_network(route.gw, network):
            routes.append(route.to_dict())
    return {
        "pool_id": pool.pk,
        "ip_version": version,
        "prefix_length": network.prefixlen,
        "interface": nic.interface,
        "pod_uid": request.facts.uid,
        "container_id": request.container_id,
        "network": request.network,
        "node": request.facts.node,
        "gateway": pool.gateway or "",
        "clean_gateway": nic.clean_gateway,
        "routes": routes,
    }


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
    """The lowest address ≥ scan_from in `free` that no allocation or released record has ever used."""
    found = _fresh_candidates(pool, free, _scan_start(pool, free), limit=1)
    return found[0] if found else None


def _scan_start(pool: IPPool, free: RangeSet) -> int | None:
    return free.first_at_or_after(key_to_int(pool.scan_from)) if pool.scan_from else free.first()


def _fresh_candidates(
    pool: IPPool, free: RangeSet, candidate: int | None, *, limit: int, batch: list[str] | None = None
) -> list[int]:
    """Up to `limit` addresses ≥ `candidate` in `free`, lowest first, that no allocation or released record used.

    Walks with ordered index range scans of both tables, `SCAN_BATCH` keys at a time, so the cost does not
    grow with the number of live allocations below the start. `batch`: the first scan, when the caller already
    read it (the used keys ≥ some key ≤ `candidate`, as `_used_keys_from` returns them).
    """
    version = pool.ip_version
    found: list[int] = []
    while candidate is not None and len(found) < limit:
        if batch is None:
            batch = _used_keys_from(pool.pk, address_key(candidate, version))
        horizon = key_to_int(batch[-1]) if len(batch) == SCAN_BATCH else None
        used = sorted({key_to_int(k) for k in batch})
        batch = None
        for number in used:
            if horizon is not None and number > horizon:
                break
            while candidate is not None and candidate < number and len(found) < limit:
                found.append(candidate)
                candidate = free.first_at_or_after(candidate + 1)
            if candidate is None or len(found) == limit:
                return found
            if number == candidate:
                candidate = free.first_at_or_after(candidate + 1)
        if horizon is None:  # no used key above: everything from here on is free
            while candidate is not None and len(found) < limit:
                found.append(candidate)
                candidate = free.first_at_or_after(candidate + 1)
        # Else everything up to the horizon (itself used) was seen; look at the next batch from the candidate.
    return found


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


# -------------------------------------------------------------------------- a new pod in one call (PostgreSQL)


def _one_call_possible(request: AllocateRequest) -> bool:
    """Whether `_allocate_in_one_call` may try: PostgreSQL claims, no SpiderSubnet auto pool to plan (that may
    create pools), and no transaction of the caller's (the call is a transaction of its own)."""
    annotations = request.facts.annotations
    conn = connections[DEFAULT_DB_ALIAS]  # once: each attribute of Django's `connection` proxy is a lookup
    return (_claims_addresses() and ANNO_SUBNETS not in annotations and ANNO_SUBNET not in annotations
            and conn.get_autocommit() and not conn.in_atomic_block)


# The call: `spiderweb_allocate` (migration 0010) returns (status, endpoint id, address keys, allocation ids, detail).
_ALLOCATE_SQL = ("SELECT * FROM spiderweb_allocate(%s, %s, %s, %s::jsonb, %s::bigint[], %s::bigint[], %s::jsonb, "
                 "%s::jsonb, %s)")
_OFF_PATH = "SW001"  # the function's SQLSTATE for "no never-used address near the hint": everything rolled back

# Per family, the reservations as the server last reported them: (their fingerprint, their ranges). The free ranges
# sent with a call exclude them; the call refuses a stale fingerprint and returns the current reservations.
_reserved_seen: dict[int, tuple[str, RangeSet]] = {}
_FREE_RANGES_MAX = 64  # a pool whose free space is more fragmented than this takes the Python path


def _allocate_in_one_call(request: AllocateRequest, cluster: ClusterSettings) -> list[_Taken] | None:
    """A new pod's allocation in one round trip, or None when the usual transaction (`_allocate_locked`) must do it.

    The plan (NICs, families, each one's first candidate pool), the free ranges of those pools and the rows are
    made here; `spiderweb_allocate` carries them out in one statement, hence one transaction: the pod lock, the
    pools share-locked at their planned generation, the reservations checked, the sandbox's tombstone, the new
    endpoint, then per (NIC, family) the first never-used address from the pool's scan hint that no concurrent
    allocator has claimed, inserted, and the hint moved up. Anything off that path is refused with nothing written
    and the usual transaction starts from scratch with every fallback: an endpoint that already exists (a retry, a
    re-created pod), a pool changed, off or without never-used addresses, no free address within SCAN_BATCH of
    the hint. Changed reservations are learned from the answer and the call is made again.

    The rows travel as plain column dicts and come back as `_Taken` records: no ORM instance is built (building
    them was the largest part of this path's Python time).
    """
    facts = request.facts
    pools, _ = _pool_catalog()
    try:
        plan = _filter_candidates(request, _plan(request, cluster, pools), _catalog_index(pools).views, None)
    except IPAMError:
        return None  # the usual path raises it, after refreshing a stale catalog
    if not plan:
        return None
    first = [pools[names[0]] for _, _, names in plan]
    catalog = {pool.pk: pool for pool in first}
    now = timezone.now()
    endpoint_values = _json({**_column_defaults(Endpoint), "namespace": facts.namespace, "name": facts.name,
                             **_endpoint_fields(facts), "created_at": now, "updated_at": now})
    annotation_routes = _annotation_routes(facts)
    rows = [{**_column_defaults(Allocation), **_allocation_values(pool, nic, version, request, annotation_routes),
             "created_at": now, "bound_at": now}
            for (nic, version, _), pool in zip(plan, first, strict=True)]
    pool_ids = sorted(catalog)
    for _ in range(2):  # a second time only after learning changed reservations
        claims = []
        for row, pool in zip(rows, first, strict=True):
            free = _free_ranges(pool)
            if free is None:
                return None
            claims.append({"pool": pool.pk, "version": row["ip_version"], "free": free, "row": row})
        seen = {str(v): _reserved_seen[v][0] for v in {row["ip_version"] for row in rows} if v in _reserved_seen}
        params = [POD_LOCK_CLASS, facts.uid, request.container_id, endpoint_values, _int_array(pool_ids),
                  _int_array(catalog[pk].generation for pk in pool_ids), _json(seen), _json(claims), SCAN_BATCH]
        try:
            with metrics.lock_wait("pod"):
                ((status, _endpoint_id, keys, _ids, detail),) = prepared.run(_ALLOCATE_SQL, params)
        except DatabaseError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != _OFF_PATH:
                log.info("one-call allocation for %s/%s failed, taking the usual path: %s", facts.namespace,
                         facts.name, exc)
            return None
        if status == "tombstoned":
            raise pod_tombstone_conflict(facts=facts, container_id=request.container_id)
        if status == "reserved":
            for version, (fingerprint, reserved) in json.loads(detail).items():
                _reserved_seen[int(version)] = (fingerprint, functools.reduce(
                    RangeSet.union, (RangeSet.parse(ips, int(version)) for ips in reserved),
                    RangeSet.empty(int(version))))
            continue
        if status != "ok":
            return None
        keys = keys[1:-1].split(",")  # text[] as text: hex keys are never quoted
        taken = [_Taken(pool=pool, address=int_to_ip(key_to_int(key), row["ip_version"]), **{
                     name: row[name] for name in _Taken._fields if name not in ("pool", "address")})
                 for row, pool, key in zip(rows, first, keys, strict=True)]
        return sorted(taken, key=lambda t: (t.interface, t.ip_version))
    return None


class _Taken(NamedTuple):
    """An address the one-call path took, with what `allocation_response` reads of an `Allocation` row."""

    pool: IPPool
    ip_version: int
    address: str
    prefix_length: int
    interface: str
    gateway: str
    clean_gateway: bool
    routes: list
    vlan: int
    mac: str

    cidr = Allocation.cidr  # the same property: one spelling of "address/prefix"


@functools.cache
def _column_defaults(model) -> dict:
    """The model's default value of every column a hand-written INSERT fills, by column name, computed once: a
    JSON row for `jsonb_populate_record` must name every NOT NULL column. The callers set every column whose
    default is computed per row (timestamps, `routes`)."""
    return {f.column: f.get_default() for f in _insert_fields(model)}


def _json(value) -> str:
    """JSON parameters of the allocation statements (the one-call path's, the usual path's claim rows), with orjson:
    the standard encoder was a tenth of the one-call path's Python time. Timestamps keep their microseconds
    (RFC 3339), as `jsonb_populate_record` reads them (DjangoJSONEncoder would cut them to milliseconds)."""
    return orjson.dumps(value).decode()


def _int_array(values) -> str:
    """A PostgreSQL array literal of integers: sent as text, it is cast by the statement (`%s::bigint[]`) instead of
    psycopg inferring an array type from the list on every call."""
    return "{" + ",".join(str(int(v)) for v in values) + "}"


def _free_ranges(pool: IPPool) -> list[list[str]] | None:
    """The catalog pool's ranges less the reservations last seen, as [first key, last key] pairs; None when too
    fragmented for the call (or nothing is free: the usual path explains why).

    Kept on the catalog's pool object with the reservations' fingerprint: computed once per pool row version (the
    catalog replaces the object when its row changes), not per call."""
    version = pool.ip_version
    fingerprint, reserved = _reserved_seen.get(version, ("", RangeSet.empty(version)))
    kept = pool.__dict__.get("_free_ranges_sent")
    if kept is None or kept[0] != fingerprint:
        free = list(pool.total_ranges.subtract(reserved))
        keys = [[address_key(a, version), address_key(b, version)] for a, b in free]
        kept = pool.__dict__["_free_ranges_sent"] = (fingerprint, keys if 0 < len(keys) <= _FREE_RANGES_MAX else None)
    return kept[1]


# ----------------------------------------------------------------------------------- concurrent claims (PostgreSQL)

CLAIM_BATCH = 32  # candidate addresses offered to one claim statement; the first one not claimed by another wins

# The first scan of each pool (the used keys from its scan hint on, as `_used_keys_from` reads them) and the
# reservations of its family ride on the statement that share-locks the pool rows.
_POOLS_SHARE_LOCK_SQL = f"""
SELECT p.id, p.generation, p.disable, p.terminating, p.scan_from, p.fresh_exhausted, p.auto_desired,
    ARRAY(SELECT u.k FROM (
        (SELECT a.address_key AS k FROM ipam_allocation a
         WHERE a.pool_id = p.id AND a.address_key >= p.scan_from ORDER BY a.address_key LIMIT {SCAN_BATCH})
        UNION ALL
        (SELECT r.address_key FROM ipam_releasedaddress r
         WHERE r.pool_id = p.id AND r.address_key >= p.scan_from ORDER BY r.address_key LIMIT {SCAN_BATCH})
    ) u ORDER BY u.k LIMIT {SCAN_BATCH}) AS claim_used_keys,
    (SELECT coalesce(json_agg(r.ips), '[]')::text FROM ipam_reservedip r
     WHERE r.ip_version = p.ip_version AND NOT r.terminating) AS claim_reserved,
    EXISTS (SELECT 1 FROM ipam_podtombstone t WHERE t.pod_uid = %s AND t.container_id = %s) AS tombstoned
FROM ipam_ippool p WHERE p.id = ANY(%s) ORDER BY p.id FOR KEY SHARE OF p
"""


def _pools_share_lock(catalog: dict[int, IPPool], versions: set[int], tombstone: tuple[str, str] | None = None
                      ) -> tuple[list[IPPool], dict[int, RangeSet], dict[int, list[str]], bool]:
    """Share-lock the candidate pools (primary-key order) and read what taking an address needs, in one statement.

    Returns the locked pools, the reserved ranges of each family (every non-terminating `ReservedIP`, as
    `validation.reserved_ranges` has them) and the first used-key batch of each pool from its scan hint. A pool
    is the catalog's copy with the columns that change without a new generation (and the generation) read
    from its locked row; the caller refuses it if that generation is not the catalog's. Last, whether the
    `tombstone` (pod UID, sandbox ID) exists: read after the pod lock was granted, so a DEL that held it counts.
    """
    with metrics.lock_wait("pool"), connection.cursor() as cursor:
        cursor.execute(_POOLS_SHARE_LOCK_SQL, _pools_share_lock_params(catalog, tombstone))
        return _share_locked(catalog, versions, cursor.fetchall(), tombstone)


def _pools_share_lock_params(catalog: dict[int, IPPool], tombstone: tuple[str, str] | None) -> list:
    return [*(tombstone or ("", "")), list(catalog)]


def _share_locked(catalog: dict[int, IPPool], versions: set[int], rows: list[tuple], tombstone: tuple[str, str] | None
                  ) -> tuple[list[IPPool], dict[int, RangeSet], dict[int, list[str]], bool]:
    """`_pools_share_lock`'s answer from the rows of `_POOLS_SHARE_LOCK_SQL`."""
    blocked = {v: RangeSet.empty(v) for v in versions}
    locked, first_batches = [], {}
    tombstoned = tombstone is not None and any(row[-1] for row in rows)
    for pk, generation, disable, terminating, scan_from, fresh_exhausted, auto_desired, used, reserved, _ in rows:
        pool = copy.copy(catalog[pk])
        pool.generation, pool.disable, pool.terminating = generation, disable, terminating
        pool.scan_from, pool.fresh_exhausted, pool.auto_desired = scan_from, fresh_exhausted, auto_desired
        locked.append(pool)
        first_batches[pk] = list(used)
        if pool.ip_version in blocked and not blocked[pool.ip_version]:
            for ips in json.loads(reserved):
                blocked[pool.ip_version] = blocked[pool.ip_version].union(RangeSet.parse(ips, pool.ip_version))
    return locked, blocked, first_batches, tombstoned


def _claim(pool: IPPool, blocked: RangeSet, row: Allocation, first_batch: list[str] | None) -> tuple[int | None, str]:
    """Take an address of a share-locked pool for `row` and insert it; concurrent allocators never queue.

    The order is `_pool_take_address`'s (never-used lowest first, then least-recently-released). Each round
    offers up to CLAIM_BATCH candidates read from a fresh snapshot to `_claim_insert`, which takes the first
    one no other transaction holds; one committed meanwhile conflicts and the walk goes on past it. Candidates
    held by transactions still in flight are waited for only when nothing else is left (they may roll back):
    the pool is then exhausted only when it really is. `scan_from` and `fresh_exhausted` stay hints, advanced
    only from what was seen committed, so a rolled-back claim never hides a free address.
    """
    free = pool.total_ranges.subtract(blocked)
    if not free:
        return None, "pool has no addresses outside excludeIPs and reserved IPs"
    held: list[tuple[int, bool]] = []  # (address, recycled) held by transactions in flight
    if not pool.fresh_exhausted:
        start = _scan_start(pool, free)
        hint = True
        while start is not None:
            candidates = _fresh_candidates(pool, free, start, limit=CLAIM_BATCH, batch=first_batch)
            first_batch = None
            if not candidates:
                break
            picked, number = _claim_insert(pool, row, candidates, recycled=False, hint=hint)
            hint = False
            if number is not None:
                return number, ""
            last = candidates[-1] if picked is None else picked
            held += [(n, False) for n in candidates if n < last or (picked is None and n == last)]
            start = free.first_at_or_after(last + 1)
        if not held:
            _pool_hint_update(pool, fresh_exhausted=True)
    tried: list[str] = []
    while True:
        candidates = _recycled_candidates(pool, free, exclude=tried)
        if not candidates:
            break
        picked, number = _claim_insert(pool, row, candidates, recycled=True)
        if number is not None:
            return number, ""
        last = candidates[-1] if picked is None else picked
        held += [(n, True) for n in candidates if n < last or (picked is None and n == last)]
        tried += [address_key(n, pool.ip_version) for n in candidates[: candidates.index(last) + 1]]
    for number, recycled in held:  # nothing else is left: wait for those in flight, then try again
        if not _claim_wait(pool.ip_version, address_key(number, pool.ip_version)):
            continue
        _, taken = _claim_insert(pool, row, [number], recycled=recycled)
        if taken is not None:
            return taken, ""
    return None, f"all {free.count()} addresses are in use"


def _claim_wait(version: int, key: str) -> bool:
    """Wait until the transaction holding an address's claim ends; False if that wait would deadlock.

    A claim waiting here holds the claims it made before (another NIC or family of the pod, or an address
    taken by a commit after its candidates were read), so two such waits can close a cycle; PostgreSQL then
    cancels one of them, which treats the address as taken (as if the other transaction had committed first)
    and goes on, inside a savepoint so that its transaction survives.
    """
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [_claim_lock_key(version, key)])
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != "40P01":  # deadlock_detected
            raise
        return False
    return True


def _claim_lock_key(version: int, key: str) -> str:
    """Text whose 64-bit hash keys the advisory lock of one address (one-bigint key space: no pod lock shares it)."""
    return f"{version}/{key}"


def _recycled_candidates(pool: IPPool, free: RangeSet, *, exclude: list[str]) -> list[int]:
    """Up to CLAIM_BATCH released addresses still inside the pool and not reserved, least-recently-released first.

    Records of addresses that left the pool are forgotten on the way.
    """
    found: list[int] = []
    stale: list[int] = []
    oldest_first = ReleasedAddress.objects.filter(pool=pool).exclude(address_key__in=exclude)
    for record in oldest_first.order_by("released_at", "id").iterator(chunk_size=SCAN_BATCH):
        number = key_to_int(record.address_key)
        if number in free:
            found.append(number)
            if len(found) == CLAIM_BATCH:
                break
        elif number not in pool.total_ranges:
            stale.append(record.pk)
    if stale:
        ReleasedAddress.objects.filter(pk__in=stale).delete()
    return found


# `address_key` back to an inet in SQL (the inverse of `ranges.address_key`), so that only the keys of the
# candidates travel: IPv4 as an offset from 0.0.0.0, IPv6 as its eight hextets.
_KEY_TO_INET = {
    4: "('0.0.0.0'::inet + ('x' || c.k)::bit(32)::bigint)",
    6: "(" + " || ':' || ".join(f"substr(c.k, {i}, 4)" for i in range(1, 33, 4)) + ")::inet",
}


def _claim_insert(pool: IPPool, row: Allocation, candidates: list[int], *, recycled: bool,
                  hint: bool = False) -> tuple[int | None, int | None]:
    """Run `_claim_statement`: returns (picked, inserted) as it says."""
    sql, params = _claim_statement(pool, row, candidates, recycled=recycled, hint=hint)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return _claim_result(row, *cursor.fetchone())


def _claim_result(row: Allocation, picked_key: str | None, pk: int | None) -> tuple[int | None, int | None]:
    picked = key_to_int(picked_key) if picked_key is not None else None
    if pk is None:
        return picked, None
    row.pk = pk
    row._state.adding, row._state.db = False, connection.alias
    return picked, picked


def _claim_statement(pool: IPPool, row: Allocation, candidates: list[int], *, recycled: bool, hint: bool = False
                     ) -> tuple[str, dict]:
    """One statement: take the first candidate whose advisory lock is free, insert `row` with it.

    A candidate already taken by a commit this statement sees is skipped before its lock is tried (so the
    claims a transaction holds are, but for a narrow race, the addresses it inserts). Returns (picked,
    inserted): picked None when every candidate is held by a transaction in flight or was taken meanwhile;
    inserted None when the picked address was taken by a commit in that narrow race (the unique constraint
    said so), or, recycled, when its released record is gone. A recycled address leaves
    `ReleasedAddress` in the same statement. `hint`: also move the pool's `scan_from` up to the first
    candidate (every address below it was seen used), unless another allocator is moving it right now.
    """
    version = pool.ip_version
    keys = [address_key(n, version) for n in candidates]
    # The row's values travel as one JSON document (jsonb_populate_record types them by column): one parameter
    # to render instead of one per column.
    values = {f.column: f.pre_save(row, add=True) for f in _claim_fields()}
    params: dict = {"keys": keys, "pool": pool.pk, "row": _json(values),
                    "family": _claim_lock_key(version, ""), "hint": keys[0], "seen": pool.scan_from}
    return _claim_sql(version, recycled=recycled, hint=hint), params


def _claim_fields() -> list:
    return _insert_fields(Allocation, without=("address", "address_key"))


@functools.cache
def _claim_sql(version: int, *, recycled: bool, hint: bool) -> str:
    """`_claim_statement`'s text: a few variants, each built once."""
    if recycled:
        source = ("DELETE FROM ipam_releasedaddress r USING pick WHERE r.pool_id = %(pool)s AND r.address_key = pick.k "
                  "RETURNING pick.k, pick.a")
        gone = "NOT EXISTS (SELECT 1 FROM ipam_releasedaddress r WHERE r.pool_id = %(pool)s AND r.address_key = c.k)"
    else:
        source = "SELECT k, a FROM pick"
        gone = "EXISTS (SELECT 1 FROM ipam_allocation a WHERE a.pool_id = %(pool)s AND a.address_key = c.k)"
    hint_sql = (", hint AS (UPDATE ipam_ippool SET scan_from = %(hint)s WHERE id = (SELECT id FROM ipam_ippool "
                "WHERE id = %(pool)s AND scan_from = %(seen)s AND scan_from < %(hint)s "
                "FOR NO KEY UPDATE SKIP LOCKED))") if hint else ""
    columns = [connection.ops.quote_name(f.column) for f in _claim_fields()]
    return f"""
WITH pick AS MATERIALIZED (
    SELECT c.k, {_KEY_TO_INET[version]} AS a FROM unnest(%(keys)s::text[]) AS c(k)
    WHERE CASE WHEN {gone} THEN false ELSE pg_try_advisory_xact_lock(hashtextextended(%(family)s || c.k, 0)) END
    LIMIT 1
), src AS ({source}){hint_sql}, ins AS (
    INSERT INTO ipam_allocation ({", ".join(columns)}, address, address_key)
    SELECT {", ".join(f"r.{column}" for column in columns)}, src.a, src.k
    FROM src, jsonb_populate_record(NULL::ipam_allocation, %(row)s::jsonb) AS r
    ON CONFLICT (pool_id, address_key) DO NOTHING RETURNING id
)
SELECT (SELECT k FROM pick), (SELECT id FROM ins)
"""


def _pool_hint_update(pool: IPPool, *, fresh_exhausted: bool) -> None:
    """Record that the pool has no never-used address left, unless its hints changed since they were read."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ipam_ippool SET fresh_exhausted = %s WHERE id = (SELECT id FROM ipam_ippool WHERE id = %s "
            "AND scan_from = %s AND NOT fresh_exhausted FOR NO KEY UPDATE SKIP LOCKED)",
            [fresh_exhausted, pool.pk, pool.scan_from],
        )


# ----------------------------------------------------------------------------------------------------- release


def ippool_release(
    *, namespace: str, name: str, pod_uid: str, reason: str, node: str | None = None, dead_sandbox_id: str = ""
) -> list[str]:
    """Release every address held by this incarnation of the pod (all NICs) and drop its endpoint.

    Idempotent and UID-guarded: nothing happens when the pod holds nothing or the addresses belong to a newer
    incarnation. With `node`, only allocations made on that node are touched (node credentials). It waits for an
    ADD of the pod in flight (the pod lock, `POD_LOCK_CLASS`), so it releases what that ADD took, every NIC of it.

    `dead_sandbox_id` is the container ID of a CNI DEL for a pod the agent knows will never be alive again: the
    sandbox is remembered (`PodTombstone`), so an ADD of it that this DEL overtook is refused when it arrives.
    """
    if connection.vendor == "postgresql":
        with metrics.timed(metrics.RELEASES, metrics.RELEASE_DURATION):
            return _release_postgresql(namespace=namespace, name=name, pod_uid=pod_uid, reason=reason, node=node,
                                       dead_sandbox_id=dead_sandbox_id)
    with metrics.timed(metrics.RELEASES, metrics.RELEASE_DURATION), transaction.atomic():
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


# The same release as the ORM code above, tombstone included, after the pod lock: `spiderweb_release` (migration
# 0010), one statement.
_RELEASE_SQL = "SELECT * FROM spiderweb_release(%s, %s, %s, %s, %s::text, %s, %s)"


def _release_postgresql(
    *, namespace: str, name: str, pod_uid: str, reason: str, node: str | None, dead_sandbox_id: str
) -> list[str]:
    """The release as one statement: prepared, a transaction of its own; inside a caller's transaction, through
    Django's cursor (the prepared path's first use sets the session's plan mode, which a rollback would undo).
    The pod-lock wait observed is that of the whole statement."""
    params = [POD_LOCK_CLASS, namespace, name, pod_uid, node, reason, dead_sandbox_id]
    with metrics.lock_wait("pod"):
        if not connection.in_atomic_block:
            return _released(prepared.run(_RELEASE_SQL, params), reason)
        with connection.cursor() as cursor:
            cursor.execute(_RELEASE_SQL, params)
            return _released(cursor.fetchall(), reason)


def _released(rows: list[tuple], reason: str) -> list[str]:
    released = [address for (address,) in rows]
    if released:
        metrics.labelled(metrics.RELEASED_IPS, metrics.release_reason_label(reason)).inc(len(released))
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


def allocation_response(rows: list[Allocation] | list[_Taken], cluster: ClusterSettings) -> dict:
    """Spiderpool's `IpamAddResponse` for every NIC of the pod, from its `Allocation` rows or the one-call path's
    `_Taken` records (the same attributes)."""
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
