"""Read helpers for tenancy: which tenants a user may act for."""

from django.db.models import QuerySet

from spiderweb.tenancy.models import Tenant


def tenant_list_for_user(user) -> QuerySet[Tenant]:
    """Staff see every tenant; other users see the tenants they are members of."""
    if not user or not user.is_authenticated:
        return Tenant.objects.none()
    if user.is_staff:
        return Tenant.objects.all()
    return Tenant.objects.filter(members=user)


def tenant_get_default() -> Tenant:
    """The tenant that owns objects arriving without one (CRDs applied with kubectl, the demo data)."""
    from django.conf import settings

    tenant, _ = Tenant.objects.get_or_create(name=settings.SPIDERWEB_DEFAULT_TENANT)
    return tenant
