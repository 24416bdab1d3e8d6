"""Public REST API (`/api/v1/`): thin views that read through `selectors` and write through `services`."""

import django_filters
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from spiderweb.changelog.context import acting_as, actor_for_user
from spiderweb.engine.facts import PodFacts
from spiderweb.engine.selection import CniDefaults
from spiderweb.ipam import allocation, selectors, services
from spiderweb.ipam.api import serializers as s
from spiderweb.ipam.models import AddressHistory, Allocation, ClusterSettings, Endpoint, IPPool, ReservedIP, Subnet
from spiderweb.tenancy.models import Tenant
from spiderweb.tenancy.selectors import tenant_list_for_user


class ActorMixin:
    """Token-authenticated users are only known here (not in middleware): bind the change-log actor."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self._actor_cm = acting_as(actor_for_user(request.user, getattr(request._request, "id", None)))
        self._actor_cm.__enter__()

    def finalize_response(self, request, response, *args, **kwargs):
        cm = getattr(self, "_actor_cm", None)
        if cm is not None:
            cm.__exit__(None, None, None)
            self._actor_cm = None
        return super().finalize_response(request, response, *args, **kwargs)


def _spec(validated: dict, fields) -> dict:
    return {name: validated[name] for name in fields if name in validated}


class IPPoolFilter(django_filters.FilterSet):
    tenant = django_filters.CharFilter(field_name="tenant__name")
    subnet = django_filters.CharFilter()
    ipVersion = django_filters.NumberFilter(field_name="ip_version")
    ownerSubnet = django_filters.CharFilter(field_name="owner_subnet__name")

    class Meta:
        model = IPPool
        fields = {"name": ["exact", "icontains"], "default": ["exact"], "disable": ["exact"]}


class IPPoolViewSet(ActorMixin, viewsets.ModelViewSet):
    """SpiderIPPools of your tenants. DELETE is refused (409) while the pool holds allocations."""

    serializer_class = s.IPPoolSerializer
    filterset_class = IPPoolFilter
    search_fields = ["name", "subnet"]
    ordering_fields = ["name", "subnet", "created_at"]

    def get_queryset(self):
        return selectors.ippool_list_for_user(self.request.user)

    def perform_create(self, serializer):
        data = serializer.validated_data
        pool = services.ippool_create(
            tenant=data["tenant"], name=data["name"], spec=_spec(data, services.POOL_FIELDS), labels=data.get("labels")
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

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"])
    def utilization(self, request, pk=None):
        """Total, reserved, allocated and free addresses of the pool."""
        return Response(selectors.ippool_utilization(self.get_object()))


class SubnetViewSet(ActorMixin, viewsets.ModelViewSet):
    """SpiderSubnets of your tenants."""

    serializer_class = s.SubnetSerializer
    filterset_fields = {"name": ["exact", "icontains"], "ip_version": ["exact"], "subnet": ["exact"]}
    search_fields = ["name", "subnet"]
    ordering_fields = ["name", "subnet", "created_at"]

    def get_queryset(self):
        return selectors.subnet_list_for_user(self.request.user)

    def perform_create(self, serializer):
        data = serializer.validated_data
        subnet = services.subnet_create(
            tenant=data["tenant"], name=data["name"], spec=_spec(data, services.SUBNET_FIELDS), labels=data.get("labels")
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

    serializer_class = s.ReservedIPSerializer
    filterset_fields = {"name": ["exact", "icontains"], "ip_version": ["exact"]}
    search_fields = ["name"]

    def get_queryset(self):
        return selectors.reservedip_list_for_user(self.request.user)

    def perform_create(self, serializer):
        data = serializer.validated_data
        reserved = services.reservedip_create(
            tenant=data["tenant"], name=data["name"], spec=_spec(data, services.RESERVED_FIELDS),
            labels=data.get("labels"),
        )
        serializer.instance = reserved

    def perform_update(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.reservedip_update(
            reserved=serializer.instance, spec=_spec(data, services.RESERVED_FIELDS), labels=data.get("labels")
        )

    def perform_destroy(self, instance):
        services.reservedip_delete(reserved=instance)


class TenantViewSet(ActorMixin, viewsets.ModelViewSet):
    """Tenants: members see theirs; only staff create, change or delete them."""

    serializer_class = s.TenantSerializer
    search_fields = ["name", "description"]

    def get_queryset(self):
        return tenant_list_for_user(self.request.user)

    def get_permissions(self):
        if self.action in ("list", "retrieve"):
            return [permissions.IsAuthenticated()]
        return [permissions.IsAdminUser()]

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.tenant_create(name=data["name"], description=data.get("description", ""))

    def perform_update(self, serializer):
        serializer.instance = services.tenant_update(
            tenant=serializer.instance, description=serializer.validated_data.get("description", "")
        )

    def perform_destroy(self, instance):
        services.tenant_delete(tenant=instance)


class EndpointViewSet(viewsets.ReadOnlyModelViewSet):
    """SpiderEndpoints: one per pod, with its live allocations."""

    serializer_class = s.EndpointSerializer
    filterset_fields = ["namespace", "name", "uid", "node", "owner_kind"]
    search_fields = ["namespace", "name"]

    def get_queryset(self):
        return selectors.endpoint_list_for_user(self.request.user).prefetch_related("allocations__pool")


class AllocationFilter(django_filters.FilterSet):
    pool = django_filters.CharFilter(field_name="pool__name")
    namespace = django_filters.CharFilter(field_name="endpoint__namespace")
    pod = django_filters.CharFilter(field_name="endpoint__name")

    class Meta:
        model = Allocation
        fields = ["address", "ip_version", "interface", "node", "pod_uid"]


class AllocationViewSet(ActorMixin, viewsets.ReadOnlyModelViewSet):
    """Live allocations. Staff may release one (POST .../release/)."""

    serializer_class = s.AllocationSerializer
    filterset_class = AllocationFilter

    def get_queryset(self):
        return selectors.allocation_list_for_user(self.request.user)

    @extend_schema(request=None, responses={200: dict})
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAdminUser])
    def release(self, request, pk=None):
        """Release this address now (admin action); the history records who did it."""
        released = allocation.allocation_release(allocation=self.get_object(), reason=f"admin:{request.user}")
        return Response({"released": released})


class AddressHistoryViewSet(viewsets.ReadOnlyModelViewSet):
    """Which pod held which address, from when to when."""

    serializer_class = s.AddressHistorySerializer
    filterset_fields = ["address", "pool_name", "pod_namespace", "pod_name", "pod_uid", "node"]

    def get_queryset(self):
        return selectors.address_history_for_user(self.request.user)


class ObjectChangeViewSet(viewsets.ReadOnlyModelViewSet):
    """Change log of tenants, subnets, pools and reservations: who, when, before and after."""

    serializer_class = s.ObjectChangeSerializer
    filterset_fields = ["action", "object_type", "object_id", "user_name", "request_id"]

    def get_queryset(self):
        return selectors.change_list_for_user(self.request.user)


class ClusterSettingsView(APIView):
    """Spiderpool's `spiderpool-conf` switches. Everyone reads; staff change."""

    def get_permissions(self):
        if self.request.method == "GET":
            return [permissions.IsAuthenticated()]
        return [permissions.IsAdminUser()]

    @extend_schema(responses=s.ClusterSettingsSerializer)
    def get(self, request):
        return Response(s.ClusterSettingsSerializer(ClusterSettings.load()).data)

    @extend_schema(request=s.ClusterSettingsSerializer, responses=s.ClusterSettingsSerializer)
    def patch(self, request):
        serializer = s.ClusterSettingsSerializer(ClusterSettings.load(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            serializer.save()
        return Response(serializer.data)


class ExplainView(APIView):
    """Dry-run allocation: which pool would serve this pod and NIC, and why the others were rejected.

    Non-staff callers see the names of other tenants' pools redacted.
    """

    @extend_schema(request=s.ExplainSerializer, responses={200: dict})
    def post(self, request):
        serializer = s.ExplainSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        facts = PodFacts.from_dict(data["facts"])
        result = allocation.ippool_explain(
            request=allocation.AllocateRequest(facts=facts, if_name=data["ifName"], cni=_cni_defaults(data["cni"]))
        )
        if not request.user.is_staff:
            visible = set(selectors.ippool_list_for_user(request.user).values_list("name", flat=True))
            hidden = set(IPPool.objects.values_list("name", flat=True)) - visible
            result = _redact(result, hidden)
        return Response(result, status=status.HTTP_200_OK)


def _cni_defaults(cni: dict) -> CniDefaults:
    from spiderweb.engine.errors import InvalidInput

    try:
        return CniDefaults(
            v4=tuple(cni.get("default_ipv4_ippool") or ()),
            v6=tuple(cni.get("default_ipv6_ippool") or ()),
            clean_gateway=bool(cni.get("clean_gateway", False)),
        )
    except TypeError as exc:
        raise InvalidInput(f"invalid CNI defaults: {exc}") from exc


def _redact(value, hidden: set[str]):
    """Replace pool names the caller may not see with a neutral marker, anywhere in the result."""
    if isinstance(value, dict):
        return {k: _redact(v, hidden) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, hidden) for v in value]
    if isinstance(value, str):
        for name in hidden:
            if name in value:
                value = value.replace(name, "(another tenant's pool)")
    return value

