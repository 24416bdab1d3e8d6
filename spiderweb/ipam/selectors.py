"""Reads for the IPAM app: tenant-scoped querysets and utilization figures."""

from django.db.models import Count, Q, QuerySet

from spiderweb.changelog.models import ObjectChange
from spiderweb.ipam.models import AddressHistory, Allocation, Endpoint, IPPool, ReservedIP, Subnet
from spiderweb.ipam.validation import reserved_ranges
from spiderweb.tenancy.selectors import acts_cluster_wide, tenant_ids_of_member


def _tenant_ids(user):
    return tenant_ids_of_member(user)


def _all(user, perm: str) -> bool:
    """Every tenant's rows for a holder of the view permission; otherwise only the user's tenants'."""
    return acts_cluster_wide(user, perm)


def ippool_list_for_user(user) -> QuerySet[IPPool]:
    queryset = IPPool.objects.annotate(allocated_ip_count=Count("allocations")).select_related("tenant", "owner_subnet")
    return queryset if _all(user, "ipam.view_ippool") else queryset.filter(tenant__in=_tenant_ids(user))


def subnet_list_for_user(user) -> QuerySet[Subnet]:
    queryset = Subnet.objects.select_related("tenant").annotate(pool_count=Count("pools"))
    return queryset if _all(user, "ipam.view_subnet") else queryset.filter(tenant__in=_tenant_ids(user))


def reservedip_list_for_user(user) -> QuerySet[ReservedIP]:
    queryset = ReservedIP.objects.select_related("tenant")
    return queryset if _all(user, "ipam.view_reservedip") else queryset.filter(tenant__in=_tenant_ids(user))


def allocation_list_for_user(user) -> QuerySet[Allocation]:
    queryset = Allocation.objects.select_related("pool", "endpoint")
    return queryset if _all(user, "ipam.view_allocation") else queryset.filter(pool__tenant__in=_tenant_ids(user))


def endpoint_list_for_user(user) -> QuerySet[Endpoint]:
    queryset = Endpoint.objects.all()
    if _all(user, "ipam.view_endpoint"):
        return queryset
    return queryset.filter(allocations__pool__tenant__in=_tenant_ids(user)).distinct()


def address_history_for_user(user) -> QuerySet[AddressHistory]:
    queryset = AddressHistory.objects.all()
    return queryset if _all(user, "ipam.view_addresshistory") else queryset.filter(pool__tenant__in=_tenant_ids(user))


def change_list_for_user(user) -> QuerySet[ObjectChange]:
    queryset = ObjectChange.objects.all()
    if _all(user, "changelog.view_objectchange"):
        return queryset
    return queryset.filter(Q(tenant_id__in=_tenant_ids(user)))


def ippool_utilization(pool: IPPool) -> dict:
    """Total, allocated, reserved-inside and free counts of a pool (ranges, never expanded lists)."""
    total = pool.total_ranges
    reserved = total.intersect(reserved_ranges(pool.ip_version))
    allocated = Allocation.objects.filter(pool=pool).count()
    usable = total.count() - reserved.count()
    return {
        "totalIPCount": total.count(),
        "reservedIPCount": reserved.count(),
        "allocatedIPCount": allocated,
        "freeIPCount": max(usable - allocated, 0),
        "utilization": round(100.0 * allocated / usable, 2) if usable else 0.0,
    }
