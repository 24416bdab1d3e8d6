"""Read helpers for tenancy: which tenants a user may act for, and who acts across tenants.

Two grants, never `is_staff` alone:

* membership: a member of a tenant sees and changes what that tenant owns (its pools, subnets and reservations);
* Django model permissions: a staff user holding `<app>.<action>_<model>` does that action on every tenant's
  objects of that model (a user with only view permissions sees everything and changes only their own tenants').
  Superusers hold every permission.
"""

from django.db.models import QuerySet

from spiderweb.tenancy.models import Tenant


def acts_cluster_wide(user, perm: str) -> bool:
    """True when `user` holds the model permission `perm` (e.g. ``ipam.add_ippool``) across tenants.

    Needs an active staff account *and* the permission: `is_staff` alone grants nothing, and a permission given to
    a non-staff account is ignored (membership is how non-staff users get access).
    """
    return bool(user and user.is_authenticated and user.is_active and getattr(user, "is_staff", False)
                and user.has_perm(perm))


def confined_to_own_tenants(user, perm: str) -> bool:
    """Without the model permission `perm` cluster-wide, a user writes only inside their tenants' address space
    (the services' `confined` flag): asked by the REST API and the admin alike."""
    return not acts_cluster_wide(user, perm)


def model_perm(model, action: str) -> str:
    """``<app_label>.<action>_<model_name>``, Django's name for a model permission."""
    return f"{model._meta.app_label}.{action}_{model._meta.model_name}"


def tenant_object_permission(user, action: str, model, tenant_id=None) -> bool:
    """May `user` do `action` (view, add, change, delete) on an object of `model` owned by tenant `tenant_id`?

    The one rule for tenant-owned objects (pools, subnets, reservations), asked by the REST API's permission class
    and by the admin's pages alike: yes with the model permission held cluster-wide; otherwise yes for a member of
    that tenant. With `tenant_id` None (a list, an add form) a member of any tenant may; which rows they see and
    which tenants they may pick is the scoped queryset's business (`tenant_list_for_user`, the ipam selectors).
    """
    if acts_cluster_wide(user, model_perm(model, action)):
        return True
    if not user or not user.is_authenticated or not user.is_active:
        return False
    member_of = tenant_ids_of_member(user)
    return member_of.exists() if tenant_id is None else member_of.filter(pk=tenant_id).exists()


def tenant_ids_of_member(user) -> QuerySet[Tenant]:
    """The tenants `user` is a member of (ids), whatever permissions they hold."""
    if not user or not user.is_authenticated:
        return Tenant.objects.none().values("pk")
    return Tenant.objects.filter(members=user).values("pk")


def tenant_list_for_user(user, perm: str = "tenancy.view_tenant") -> QuerySet[Tenant]:
    """Every tenant for a user who holds `perm` cluster-wide; otherwise the tenants they are a member of."""
    if not user or not user.is_authenticated:
        return Tenant.objects.none()
    if acts_cluster_wide(user, perm):
        return Tenant.objects.all()
    return Tenant.objects.filter(members=user)


def tenant_get_default() -> Tenant:
    """The tenant that owns objects arriving without one (CRDs applied with kubectl, the demo data)."""
    from django.conf import settings

    tenant, _ = Tenant.objects.get_or_create(name=settings.SPIDERWEB_DEFAULT_TENANT)
    return tenant
