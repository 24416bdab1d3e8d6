"""Public REST API (`/api/v1/`): thin views that read through `selectors` and write through `services`.

Every queryset is scoped to the caller's tenants, so another tenant's object is a 404, never a 403. Django's model
permissions widen that (`spiderweb.tenancy.selectors.acts_cluster_wide`): a staff user holding `ipam.view_ippool`
sees every pool, one holding `ipam.add_ippool` creates pools in any tenant, and so on; being staff alone grants
nothing beyond what membership grants.
Field names, filter names and ordering keys are camelCase, as in the Spiderpool CRDs.
"""

import re

import django_filters
from django.db.models import Prefetch
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import filters, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from spiderweb.changelog.context import acting_as, actor_for_user
from spiderweb.changelog.models import ObjectChange
from spiderweb.engine.errors import IPAMError
from spiderweb.engine.facts import PodFacts
from spiderweb.engine.selection import CniDefaults
from spiderweb.ipam import allocation, selectors, services
from spiderweb.ipam.api import serializers as s
from spiderweb.ipam.api.errors import HTTP_STATUS
from spiderweb.ipam.models import AddressHistory, Allocation, ClusterSettings, Endpoint, IPPool, ReservedIP, Subnet
from spiderweb.tenancy.models import Tenant
from spiderweb.tenancy.selectors import (
    acts_cluster_wide,
    confined_to_own_tenants,
    model_perm,
    tenant_list_for_user,
    tenant_object_permission,
)

FILTER_BACKENDS = [DjangoFilterBackend, filters.SearchFilter]  # ordering: each FilterSet's camelCase `ordering`


class ActorMixin:
    """Bind the change-log actor to the API user, whichever way they authenticated (token users are only known
    inside the view, not in the middleware), with the request id the middleware returns in X-Request-ID.

    Also keeps other tenants' pool and subnet names out of error messages shown to non-staff users (an overlap
    with another tenant's pool is still reported, without its name).
    """

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self._actor_cm = acting_as(actor_for_user(request.user, getattr(request._request, "id", None)))
        self._actor_cm.__enter__()

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if isinstance(exc, IPAMError) and self.request.user.is_authenticated:
            response.data = redact_for_user(self.request.user, response.data)
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        cm = getattr(self, "_actor_cm", None)
        if cm is not None:
            self._actor_cm = None
            cm.__exit__(None, None, None)
        return super().finalize_response(request, response, *args, **kwargs)


def _confined(request, perm: str) -> bool:
    """Without the model permission `perm` cluster-wide, a caller writes only inside their tenant's address space."""
    return confined_to_own_tenants(request.user, perm)


WRITE_ACTIONS = {"POST": "add", "PUT": "change", "PATCH": "change", "DELETE": "delete"}


class TenantScopedWrites(permissions.BasePermission):
    """Reads: any authenticated user (querysets are scoped). Writes: a member in their own tenants, or a staff user
    holding the model's add/change/delete permission in any tenant. Creates are checked by the `tenant` field,
    which offers only the tenants the caller may create in."""

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated)

    def has_object_permission(self, request, view, obj):
        if request.method in permissions.SAFE_METHODS:
            return True
        action = WRITE_ACTIONS.get(request.method, "change")
        return tenant_object_permission(request.user, action, type(obj), obj.tenant_id)


class ClusterWide(permissions.BasePermission):
    """Only a staff user holding one Django permission (e.g. ``ipam.change_clustersettings``)."""

    def __init__(self, perm: str):
        self.perm = perm

    def has_permission(self, request, view):
        return acts_cluster_wide(request.user, self.perm)


def _spec(validated: dict, fields) -> dict:
    return {name: validated[name] for name in fields if name in validated}


# ------------------------------------------------------------------------------------------------------ filters


class TenantFilter(django_filters.FilterSet):
    name = django_filters.CharFilter()
    name__icontains = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    ordering = django_filters.OrderingFilter(fields=(("name", "name"), ("created_at", "createdAt")))

    class Meta:
        model = Tenant
        fields = []


class MirroredFilter(django_filters.FilterSet):
    """name, name__icontains, tenant (by name), ipVersion and camelCase ordering."""

    name = django_filters.CharFilter()
    name__icontains = django_filters.CharFilter(field_name="name", lookup_expr="icontains")
    tenant = django_filters.CharFilter(field_name="tenant__name")
    ipVersion = django_filters.NumberFilter(field_name="ip_version")
    ordering = django_filters.OrderingFilter(
        fields=(("name", "name"), ("ip_version", "ipVersion"), ("created_at", "createdAt"), ("updated_at", "updatedAt"))
    )


class SubnetFilter(MirroredFilter):
    subnet = django_filters.CharFilter()

    class Meta:
        model = Subnet
        fields = []


class IPPoolFilter(MirroredFilter):
    subnet = django_filters.CharFilter()
    ownerSubnet = django_filters.CharFilter(field_name="owner_subnet__name")
    default = django_filters.BooleanFilter()
    disable = django_filters.BooleanFilter()

    class Meta:
        model = IPPool
        fields = []


class ReservedIPFilter(MirroredFilter):
    class Meta:
        model = ReservedIP
        fields = []


class EndpointFilter(django_filters.FilterSet):
    namespace = django_filters.CharFilter()
    name = django_filters.CharFilter()
    uid = django_filters.CharFilter()
    node = django_filters.CharFilter()
    ownerControllerType = django_filters.CharFilter(field_name="owner_kind")
    ownerControllerName = django_filters.CharFilter(field_name="owner_name")

    class Meta:
        model = Endpoint
        fields = []


class AllocationFilter(django_filters.FilterSet):
    pool = django_filters.CharFilter(field_name="pool__name")
    namespace = django_filters.CharFilter(field_name="endpoint__namespace")
    pod = django_filters.CharFilter(field_name="endpoint__name")
    address = django_filters.CharFilter()
    ipVersion = django_filters.NumberFilter(field_name="ip_version")
    interface = django_filters.CharFilter()
    node = django_filters.CharFilter()
    podUID = django_filters.CharFilter(field_name="pod_uid")
    ordering = django_filters.OrderingFilter(fields=(("address_key", "address"), ("created_at", "createdAt")))

    class Meta:
        model = Allocation
        fields = []


class AddressHistoryFilter(django_filters.FilterSet):
    address = django_filters.CharFilter()
    pool = django_filters.CharFilter(field_name="pool_name")
    podNamespace = django_filters.CharFilter(field_name="pod_namespace")
    podName = django_filters.CharFilter(field_name="pod_name")
    podUID = django_filters.CharFilter(field_name="pod_uid")
    node = django_filters.CharFilter()
    releaseReason = django_filters.CharFilter(field_name="release_reason")

    class Meta:
        model = AddressHistory
        fields = []


class ObjectChangeFilter(django_filters.FilterSet):
    action = django_filters.ChoiceFilter(choices=ObjectChange.Action.choices)
    objectType = django_filters.CharFilter(field_name="object_type")
    objectID = django_filters.NumberFilter(field_name="object_id")
    userName = django_filters.CharFilter(field_name="user_name")
    requestID = django_filters.UUIDFilter(field_name="request_id")

    class Meta:
        model = ObjectChange
        fields = []


# ------------------------------------------------------------------------------------------ tenant-owned objects


class IPPoolViewSet(ActorMixin, viewsets.ModelViewSet):
    """SpiderIPPools of your tenants. DELETE is refused (409) while the pool holds allocations."""

    permission_classes = [TenantScopedWrites]
    serializer_class = s.IPPoolSerializer
    filter_backends = FILTER_BACKENDS
    filterset_class = IPPoolFilter
    search_fields = ["name", "subnet"]

    def get_queryset(self):
        return selectors.ippool_list_for_user(self.request.user)

    def perform_create(self, serializer):
        data = serializer.validated_data
        pool = services.ippool_create(
            tenant=data["tenant"], name=data["name"], spec=_spec(data, services.POOL_FIELDS), labels=data.get("labels"),
            confined=_confined(self.request, "ipam.add_ippool"),
        )
        serializer.instance = self.get_queryset().get(pk=pool.pk)

    def perform_update(self, serializer):
        data = serializer.validated_data
        pool = services.ippool_update(
            pool=serializer.instance, spec=_spec(data, services.POOL_FIELDS), labels=data.get("labels")
        )
        serializer.instance = self.get_queryset().get(pk=pool.pk)

    def perform_destroy(self, instance):
        services.ippool_delete(pool=instance)

    @extend_schema(responses=s.UtilizationSerializer)
    @action(detail=True, methods=["get"])
    def utilization(self, request, pk=None):
        """Total, reserved, allocated and free addresses of the pool."""
        return Response(selectors.ippool_utilization(self.get_object()))


class SubnetViewSet(ActorMixin, viewsets.ModelViewSet):
    """SpiderSubnets of your tenants. DELETE is refused (409) while the subnet controls pools."""

    permission_classes = [TenantScopedWrites]
    serializer_class = s.SubnetSerializer
    filter_backends = FILTER_BACKENDS
    filterset_class = SubnetFilter
    search_fields = ["name", "subnet"]

    def get_queryset(self):
        return selectors.subnet_list_for_user(self.request.user)

    def perform_create(self, serializer):
        data = serializer.validated_data
        subnet = services.subnet_create(
            tenant=data["tenant"], name=data["name"], spec=_spec(data, services.SUBNET_FIELDS),
            labels=data.get("labels"), confined=_confined(self.request, "ipam.add_subnet"),
        )
        serializer.instance = self.get_queryset().get(pk=subnet.pk)

    def perform_update(self, serializer):
        data = serializer.validated_data
        subnet = services.subnet_update(
            subnet=serializer.instance, spec=_spec(data, services.SUBNET_FIELDS), labels=data.get("labels")
        )
        serializer.instance = self.get_queryset().get(pk=subnet.pk)

    def perform_destroy(self, instance):
        services.subnet_delete(subnet=instance)


class ReservedIPViewSet(ActorMixin, viewsets.ModelViewSet):
    """SpiderReservedIPs of your tenants: addresses never handed out."""

    permission_classes = [TenantScopedWrites]
    serializer_class = s.ReservedIPSerializer
    filter_backends = FILTER_BACKENDS
    filterset_class = ReservedIPFilter
    search_fields = ["name"]

    def get_queryset(self):
        return selectors.reservedip_list_for_user(self.request.user)

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.reservedip_create(
            tenant=data["tenant"], name=data["name"], spec=_spec(data, services.RESERVED_FIELDS),
            labels=data.get("labels"), confined=_confined(self.request, "ipam.add_reservedip"),
        )

    def perform_update(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.reservedip_update(
            reserved=serializer.instance, spec=_spec(data, services.RESERVED_FIELDS), labels=data.get("labels"),
            confined=_confined(self.request, "ipam.change_reservedip"),
        )

    def perform_destroy(self, instance):
        services.reservedip_delete(reserved=instance)


class TenantPermissions(permissions.BasePermission):
    """Members read their tenants; creating, changing or deleting a tenant needs tenancy.add/change/delete_tenant.

    A detail write looks the object up first, so a tenant the caller cannot see is still a 404.
    """

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS or "pk" in view.kwargs:
            return True
        return acts_cluster_wide(request.user, model_perm(Tenant, WRITE_ACTIONS.get(request.method, "change")))

    def has_object_permission(self, request, view, obj):
        if request.method in permissions.SAFE_METHODS:
            return True
        return acts_cluster_wide(request.user, model_perm(Tenant, WRITE_ACTIONS.get(request.method, "change")))


class TenantViewSet(ActorMixin, viewsets.ModelViewSet):
    """Tenants: members see theirs; holders of the tenancy permissions create, change or delete them."""

    serializer_class = s.TenantSerializer
    filter_backends = FILTER_BACKENDS
    filterset_class = TenantFilter
    search_fields = ["name", "description"]

    permission_classes = [TenantPermissions]

    def get_queryset(self):
        return tenant_list_for_user(self.request.user)

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.tenant_create(name=data["name"], description=data.get("description", ""))

    def perform_update(self, serializer):
        description = serializer.validated_data.get("description", serializer.instance.description)
        serializer.instance = services.tenant_update(tenant=serializer.instance, description=description)

    def perform_destroy(self, instance):
        services.tenant_delete(tenant=instance)


# ------------------------------------------------------------------------------------------- allocation records


class EndpointViewSet(viewsets.ReadOnlyModelViewSet):
    """SpiderEndpoints: one per pod, with the live allocations you may see."""

    serializer_class = s.EndpointSerializer
    filter_backends = FILTER_BACKENDS
    filterset_class = EndpointFilter
    search_fields = ["namespace", "name"]

    def get_queryset(self):
        visible = selectors.allocation_list_for_user(self.request.user)
        return selectors.endpoint_list_for_user(self.request.user).prefetch_related(
            Prefetch("allocations", queryset=visible)
        )


class ReleasePermission(ClusterWide):
    def __init__(self):
        super().__init__("ipam.change_allocation")


class AllocationViewSet(ActorMixin, viewsets.ReadOnlyModelViewSet):
    """Live allocations. Holders of ipam.change_allocation may release one (POST .../release/); its address history
    records who did."""

    serializer_class = s.AllocationSerializer
    filter_backends = FILTER_BACKENDS
    filterset_class = AllocationFilter
    search_fields = ["address", "endpoint__name", "endpoint__namespace"]

    def get_queryset(self):
        return selectors.allocation_list_for_user(self.request.user)

    @extend_schema(request=s.ReleaseRequestSerializer, responses=s.ReleaseResultSerializer)
    @action(detail=True, methods=["post"], permission_classes=[ReleasePermission])
    def release(self, request, pk=None):
        """Release this address now (admin action); the history records who did it.

        With `podUID` the release happens only while that pod incarnation holds the address (409 otherwise).
        """
        body = s.ReleaseRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        released = allocation.allocation_release(allocation=self.get_object(), reason=f"admin:{request.user}",
                                                 pod_uid=body.validated_data.get("podUID"))
        return Response({"released": released})


class AddressHistoryViewSet(viewsets.ReadOnlyModelViewSet):
    """Which pod held which address, from when to when, and why it let go (newest first).

    Finished holdings only: the current holder of an address is its allocation (`/allocations/?address=`).
    """

    serializer_class = s.AddressHistorySerializer
    filter_backends = FILTER_BACKENDS
    filterset_class = AddressHistoryFilter
    search_fields = ["address", "pod_name", "pod_namespace"]

    def get_queryset(self):
        return selectors.address_history_for_user(self.request.user)


class ObjectChangeViewSet(viewsets.ReadOnlyModelViewSet):
    """Change log of tenants, subnets, pools and reservations: who, when, in which request, before and after."""

    serializer_class = s.ObjectChangeSerializer
    filter_backends = FILTER_BACKENDS
    filterset_class = ObjectChangeFilter
    search_fields = ["object_repr", "user_name"]

    def get_queryset(self):
        return selectors.change_list_for_user(self.request.user)


# ------------------------------------------------------------------------------------------------ cluster-wide


class ClusterSettingsView(APIView):
    """Spiderpool's `spiderpool-conf` switches. Everyone reads; holders of ipam.change_clustersettings change."""

    def get_permissions(self):
        if self.request.method == "GET":
            return [permissions.IsAuthenticated()]
        return [ClusterWide("ipam.change_clustersettings")]

    @extend_schema(responses=s.ClusterSettingsSerializer)
    def get(self, request):
        return Response(s.ClusterSettingsSerializer(ClusterSettings.load()).data)

    @extend_schema(request=s.ClusterSettingsSerializer, responses=s.ClusterSettingsSerializer)
    def patch(self, request):
        serializer = s.ClusterSettingsSerializer(ClusterSettings.load(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        updated = services.cluster_settings_update(changes=serializer.validated_data)
        return Response(s.ClusterSettingsSerializer(updated).data)


class ExplainView(APIView):
    """Dry-run allocation: which pool would serve this pod and NIC, and why the others were rejected.

    200 with `ok: false` and the reasons when the pod would get no address; 400 when the pod's facts or
    annotations are malformed. A non-staff caller's dry run considers only the pools they may see: another tenant's
    pool is answered exactly like a missing one, and its addresses, gateway and routes are never shown. No row is
    locked and nothing is written.
    """

    @extend_schema(
        request=s.ExplainSerializer, responses={200: s.ExplainResultSerializer, 400: s.ExplainResultSerializer}
    )
    def post(self, request):
        serializer = s.ExplainSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        facts = PodFacts.from_dict(data["facts"])
        cni = data.get("cni") or {}
        defaults = CniDefaults(
            v4=tuple(cni.get("default_ipv4_ippool", ())),
            v6=tuple(cni.get("default_ipv6_ippool", ())),
            clean_gateway=cni.get("clean_gateway", False),
        )
        visible = selectors.ippool_names_visible_to(request.user)
        result = allocation.ippool_explain(
            request=allocation.AllocateRequest(facts=facts, if_name=data["ifName"], cni=defaults), visible=visible
        )
        code = (result.get("error") or {}).get("code")
        answer = status.HTTP_400_BAD_REQUEST if HTTP_STATUS.get(code) == status.HTTP_400_BAD_REQUEST else 200
        return Response(result, status=answer)


def redact_for_user(user, value):
    """`value` with the names of pools and subnets `user` may not see replaced by a neutral marker.

    Only whole names are replaced: hiding pool `p1` leaves `p1-b` and the word "pool" alone.
    """
    hidden = set(IPPool.objects.values_list("name", flat=True)) - set(
        selectors.ippool_list_for_user(user).values_list("name", flat=True)
    )
    hidden |= set(Subnet.objects.values_list("name", flat=True)) - set(
        selectors.subnet_list_for_user(user).values_list("name", flat=True)
    )
    if not hidden:
        return value
    names = "|".join(re.escape(name) for name in sorted(hidden, key=len, reverse=True))
    pattern = re.compile(rf"(?<![a-z0-9.-])(?:{names})(?![a-z0-9-]|\.[a-z0-9])")
    return _redact_with(value, pattern)


def _redact_with(value, pattern: re.Pattern):
    if isinstance(value, dict):
        return {k: _redact_with(v, pattern) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_with(v, pattern) for v in value]
    if isinstance(value, str):
        return pattern.sub("(another tenant's object)", value)
    return value
