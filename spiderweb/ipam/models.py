"""IPAM data model: Spiderpool's CRDs as tables, plus the rows that make double allocation impossible.

Spec fields keep Spiderpool's meaning (spec §1); names are snake_case here and camelCase on the wire. Ranges
are stored as canonical range strings (`["10.0.0.1-10.0.0.9"]`) and turned into `engine.ranges.RangeSet` when
needed; nothing expands a range into rows except actual allocations.
"""

import time
from functools import cached_property

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from spiderweb.engine.ranges import RangeSet, parse_cidr
from spiderweb.k8s import spiderpool_conf
from spiderweb.tenancy.models import Tenant

k8s_name = RegexValidator(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    "Use a Kubernetes object name: lowercase letters, digits, '-' and '.'.",
)


class IPVersion(models.IntegerChoices):
    IPV4 = 4, "IPv4"
    IPV6 = 6, "IPv6"


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class MirroredModel(TimestampedModel):
    """Fields shared by objects mirrored to a Spiderpool CRD (resourceVersion and generation bookkeeping)."""

    name = models.CharField(max_length=253, unique=True, validators=[k8s_name])
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    labels = models.JSONField(default=dict, blank=True)
    terminating = models.BooleanField(default=False, help_text="Deletion requested; no new allocations.")
    generation = models.BigIntegerField(default=1, help_text="Bumped on every spec change.")
    k8s_uid = models.CharField(max_length=64, blank=True)
    k8s_resource_version = models.CharField(max_length=64, blank=True)
    synced_generation = models.BigIntegerField(default=0, help_text="Generation last written to the CRD.")

    class Meta:
        abstract = True

    def __str__(self):
        return self.name


class RangeSpecMixin(models.Model):
    """ipVersion, subnet, ips, excludeIPs, gateway and routes: shared by SpiderSubnet and SpiderIPPool."""

    ip_version = models.PositiveSmallIntegerField("IP version", choices=IPVersion.choices)
    subnet = models.CharField(max_length=64, help_text="Canonical CIDR, e.g. 10.6.0.0/16.")
    ips = models.JSONField(default=list, blank=True, help_text="Range strings: 10.6.0.10-10.6.0.99 or 10.6.0.5.")
    exclude_ips = models.JSONField(default=list, blank=True)
    gateway = models.CharField(max_length=45, blank=True, default="")
    routes = models.JSONField(default=list, blank=True, help_text='[{"dst": "10.7.0.0/16", "gw": "10.6.0.1"}]')

    class Meta:
        abstract = True

    @cached_property
    def network(self):
        return parse_cidr(self.subnet, self.ip_version)

    @cached_property
    def total_ranges(self) -> RangeSet:
        """ips − excludeIPs (Spiderpool's "total IPs")."""
        return RangeSet.parse(self.ips, self.ip_version).subtract(RangeSet.parse(self.exclude_ips, self.ip_version))

    @property
    def total_ip_count(self) -> int:
        return self.total_ranges.count()


class Subnet(RangeSpecMixin, MirroredModel):
    """SpiderSubnet: an L3 subnet from which pools (manual or auto-created) are cut."""

    class Meta:
        ordering = ["name"]


class IPPool(RangeSpecMixin, MirroredModel):
    """SpiderIPPool: addresses that pods may get, with the affinities that decide which pods."""

    pod_affinity = models.JSONField(null=True, blank=True)
    namespace_affinity = models.JSONField(null=True, blank=True)
    namespace_name = models.JSONField(default=list, blank=True)
    node_affinity = models.JSONField(null=True, blank=True)
    node_name = models.JSONField(default=list, blank=True)
    multus_name = models.JSONField(default=list, blank=True)
    default = models.BooleanField(default=False, help_text="Member of the cluster-default pool set.")
    disable = models.BooleanField(default=False, help_text="Skipped by allocation; release still works.")
    owner_subnet = models.ForeignKey(Subnet, null=True, blank=True, on_delete=models.PROTECT, related_name="pools")
    annotations = models.JSONField(default=dict, blank=True)
    auto_app_uid = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="UID of the application an auto-created pool serves."
    )
    auto_interface = models.CharField(max_length=15, blank=True, help_text="NIC an auto-created pool serves.")
    auto_desired = models.PositiveIntegerField(
        default=0, help_text="Size the application controller wants this auto pool to have (it may still be growing)."
    )
    scan_from = models.CharField(
        max_length=32,
        blank=True,
        default="",
        help_text="Address key below which every address of the pool has been used at least once.",
    )
    fresh_exhausted = models.BooleanField(default=False, help_text="No never-used address left; recycle only.")

    class Meta:
        ordering = ["name"]
        verbose_name = "IP pool"
        indexes = [models.Index(fields=["ip_version", "default"], name="ippool_family_default_idx")]


class ReservedIP(MirroredModel):
    """SpiderReservedIP: addresses never handed out, wherever they sit."""

    ip_version = models.PositiveSmallIntegerField("IP version", choices=IPVersion.choices)
    ips = models.JSONField("IPs", default=list)

    class Meta:
        ordering = ["name"]
        verbose_name = "reserved IP"

    @cached_property
    def ranges(self) -> RangeSet:
        return RangeSet.parse(self.ips, self.ip_version)


class Endpoint(TimestampedModel):
    """SpiderEndpoint: the allocation record of one pod (name-keyed so StatefulSet pods find theirs again)."""

    namespace = models.CharField(max_length=253)
    name = models.CharField(max_length=253)
    uid = models.CharField(max_length=64, help_text="UID of the pod currently owning it.")
    node = models.CharField(max_length=253, blank=True)
    owner_kind = models.CharField(max_length=63, default="Pod")
    owner_name = models.CharField(max_length=253, blank=True)
    owner_uid = models.CharField(max_length=64, blank=True)
    owner_api_version = models.CharField(max_length=100, blank=True)
    k8s_resource_version = models.CharField(max_length=64, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["namespace", "name"]
        constraints = [models.UniqueConstraint(fields=["namespace", "name"], name="uniq_endpoint_pod")]
        # One plain index for lookups by UID; `db_index` would add a second (LIKE) index on PostgreSQL that no query
        # uses and every pod's ADD and DEL would maintain.
        indexes = [models.Index(fields=["uid"], name="endpoint_uid_idx")]

    def __str__(self):
        return f"{self.namespace}/{self.name}"

    @property
    def is_static(self) -> bool:
        """StatefulSet and KubeVirt endpoints keep their addresses across pod re-creation."""
        return self.owner_kind in ("StatefulSet", "VirtualMachineInstance")


# `AddressHistory.release_reason` of the IP GC's releases (set by spiderweb.controllers.gc; read by the dashboard).
GC_RELEASE_TRACED = "gc-traced"  # a traced pod (deleted, finished, evicted) whose grace period ran out
GC_RELEASE_SCAN = "gc-scan"  # the full scan found no live pod behind the address
GC_RELEASE_REASONS = (GC_RELEASE_TRACED, GC_RELEASE_SCAN)


class AddressHistory(models.Model):
    """A finished holding: who held an address, from when to when. Survives pool and endpoint deletion.

    Written when the holding ends (release, or a StatefulSet pod re-bound to a new UID); the holding in progress
    is the live `Allocation` row itself, so the allocation hot path writes no history row.
    """

    pool = models.ForeignKey(IPPool, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    pool_name = models.CharField(max_length=253)
    ip_version = models.PositiveSmallIntegerField(choices=IPVersion.choices)
    address = models.GenericIPAddressField()
    pod_namespace = models.CharField(max_length=253)
    pod_name = models.CharField(max_length=253)
    pod_uid = models.CharField(max_length=64)
    node = models.CharField(max_length=253, blank=True)
    interface = models.CharField(max_length=15)
    container_id = models.CharField(max_length=128, blank=True)
    allocated_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)
    release_reason = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["-allocated_at", "-id"]
        indexes = [models.Index(fields=["address"], name="history_address_idx")]
        verbose_name_plural = "address history"

    def __str__(self):
        return f"{self.address} {self.pod_namespace}/{self.pod_name}"


class Allocation(models.Model):
    """One live address held by one NIC of one pod. The constraints make a duplicate impossible."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="allocations")
    # No separate pool index: the (pool, address_key) unique index serves every pool lookup, and leaving the
    # planner only that index keeps the allocator's ordered range scans on it even with stale statistics.
    pool = models.ForeignKey(IPPool, on_delete=models.PROTECT, related_name="allocations", db_index=False)
    ip_version = models.PositiveSmallIntegerField(choices=IPVersion.choices)
    address = models.GenericIPAddressField()
    address_key = models.CharField(max_length=32, help_text="Fixed-width hex; string order is numeric order.")
    prefix_length = models.PositiveSmallIntegerField()
    interface = models.CharField(max_length=15)
    pod_uid = models.CharField(max_length=64)
    container_id = models.CharField(max_length=128, blank=True)
    network = models.CharField(max_length=253, blank=True, help_text="Name of the CNI network (conflist) that asked.")
    node = models.CharField(max_length=253, blank=True)
    gateway = models.CharField(max_length=45, blank=True)
    clean_gateway = models.BooleanField(default=False)
    routes = models.JSONField(default=list, blank=True)
    vlan = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(4094)])
    mac = models.CharField(max_length=17, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    bound_at = models.DateTimeField(default=timezone.now, help_text="Since when the current pod UID holds it.")

    class Meta:
        ordering = ["pool_id", "address_key"]
        constraints = [
            models.UniqueConstraint(fields=["pool", "address_key"], name="uniq_allocation_pool_address"),
            models.UniqueConstraint(fields=["ip_version", "address_key"], name="uniq_allocation_address"),
            models.UniqueConstraint(
                fields=["pod_uid", "interface", "ip_version"], name="uniq_allocation_pod_nic_family"
            ),
            models.CheckConstraint(condition=Q(ip_version__in=[4, 6]), name="allocation_ip_version_valid"),
        ]

    def __str__(self):
        return f"{self.address} → {self.endpoint}:{self.interface}"

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefix_length}"


class ReleasedAddress(models.Model):
    """An address that was used and is free again; reused least-recently-released first."""

    pool = models.ForeignKey(IPPool, on_delete=models.CASCADE, related_name="released", db_index=False)
    address_key = models.CharField(max_length=32)
    released_at = models.DateTimeField()

    class Meta:
        ordering = ["released_at", "id"]
        verbose_name_plural = "released addresses"
        constraints = [models.UniqueConstraint(fields=["pool", "address_key"], name="uniq_released_pool_address")]
        indexes = [models.Index(fields=["pool", "released_at"], name="released_pool_time_idx")]


class PodTombstone(models.Model):
    """A deleted pod sandbox (pod UID, container ID); an ADD of it arriving later is refused.

    The runtime's DEL can overtake the ADD of the same sandbox on its way to the portal (separate requests, agent
    threads and portal workers). Without a record the DEL finds nothing to release, the late ADD then allocates,
    and the address is held by a pod the runtime already deleted. Written only for a DEL the agent marks
    `podDead`: Kubernetes says the pod UID will never be alive again (deleted, finished, or an older incarnation),
    so no ADD of that sandbox is valid afterwards. Standalone mode never marks it: a plain runtime may ADD the
    same container again after a DEL, as CNI allows. Keyed by container ID too: kubelet re-creates the sandbox of
    a live pod with a new one. Pruned after an hour (`pod_tombstone_prune`); the race it guards is seconds long.
    """

    pod_uid = models.CharField(max_length=64)
    container_id = models.CharField(max_length=128)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["pod_uid", "container_id"], name="uniq_tombstone_pod_sandbox")]
        indexes = [models.Index(fields=["created_at"], name="tombstone_created_idx")]

    def __str__(self):
        return f"{self.pod_uid} sandbox {self.container_id}"


_settings_cache: dict = {}


class ClusterSettings(models.Model):
    """Spiderpool's `spiderpool-conf` ConfigMap: cluster-wide switches. A single row (pk=1).

    In a cluster the chart's ConfigMap is the source (`SPIDERWEB_CONFIG_PATH`, read once at start-up by every
    process): `load()` returns its values and the row cannot be edited. Without it (`make run`) the row is edited
    in the admin or the REST API.
    """

    enable_ipv4 = models.BooleanField(default=True)
    enable_ipv6 = models.BooleanField(default=True)
    enable_statefulset = models.BooleanField(default=True)
    enable_kubevirt_static_ip = models.BooleanField(default=True)
    enable_spider_subnet = models.BooleanField(default=True)
    enable_auto_pool_for_application = models.BooleanField(default=True)
    enable_ip_conflict_detection = models.BooleanField(default=False)
    enable_gateway_detection = models.BooleanField(default=False)
    enable_validating_resources_deleted_webhook = models.BooleanField(default=False)
    enable_clean_outdated_endpoint = models.BooleanField(default=False)
    cluster_subnet_default_flexible_ip_number = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "cluster settings"
        verbose_name_plural = "cluster settings"
        constraints = [models.CheckConstraint(condition=Q(pk=1), name="cluster_settings_singleton")]

    def __str__(self):
        return "Cluster settings"

    @classmethod
    def load(cls) -> "ClusterSettings":
        """The switches in force: `spiderpool-conf` when this process was given one, else the row."""
        obj, _ = cls.objects.get_or_create(pk=1)
        conf = spiderpool_conf.configured()
        if conf is not None:
            for name, value in conf.cluster_settings().items():
                setattr(obj, name, value)
        return obj

    @staticmethod
    def config_path() -> str:
        """The `conf.yml` the switches come from (`""`: the row, editable)."""
        conf = spiderpool_conf.configured()
        return conf.path if conf is not None else ""

    @classmethod
    def load_cached(cls, ttl: float = 1.0) -> "ClusterSettings":
        """The allocation hot path reads the switches at most once per `ttl` seconds per process."""
        now = time.monotonic()
        cached = _settings_cache.get("value")
        if cached is None or now - _settings_cache["at"] > ttl:
            cached = cls.load()
            _settings_cache.update(value=cached, at=now)
        return cached

    @staticmethod
    def invalidate_cache() -> None:
        _settings_cache.clear()

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        self.invalidate_cache()

    @property
    def families(self) -> frozenset[int]:
        return frozenset(v for v, on in ((4, self.enable_ipv4), (6, self.enable_ipv6)) if on)


class Coordinator(MirroredModel):
    """SpiderCoordinator: cluster-wide coordinator defaults and the discovered pod/service CIDRs.

    A mirror of the CRD, which is the source of truth: the spec arrives through the admission webhook and the
    mirror (edits in the admin are pushed back to the CRD), the status (``phase`` and the two CIDR lists) is
    written by the coordinator controller, which discovers it from the cluster (spec §8.7). Until the controller
    has synced it the phase is ``NotReady`` and the agents refuse coordinator work, as Spiderpool's do.
    """

    class Mode(models.TextChoices):
        AUTO = "auto"
        UNDERLAY = "underlay"
        OVERLAY = "overlay"
        DISABLED = "disabled"
        DISABLE = "disable", "disable (the plugin's spelling, spec A6)"

    class Phase(models.TextChoices):
        SYNCED = "Synced"
        NOT_READY = "NotReady"

    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.AUTO)
    pod_cidr_type = models.CharField(max_length=10, default="auto")
    hijack_cidr = models.JSONField(default=list, blank=True)
    policy_routes = models.JSONField(default=list, blank=True)
    pod_mac_prefix = models.CharField(max_length=5, blank=True)
    tune_pod_routes = models.BooleanField(default=True)
    pod_default_route_nic = models.CharField(max_length=15, blank=True)
    host_rule_table = models.PositiveIntegerField(default=500)
    pod_rp_filter = models.IntegerField(default=0, validators=[MinValueValidator(-1), MaxValueValidator(2)])
    tx_queue_len = models.PositiveIntegerField(default=0)
    veth_link_address = models.CharField(max_length=45, blank=True)
    veth_mtu = models.PositiveIntegerField(default=1500, validators=[MinValueValidator(1)])
    overlay_pod_cidr = models.JSONField(default=list, blank=True)
    service_cidr = models.JSONField(default=list, blank=True)
    phase = models.CharField(max_length=10, choices=Phase.choices, default=Phase.NOT_READY)
    reason = models.CharField(max_length=1024, blank=True, default="not synced by the coordinator controller yet")

    class Meta:
        ordering = ["name"]


class NodeCredential(TimestampedModel):
    """A node agent's credential: may allocate and release only for pods on its own node."""

    node_name = models.CharField(max_length=253, unique=True, validators=[k8s_name])
    token_prefix = models.CharField(max_length=12, unique=True)
    token_hash = models.CharField(max_length=64)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["node_name"]

    def __str__(self):
        return self.node_name
