"""Reads for the IPAM app: tenant-scoped querysets and utilization figures.

`range_usage` is the one definition of utilization: the REST API, the admin lists, the pool and subnet pages and
the capacity dashboard all count through it (allocated addresses as a percent of the usable ones, where usable is
total − reserved).
"""

import datetime as _dt
import ipaddress
from itertools import islice

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from spiderweb.changelog.models import ObjectChange
from spiderweb.engine.errors import IPAMError
from spiderweb.engine.ranges import RangeSet, address_key, int_to_ip, parse_ip
from spiderweb.ipam.models import (
    GC_RELEASE_REASONS,
    AddressHistory,
    Allocation,
    Endpoint,
    IPPool,
    ReservedIP,
    Subnet,
)
from spiderweb.ipam.validation import reserved_ranges
from spiderweb.tenancy.selectors import acts_cluster_wide, tenant_ids_of_member

# Which rows of each model a user sees: every row with the model's view permission held cluster-wide, else the
# rows whose tenant (reached through this path) has the user as a member. The REST API's querysets and the admin's
# pages both filter through `scoped_for_user`, so the rule has one home.
TENANT_PATH = {
    IPPool: "tenant",
    Subnet: "tenant",
    ReservedIP: "tenant",
    Allocation: "pool__tenant",
    AddressHistory: "pool__tenant",
    Endpoint: "allocations__pool__tenant",
    ObjectChange: "tenant_id",
}


def scoped_for_user(queryset: QuerySet, user) -> QuerySet:
    """`queryset` narrowed to the rows `user` may see (see TENANT_PATH); a model without a tenant path is refused."""
    model = queryset.model
    if acts_cluster_wide(user, f"{model._meta.app_label}.view_{model._meta.model_name}"):
        return queryset
    scoped = queryset.filter(**{f"{TENANT_PATH[model]}__in": tenant_ids_of_member(user)})
    return scoped.distinct() if model is Endpoint else scoped  # a pod with two addresses would appear twice


def ippool_list_for_user(user) -> QuerySet[IPPool]:
    return scoped_for_user(
        IPPool.objects.annotate(allocated_ip_count=Count("allocations")).select_related("tenant", "owner_subnet"), user
    )


def subnet_list_for_user(user) -> QuerySet[Subnet]:
    return scoped_for_user(Subnet.objects.select_related("tenant").annotate(pool_count=Count("pools")), user)


def reservedip_list_for_user(user) -> QuerySet[ReservedIP]:
    return scoped_for_user(ReservedIP.objects.select_related("tenant"), user)


def allocation_list_for_user(user) -> QuerySet[Allocation]:
    return scoped_for_user(Allocation.objects.select_related("pool", "endpoint"), user)


def endpoint_list_for_user(user) -> QuerySet[Endpoint]:
    return scoped_for_user(Endpoint.objects.all(), user)


def address_history_for_user(user) -> QuerySet[AddressHistory]:
    return scoped_for_user(AddressHistory.objects.all(), user)


def change_list_for_user(user) -> QuerySet[ObjectChange]:
    return scoped_for_user(ObjectChange.objects.all(), user)


def ippool_names_visible_to(user) -> frozenset[str] | None:
    """The pools a dry run (explain) may consider for `user`: None means every pool (the view permission held
    cluster-wide), else the names of the pools of their tenants. Used by the REST API and the admin's explain page."""
    if acts_cluster_wide(user, "ipam.view_ippool"):
        return None
    return frozenset(ippool_list_for_user(user).values_list("name", flat=True))


def range_usage(total: RangeSet, allocated: int, reserved: RangeSet) -> dict:
    """Counts of an address space: total, reserved inside it, allocated, free, and utilization in percent.

    Utilization is allocated ÷ usable, usable = total − reserved, rounded to 2 decimals (0 when nothing is usable).

    >>> range_usage(RangeSet.parse(["10.0.0.1-10.0.0.4"]), 1, RangeSet.parse(["10.0.0.4", "10.0.9.9"]))
    {'totalIPCount': 4, 'reservedIPCount': 1, 'allocatedIPCount': 1, 'freeIPCount': 2, 'utilization': 33.33}
    """
    reserved_inside = total.intersect(reserved).count()
    usable = total.count() - reserved_inside
    return {
        "totalIPCount": total.count(),
        "reservedIPCount": reserved_inside,
        "allocatedIPCount": allocated,
        "freeIPCount": max(usable - allocated, 0),
        "utilization": round(100.0 * allocated / usable, 2) if usable else 0.0,
    }


def reserved_by_family() -> dict[int, RangeSet]:
    """Every family's reserved ranges (two queries), for pages that compute the usage of many pools."""
    return {version: reserved_ranges(version) for version in (4, 6)}


def attach_usage(rows, *, allocated_attr: str, reserved: dict[int, RangeSet] | None = None) -> list:
    """Set `row.usage` (a `range_usage` dict) on pools or subnets whose allocation count is annotated."""
    rows = list(rows)
    reserved = reserved_by_family() if reserved is None and rows else reserved
    for row in rows:
        row.usage = range_usage(row.total_ranges, getattr(row, allocated_attr), reserved[row.ip_version])
    return rows


def ippool_utilization(pool: IPPool) -> dict:
    """Total, allocated, reserved-inside and free counts of a pool (ranges, never expanded lists)."""
    allocated = Allocation.objects.filter(pool=pool).count()
    return range_usage(pool.total_ranges, allocated, reserved_ranges(pool.ip_version))


def ippool_address_space(pool: IPPool, *, free_range_limit: int = 20, next_free_limit: int = 10) -> dict:
    """A pool's usage, its free ranges (the first `free_range_limit`) and its next free addresses.

    One query reads the allocated address keys (an index-only scan of the pool's unique index); the free space is
    total − allocated − reserved, computed as ranges, so a pool of 60,000 allocations costs one pass over its keys.
    "Next free" is in address order; the allocator may hand out a recycled address first (least recently released).
    """
    version = pool.ip_version
    keys = Allocation.objects.filter(pool=pool).values_list("address_key", flat=True)
    allocated = RangeSet.from_keys(keys, version)
    reserved = reserved_ranges(version)
    free = pool.total_ranges.subtract(allocated).subtract(reserved)
    pairs = list(free)
    return {
        "usage": range_usage(pool.total_ranges, allocated.count(), reserved),
        "free_ranges": RangeSet.from_pairs(pairs[:free_range_limit], version).to_strings(),
        "free_range_count": len(pairs),
        "next_free": [int_to_ip(n, version) for n in islice(free.iter_addresses(), next_free_limit)],
    }


def subnet_layout(subnet: Subnet) -> list[dict]:
    """The subnet in address order: each pool cut from it (with its usage) and the unassigned space between them.

    A pool belongs to the subnet when it has the same CIDR (Spiderpool's rule), whether the subnet controls it or
    not. Rows: ``{"kind": "pool", "pool": IPPool (with .usage), "ranges": [...]}`` or
    ``{"kind": "free", "ranges": [...], "count": n}``.
    """
    same_cidr = IPPool.objects.filter(ip_version=subnet.ip_version, subnet=subnet.subnet)
    pools = attach_usage(same_cidr.annotate(n_alloc=Count("allocations")), allocated_attr="n_alloc")
    rows = [{"kind": "pool", "start": p.total_ranges.first() or 0, "pool": p, "ranges": p.total_ranges.to_strings()}
            for p in pools]
    taken = RangeSet.empty(subnet.ip_version)
    for pool in pools:
        taken = taken.union(pool.total_ranges)
    for start, end in subnet.total_ranges.subtract(taken):
        gap = RangeSet.from_pairs([(start, end)], subnet.ip_version)
        rows.append({"kind": "free", "start": start, "ranges": gap.to_strings(), "count": gap.count()})
    return sorted(rows, key=lambda row: (row["start"], row["kind"]))


SEARCH_LIMIT = 50


def portal_search(user, text: str) -> dict:
    """What `text` names, among the objects `user` may see: an address, a CIDR, or a name of anything.

    * an address: the subnets and pools whose ranges contain it, its live allocation and its past holders;
    * a CIDR: the subnets and pools whose CIDR overlaps it, and the allocations inside it;
    * anything else: pools, subnets, reservations and tenants by name, and allocations by pod name, namespace or
      pod UID.

    Returns ``{"kind": "address" | "cidr" | "text", "subnets", "pools", "reserved", "allocations", "history",
    "tenants"}`` (lists of at most `SEARCH_LIMIT`); an empty or unreadable query returns kind ``"empty"``.
    """
    from spiderweb.tenancy.selectors import tenant_list_for_user

    text = (text or "").strip()
    found = {"kind": "empty", "subnets": [], "pools": [], "reserved": [], "allocations": [], "history": [],
             "tenants": []}
    if not text:
        return found
    pools, subnets = ippool_list_for_user(user), subnet_list_for_user(user)
    allocations = allocation_list_for_user(user)
    address = network = None
    try:
        address = parse_ip(text)
    except IPAMError:
        if "/" in text:
            try:  # lenient, unlike a pool's CIDR: 10.6.0.7/24 searches 10.6.0.0/24
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                network = None
    if address is not None:
        version, n = address.version, int(address)
        found["kind"] = "address"
        found["subnets"] = [s for s in subnets.filter(ip_version=version) if address in s.network]
        found["pools"] = [p for p in pools.filter(ip_version=version) if n in p.total_ranges]
        found["allocations"] = list(allocations.filter(ip_version=version, address=str(address)))
        found["history"] = list(address_history_for_user(user).filter(address=str(address))[:SEARCH_LIMIT])
        found["reserved"] = [r for r in reservedip_list_for_user(user).filter(ip_version=version) if n in r.ranges]
        return found
    if network is not None:
        version = network.version
        found["kind"] = "cidr"
        found["subnets"] = [s for s in subnets.filter(ip_version=version) if s.network.overlaps(network)]
        found["pools"] = [p for p in pools.filter(ip_version=version) if p.network.overlaps(network)]
        low = network.network_address
        found["allocations"] = list(allocations.filter(
            ip_version=version, address_key__gte=address_key(int(low), version),
            address_key__lte=address_key(int(network.broadcast_address), version))[:SEARCH_LIMIT])
        return found
    found["kind"] = "text"
    found["subnets"] = list(subnets.filter(name__icontains=text)[:SEARCH_LIMIT])
    found["pools"] = list(pools.filter(name__icontains=text)[:SEARCH_LIMIT])
    found["reserved"] = list(reservedip_list_for_user(user).filter(name__icontains=text)[:SEARCH_LIMIT])
    found["tenants"] = list(tenant_list_for_user(user).filter(name__icontains=text)[:SEARCH_LIMIT])
    found["allocations"] = list(allocations.filter(
        Q(endpoint__name__icontains=text) | Q(endpoint__namespace__icontains=text) | Q(pod_uid=text)
    )[:SEARCH_LIMIT])
    return found


def capacity_summary(user, *, nearest: int = 10) -> dict:
    """The capacity dashboard's figures, over what `user` may see: usage per tenant, per subnet and per pool, and
    the `nearest` pools closest to exhaustion (highest utilization first, then fewest free addresses).

    Two queries plus the reserved ranges: pools with their allocation counts, and subnets. A subnet counts the
    allocations of the pools it controls (visible to `user`), as the subnet list does.
    """
    reserved = reserved_by_family()
    pools = attach_usage(ippool_list_for_user(user), allocated_attr="allocated_ip_count", reserved=reserved)
    subnets = list(subnet_list_for_user(user))
    by_subnet: dict[int, int] = {}  # the subnet admin's count: allocations in the pools the subnet controls
    for pool in pools:
        if pool.owner_subnet_id is not None:
            by_subnet[pool.owner_subnet_id] = by_subnet.get(pool.owner_subnet_id, 0) + pool.allocated_ip_count
    for subnet in subnets:
        subnet.usage = range_usage(subnet.total_ranges, by_subnet.get(subnet.pk, 0), reserved[subnet.ip_version])
    tenants: dict[str, dict] = {}
    for pool in pools:
        row = tenants.setdefault(pool.tenant.name, {"tenant": pool.tenant, "pools": 0, "allocated": 0, "usable": 0})
        row["pools"] += 1
        row["allocated"] += pool.usage["allocatedIPCount"]
        row["usable"] += pool.usage["totalIPCount"] - pool.usage["reservedIPCount"]
    for row in tenants.values():
        row["utilization"] = round(100.0 * row["allocated"] / row["usable"], 2) if row["usable"] else 0.0
    growth = ippool_growth(pools)
    for pool in pools:
        pool.growth_per_day = growth.get(pool.pk, 0) / GROWTH_WINDOW_DAYS
        free = pool.usage["freeIPCount"]
        pool.days_left = round(free / pool.growth_per_day, 1) if pool.growth_per_day > 0 else None
    ranked = sorted(pools, key=lambda p: (-p.usage["utilization"], p.usage["freeIPCount"], p.name))
    return {
        "timeline": allocation_timeline([p.pk for p in pools]),
        "tenants": sorted(tenants.values(), key=lambda row: row["tenant"].name),
        "subnets": subnets,
        "pools": pools,
        "nearest_exhaustion": [p for p in ranked if not p.disable][:nearest],
        "allocated": sum(p.usage["allocatedIPCount"] for p in pools),
        "free": sum(p.usage["freeIPCount"] for p in pools),
    }


GROWTH_WINDOW_DAYS = 7


def controller_activity(user, *, now=None, recent: int = 5) -> dict:
    """What the IP GC and the auto-pool controller did, over what `user` may see: addresses the GC released in the
    last day and week (and the latest few), and the auto pools with how many still wait to reach the size their
    workload wants, plus their latest changes from the change log."""
    now = now or timezone.now()
    released = address_history_for_user(user).filter(release_reason__in=GC_RELEASE_REASONS)
    auto = list(ippool_list_for_user(user).exclude(auto_app_uid=""))
    auto_ids = [pool.pk for pool in auto]
    changes = change_list_for_user(user).filter(object_type="ipam.ippool", object_id__in=auto_ids)
    return {
        "gc_released_day": released.filter(released_at__gte=now - _dt.timedelta(days=1)).count(),
        "gc_released_week": released.filter(released_at__gte=now - _dt.timedelta(days=7)).count(),
        "gc_latest": list(released.order_by("-released_at")[:recent]),
        "auto_pools": len(auto),
        "auto_workloads": len({pool.auto_app_uid for pool in auto}),
        "auto_growing": sum(1 for pool in auto if pool.total_ip_count < pool.auto_desired),
        "auto_latest": list(changes.order_by("-time")[:recent]),
    }


def _live_at(pool_ids, moment):
    """Filters counting, per query, the holdings of `pool_ids` live at `moment`: a live allocation since it was bound
    to its current pod, and each finished holding of the address history between its allocation and release."""
    live = Q(pool__in=pool_ids, bound_at__lte=moment)
    held = Q(pool__in=pool_ids, allocated_at__lte=moment) & (Q(released_at__isnull=True) | Q(released_at__gt=moment))
    return live, held


def allocation_timeline(pool_ids, *, days: int = 14, now=None) -> list[dict]:
    """Addresses held in `pool_ids` at the end of each of the last `days` days (the last point is now), from the live
    allocations and the address history: two queries. History rows of a deleted pool are not counted."""
    now = now or timezone.now()
    moments = [now - _dt.timedelta(days=days - 1 - index) for index in range(days)]
    live = Allocation.objects.aggregate(**{
        f"m{i}": Count("id", filter=_live_at(pool_ids, moment)[0]) for i, moment in enumerate(moments)})
    held = AddressHistory.objects.aggregate(**{
        f"m{i}": Count("id", filter=_live_at(pool_ids, moment)[1]) for i, moment in enumerate(moments)})
    return [{"at": moment, "count": live[f"m{i}"] + held[f"m{i}"]} for i, moment in enumerate(moments)]


def ippool_growth(pools, *, now=None) -> dict[int, int]:
    """Net change of each pool's held addresses over the last `GROWTH_WINDOW_DAYS` days (two queries): the basis of
    the dashboard's forecast (free addresses ÷ daily growth), a straight line through two points."""
    from datetime import timedelta

    from django.utils import timezone

    now = now or timezone.now()
    then = now - timedelta(days=GROWTH_WINDOW_DAYS)
    ids = [pool.pk for pool in pools]
    live_then, held_then = _live_at(ids, then)
    before = {row["pool"]: row["n"] for row in Allocation.objects.filter(live_then).values("pool").annotate(
        n=Count("id")).order_by()}
    for row in AddressHistory.objects.filter(held_then).values("pool").annotate(n=Count("id")).order_by():
        before[row["pool"]] = before.get(row["pool"], 0) + row["n"]
    return {pool.pk: pool.usage["allocatedIPCount"] - before.get(pool.pk, 0) for pool in pools}
