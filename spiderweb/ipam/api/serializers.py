"""REST shapes. Field names follow the Spiderpool CRDs (camelCase) so a manifest's spec can be posted as is.

Serializers only shape data: every rule lives in `spiderweb.ipam.validation`, every write in `services`.
"""

from rest_framework import serializers

from spiderweb.changelog.models import ObjectChange
from spiderweb.ipam.models import AddressHistory, Allocation, ClusterSettings, Endpoint, IPPool, ReservedIP, Subnet
from spiderweb.tenancy.models import Tenant
from spiderweb.tenancy.selectors import tenant_list_for_user


class TenantField(serializers.SlugRelatedField):
    """A tenant by name, limited to the tenants the caller belongs to (staff: all)."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="name", **kwargs)

    def get_queryset(self):
        request = self.context.get("request")
        return tenant_list_for_user(request.user) if request else Tenant.objects.none()


def _string_list(source, **kwargs):
    return serializers.ListField(child=serializers.CharField(), source=source, required=False, **kwargs)


class RouteSerializer(serializers.Serializer):
    dst = serializers.CharField()
    gw = serializers.CharField()


class RangeSpecSerializer(serializers.ModelSerializer):
    """ipVersion, subnet, ips, excludeIPs, gateway, routes."""

    tenant = TenantField()
    ipVersion = serializers.IntegerField(source="ip_version", required=False)
    ips = _string_list("ips")
    excludeIPs = _string_list("exclude_ips")
    gateway = serializers.CharField(required=False, allow_blank=True)
    routes = serializers.ListField(child=serializers.DictField(child=serializers.CharField()), required=False)
    labels = serializers.DictField(child=serializers.CharField(), required=False)
    totalIPCount = serializers.SerializerMethodField()

    def get_totalIPCount(self, obj) -> int:
        return obj.total_ip_count

    def validate_name(self, value):
        if self.instance is not None and value != self.instance.name:
            raise serializers.ValidationError("name is immutable")
        return value


class SubnetSerializer(RangeSpecSerializer):
    poolCount = serializers.IntegerField(source="pool_count", read_only=True)

    class Meta:
        model = Subnet
        fields = [
            "id", "name", "tenant", "ipVersion", "subnet", "ips", "excludeIPs", "gateway", "routes", "labels",
            "totalIPCount", "poolCount", "generation", "created_at", "updated_at",
        ]
        read_only_fields = ["generation", "created_at", "updated_at"]


class IPPoolSerializer(RangeSpecSerializer):
    podAffinity = serializers.JSONField(source="pod_affinity", required=False, allow_null=True)
    namespaceAffinity = serializers.JSONField(source="namespace_affinity", required=False, allow_null=True)
    namespaceName = _string_list("namespace_name")
    nodeAffinity = serializers.JSONField(source="node_affinity", required=False, allow_null=True)
    nodeName = _string_list("node_name")
    multusName = _string_list("multus_name")
    default = serializers.BooleanField(required=False)
    disable = serializers.BooleanField(required=False)
    ownerSubnet = serializers.SlugRelatedField(source="owner_subnet", slug_field="name", read_only=True)
    allocatedIPCount = serializers.IntegerField(source="allocated_ip_count", read_only=True, default=0)

    class Meta:
        model = IPPool
        fields = [
            "id", "name", "tenant", "ipVersion", "subnet", "ips", "excludeIPs", "gateway", "routes",
            "podAffinity", "namespaceAffinity", "namespaceName", "nodeAffinity", "nodeName", "multusName",
            "default", "disable", "ownerSubnet", "labels", "totalIPCount", "allocatedIPCount", "terminating",
            "generation", "created_at", "updated_at",
        ]
        read_only_fields = ["terminating", "generation", "created_at", "updated_at"]


class ReservedIPSerializer(serializers.ModelSerializer):
    tenant = TenantField()
    ipVersion = serializers.IntegerField(source="ip_version", required=False)
    ips = _string_list("ips")
    labels = serializers.DictField(child=serializers.CharField(), required=False)

    class Meta:
        model = ReservedIP
        fields = ["id", "name", "tenant", "ipVersion", "ips", "labels", "generation", "created_at", "updated_at"]
        read_only_fields = ["generation", "created_at", "updated_at"]


class AllocationSerializer(serializers.ModelSerializer):
    pool = serializers.SlugRelatedField(slug_field="name", read_only=True)
    endpoint = serializers.StringRelatedField()
    cidr = serializers.CharField(read_only=True)

    class Meta:
        model = Allocation
        fields = [
            "id", "pool", "endpoint", "interface", "ip_version", "address", "cidr", "pod_uid", "container_id",
            "node", "gateway", "clean_gateway", "routes", "vlan", "mac", "created_at",
        ]
        read_only_fields = fields


class EndpointSerializer(serializers.ModelSerializer):
    allocations = AllocationSerializer(many=True, read_only=True)

    class Meta:
        model = Endpoint
        fields = [
            "id", "namespace", "name", "uid", "node", "owner_kind", "owner_name", "owner_uid", "owner_api_version",
            "allocations", "created_at", "updated_at",
        ]
        read_only_fields = fields


class AddressHistorySerializer(serializers.ModelSerializer):
    class Meta:
        model = AddressHistory
        fields = [
            "id", "pool_name", "ip_version", "address", "pod_namespace", "pod_name", "pod_uid", "node", "interface",
            "container_id", "allocated_at", "released_at", "release_reason",
        ]
        read_only_fields = fields


class ObjectChangeSerializer(serializers.ModelSerializer):
    diff = serializers.DictField(read_only=True)

    class Meta:
        model = ObjectChange
        fields = [
            "id", "time", "user_name", "request_id", "action", "object_type", "object_id", "object_repr",
            "prechange_data", "postchange_data", "diff", "message",
        ]
        read_only_fields = fields


class TenantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ["id", "name", "description", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]


class ClusterSettingsSerializer(serializers.ModelSerializer):
    class Meta:
        model = ClusterSettings
        exclude = ["id"]


class ExplainSerializer(serializers.Serializer):
    """A dry run: which pool would serve this pod, and why every other candidate was rejected."""

    facts = serializers.DictField()
    ifName = serializers.CharField(default="eth0")
    cni = serializers.DictField(required=False, default=dict)
