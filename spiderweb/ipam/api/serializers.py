"""REST shapes. Field names follow the Spiderpool CRDs (camelCase) so a manifest's spec can be posted as is.

A SpiderIPPool manifest's `spec`, plus `name` and `tenant`, is a valid POST body for `/api/v1/pools/`; the same holds
for subnets and reserved IPs. Every other field of the API is camelCase too, so one object never mixes styles.

Serializers only shape data and check types: every IPAM rule lives in `spiderweb.ipam.validation`, every write in
`services`.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from spiderweb.changelog.models import ObjectChange
from spiderweb.engine import keys
from spiderweb.ipam.models import AddressHistory, Allocation, ClusterSettings, Endpoint, IPPool, ReservedIP, Subnet
from spiderweb.tenancy.models import Tenant
from spiderweb.tenancy.selectors import tenant_list_for_user


class TenantField(serializers.SlugRelatedField):
    """A tenant by name, limited to the tenants the caller may write this kind of object in: every tenant with the
    model's add (create) or change (update) permission cluster-wide, else the tenants the caller is a member of.

    A tenant the caller does not belong to is reported exactly like one that does not exist (400), so the API does
    not reveal which tenant names are taken.
    """

    default_error_messages = {
        "does_not_exist": "Tenant {value} does not exist or you are not a member of it.",
        "invalid": "Give the tenant's name.",
    }

    def __init__(self, **kwargs):
        super().__init__(slug_field="name", **kwargs)

    def get_queryset(self):
        request = self.context.get("request")
        if request is None:
            return Tenant.objects.none()
        model = self.parent.Meta.model
        action = "add" if self.parent.instance is None else "change"
        return tenant_list_for_user(request.user, f"{model._meta.app_label}.{action}_{model._meta.model_name}")


class RouteSerializer(serializers.Serializer):
    """Spiderpool's Route: a destination CIDR and the next hop."""

    dst = serializers.CharField()
    gw = serializers.CharField()


class UtilizationSerializer(serializers.Serializer):
    """Address counts of one pool (ranges are counted, never expanded)."""

    totalIPCount = serializers.IntegerField()
    reservedIPCount = serializers.IntegerField()
    allocatedIPCount = serializers.IntegerField()
    freeIPCount = serializers.IntegerField()
    utilization = serializers.FloatField(help_text="Percent of usable (total − reserved) addresses allocated.")


@extend_schema_field(
    {
        "type": "object",
        "nullable": True,
        "description": "A Kubernetes LabelSelector: matchLabels and/or matchExpressions.",
        "properties": {
            "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
            "matchExpressions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "key": {"type": "string"},
                        "operator": {"type": "string", "enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                        "values": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["key", "operator"],
                },
            },
        },
    }
)
class LabelSelectorField(serializers.JSONField):
    """A LabelSelector as JSON; its rules are checked by `validation` (one place for the webhook rules)."""

    def __init__(self, **kwargs):
        super().__init__(required=False, allow_null=True, **kwargs)


def _ip_list(source=None, **kwargs):
    """A list of IP range strings (`10.6.0.10-10.6.0.99` or `10.6.0.5`)."""
    if source is not None:
        kwargs["source"] = source
    return serializers.ListField(child=serializers.CharField(), required=False, **kwargs)


def _name_list(source):
    return serializers.ListField(child=serializers.CharField(), source=source, required=False)


class MirroredSerializer(serializers.ModelSerializer):
    """name and tenant (both immutable after create), labels and the bookkeeping every CRD object has."""

    tenant = TenantField()
    labels = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)

    def validate_name(self, value):
        if self.instance is not None and value != self.instance.name:
            raise serializers.ValidationError("name is immutable; create a new object instead.")
        return value

    def validate_tenant(self, value):
        if self.instance is not None and value.pk != self.instance.tenant_id:
            raise serializers.ValidationError("tenant is immutable; create the object in the other tenant instead.")
        return value


class RangeSpecSerializer(MirroredSerializer):
    """ipVersion, subnet, ips, excludeIPs, gateway and routes: the spec SpiderSubnet and SpiderIPPool share."""

    ipVersion = serializers.IntegerField(source="ip_version", required=False, help_text="4 or 6; derived from subnet.")
    subnet = serializers.CharField(help_text="Canonical CIDR, e.g. 10.6.0.0/16.")
    ips = _ip_list()
    excludeIPs = _ip_list("exclude_ips")
    gateway = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    routes = serializers.ListField(child=RouteSerializer(), required=False, allow_null=True)
    totalIPCount = serializers.SerializerMethodField()

    def get_totalIPCount(self, obj) -> int:
        return obj.total_ip_count

    def validate_gateway(self, value):
        return value or ""

    def validate_routes(self, value):
        return None if value is None else [dict(route) for route in value]


class SubnetSerializer(RangeSpecSerializer):
    """A SpiderSubnet."""

    poolCount = serializers.IntegerField(source="pool_count", read_only=True, default=0)

    class Meta:
        model = Subnet
        fields = [
            "id", "name", "tenant", "ipVersion", "subnet", "ips", "excludeIPs", "gateway", "routes", "labels",
            "totalIPCount", "poolCount", "terminating", "generation", "createdAt", "updatedAt",
        ]
        read_only_fields = ["terminating", "generation"]


class IPPoolSerializer(RangeSpecSerializer):
    """A SpiderIPPool."""

    podAffinity = LabelSelectorField(source="pod_affinity")
    namespaceAffinity = LabelSelectorField(source="namespace_affinity")
    namespaceName = _name_list("namespace_name")
    nodeAffinity = LabelSelectorField(source="node_affinity")
    nodeName = _name_list("node_name")
    multusName = _name_list("multus_name")
    default = serializers.BooleanField(required=False)
    disable = serializers.BooleanField(required=False)
    ownerSubnet = serializers.SlugRelatedField(source="owner_subnet", slug_field="name", read_only=True)
    allocatedIPCount = serializers.IntegerField(source="allocated_ip_count", read_only=True, default=0)
    ownerApplication = serializers.SerializerMethodField(
        help_text="For a SpiderSubnet auto pool: the workload it serves, its NIC and the size it follows; else null.")

    class Meta:
        model = IPPool
        fields = [
            "id", "name", "tenant", "ipVersion", "subnet", "ips", "excludeIPs", "gateway", "routes",
            "podAffinity", "namespaceAffinity", "namespaceName", "nodeAffinity", "nodeName", "multusName",
            "default", "disable", "ownerSubnet", "ownerApplication", "labels", "totalIPCount", "allocatedIPCount",
            "terminating", "generation", "createdAt", "updatedAt",
        ]
        read_only_fields = ["terminating", "generation"]

    def get_ownerApplication(self, pool: IPPool) -> dict | None:  # noqa: N802 (DRF names it after the field)
        if not pool.auto_app_uid:
            return None
        labels = pool.labels or {}
        return {"kind": labels.get(keys.LABEL_OWNER_APP_KIND, ""), "namespace": labels.get(
            keys.LABEL_OWNER_APP_NAMESPACE, ""), "name": labels.get(keys.LABEL_OWNER_APP_NAME, ""),
            "uid": pool.auto_app_uid, "interface": pool.auto_interface, "desiredIPCount": pool.auto_desired,
            "ipNumber": (pool.annotations or {}).get(keys.ANNO_IPPOOL_IP_NUMBER, "")}


class ReservedIPSerializer(MirroredSerializer):
    """A SpiderReservedIP: addresses never handed out, wherever they sit."""

    ipVersion = serializers.IntegerField(source="ip_version", required=False, help_text="4 or 6; derived from ips.")
    ips = _ip_list()

    class Meta:
        model = ReservedIP
        fields = ["id", "name", "tenant", "ipVersion", "ips", "labels", "terminating", "generation", "createdAt",
                  "updatedAt"]
        read_only_fields = ["terminating", "generation"]


class AllocationSerializer(serializers.ModelSerializer):
    """One live address held by one NIC of one pod."""

    pool = serializers.SlugRelatedField(slug_field="name", read_only=True)
    endpoint = serializers.StringRelatedField(help_text="namespace/name of the pod.")
    ipVersion = serializers.IntegerField(source="ip_version")
    cidr = serializers.CharField(help_text="Address with the pool's prefix length.")
    podUID = serializers.CharField(source="pod_uid")
    containerID = serializers.CharField(source="container_id")
    cleanGateway = serializers.BooleanField(source="clean_gateway")
    routes = RouteSerializer(many=True)
    createdAt = serializers.DateTimeField(source="created_at")
    boundAt = serializers.DateTimeField(source="bound_at", help_text="Since when the current pod UID holds it.")

    class Meta:
        model = Allocation
        fields = [
            "id", "pool", "endpoint", "interface", "ipVersion", "address", "cidr", "podUID", "containerID",
            "node", "gateway", "cleanGateway", "routes", "vlan", "mac", "createdAt", "boundAt",
        ]
        read_only_fields = fields


class EndpointSerializer(serializers.ModelSerializer):
    """A SpiderEndpoint: one pod's allocation record, with its live allocations."""

    ownerControllerType = serializers.CharField(source="owner_kind")
    ownerControllerName = serializers.CharField(source="owner_name")
    ownerControllerUID = serializers.CharField(source="owner_uid")
    ownerControllerAPIVersion = serializers.CharField(source="owner_api_version")
    allocations = AllocationSerializer(many=True, read_only=True)
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        model = Endpoint
        fields = [
            "id", "namespace", "name", "uid", "node", "ownerControllerType", "ownerControllerName",
            "ownerControllerUID", "ownerControllerAPIVersion", "allocations", "createdAt", "updatedAt",
        ]
        read_only_fields = fields


class AddressHistorySerializer(serializers.ModelSerializer):
    """A finished holding: who held an address, from when to when, and why it was released."""

    pool = serializers.CharField(source="pool_name")
    ipVersion = serializers.IntegerField(source="ip_version")
    podNamespace = serializers.CharField(source="pod_namespace")
    podName = serializers.CharField(source="pod_name")
    podUID = serializers.CharField(source="pod_uid")
    containerID = serializers.CharField(source="container_id")
    allocatedAt = serializers.DateTimeField(source="allocated_at")
    releasedAt = serializers.DateTimeField(source="released_at", allow_null=True)
    releaseReason = serializers.CharField(source="release_reason")

    class Meta:
        model = AddressHistory
        fields = [
            "id", "pool", "ipVersion", "address", "podNamespace", "podName", "podUID", "node", "interface",
            "containerID", "allocatedAt", "releasedAt", "releaseReason",
        ]
        read_only_fields = fields


@extend_schema_field({"type": "object", "additionalProperties": {"type": "array", "minItems": 2, "maxItems": 2}})
class DiffField(serializers.DictField):
    """{field: [before, after]} for every field that changed."""


class ObjectChangeSerializer(serializers.ModelSerializer):
    """One create, update or delete: who, when, in which request, and the object before and after."""

    userName = serializers.CharField(source="user_name")
    requestID = serializers.UUIDField(source="request_id", allow_null=True)
    objectType = serializers.CharField(source="object_type")
    objectID = serializers.IntegerField(source="object_id")
    objectRepr = serializers.CharField(source="object_repr")
    prechangeData = serializers.JSONField(source="prechange_data", allow_null=True)
    postchangeData = serializers.JSONField(source="postchange_data", allow_null=True)
    diff = DiffField(read_only=True)

    class Meta:
        model = ObjectChange
        fields = [
            "id", "time", "userName", "requestID", "action", "objectType", "objectID", "objectRepr",
            "prechangeData", "postchangeData", "diff", "message",
        ]
        read_only_fields = fields


class TenantSerializer(serializers.ModelSerializer):
    """A tenant: the owner of subnets, pools and reservations."""

    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)

    class Meta:
        model = Tenant
        fields = ["id", "name", "description", "createdAt", "updatedAt"]

    def validate_name(self, value):
        if self.instance is not None and value != self.instance.name:
            raise serializers.ValidationError("name is immutable; create a new tenant instead.")
        return value


class ClusterSettingsSerializer(serializers.ModelSerializer):
    """Spiderpool's `spiderpool-conf` switches, under their ConfigMap names."""

    enableIPv4 = serializers.BooleanField(source="enable_ipv4", required=False)
    enableIPv6 = serializers.BooleanField(source="enable_ipv6", required=False)
    enableStatefulSet = serializers.BooleanField(source="enable_statefulset", required=False)
    enableKubevirtStaticIP = serializers.BooleanField(source="enable_kubevirt_static_ip", required=False)
    enableSpiderSubnet = serializers.BooleanField(source="enable_spider_subnet", required=False)
    enableAutoPoolForApplication = serializers.BooleanField(
        source="enable_auto_pool_for_application", required=False
    )
    enableIPConflictDetection = serializers.BooleanField(source="enable_ip_conflict_detection", required=False)
    enableGatewayDetection = serializers.BooleanField(source="enable_gateway_detection", required=False)
    enableValidatingResourcesDeletedWebhook = serializers.BooleanField(
        source="enable_validating_resources_deleted_webhook", required=False
    )
    enableCleanOutdatedEndpoint = serializers.BooleanField(source="enable_clean_outdated_endpoint", required=False)
    clusterSubnetDefaultFlexibleIPNumber = serializers.IntegerField(
        source="cluster_subnet_default_flexible_ip_number", required=False, min_value=0
    )
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)

    class Meta:
        model = ClusterSettings
        fields = [
            "enableIPv4", "enableIPv6", "enableStatefulSet", "enableKubevirtStaticIP", "enableSpiderSubnet",
            "enableAutoPoolForApplication", "enableIPConflictDetection", "enableGatewayDetection",
            "enableValidatingResourcesDeletedWebhook", "enableCleanOutdatedEndpoint",
            "clusterSubnetDefaultFlexibleIPNumber", "updatedAt",
        ]

    def validate(self, attrs):
        ipv4 = attrs.get("enable_ipv4", self.instance.enable_ipv4 if self.instance else True)
        ipv6 = attrs.get("enable_ipv6", self.instance.enable_ipv6 if self.instance else True)
        if not ipv4 and not ipv6:
            raise serializers.ValidationError({"enableIPv4": ["At least one of enableIPv4 and enableIPv6 must be on."]})
        return attrs


class ExplainCniSerializer(serializers.Serializer):
    """The CNI configuration's IPAM defaults, as the node agent would pass them."""

    default_ipv4_ippool = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    default_ipv6_ippool = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    clean_gateway = serializers.BooleanField(required=False, default=False)


class ExplainSerializer(serializers.Serializer):
    """A dry run: which pool would serve this pod, and why every other candidate was rejected."""

    facts = serializers.DictField(help_text="PodFacts.to_dict(): namespace, name, uid, node, labels, annotations, "
                                  "owner, namespace_labels, namespace_annotations, node_labels.")
    ifName = serializers.CharField(default="eth0")
    cni = ExplainCniSerializer(required=False)


class ExplainResultSerializer(serializers.Serializer):
    """The outcome of a dry run and, per NIC and family, the candidates accepted and rejected with reasons."""

    ok = serializers.BooleanField()
    response = serializers.JSONField(required=False, help_text="The IpamAddResponse the pod would get.")
    error = serializers.JSONField(required=False, help_text="{code, message, details} when the pod would fail.")
    nics = serializers.ListField(child=serializers.JSONField())


class ReleaseRequestSerializer(serializers.Serializer):
    """Optional guard of an admin release: the pod UID expected to hold the address."""

    podUID = serializers.CharField(required=False, help_text="Release only while this pod UID holds the address.")


class ReleaseResultSerializer(serializers.Serializer):
    released = serializers.ListField(child=serializers.CharField())
