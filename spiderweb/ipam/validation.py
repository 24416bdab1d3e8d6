"""Every validation rule of Spiderpool's webhooks (spec §1.2–§1.4), in one place.

The admin forms, the REST API and the admission webhooks all call these functions, so a rule cannot differ
between the three doors. Each function takes the proposed spec as a dict keyed by model field name, returns the
normalised spec (canonical CIDR, merged ranges, defaulted ipVersion) and raises `SpecInvalid` with per-field
messages otherwise. Cross-object rules (overlap, subset of the owning subnet) read the database; callers hold
`spec_lock()` so two concurrent creates cannot both pass an overlap check.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL

from spiderweb.engine.errors import InvalidInput
from spiderweb.engine.ranges import RangeSet, parse_cidr
from spiderweb.engine.routes import validate_gateway, validate_routes
from spiderweb.engine.selector import (
    validate_dns_label,
    validate_dns_subdomain,
    validate_label_selector,
    validate_labels,
)
from spiderweb.ipam.models import Allocation, ClusterSettings, IPPool, ReservedIP, Subnet
from spiderweb.k8s import netconf

# Model field → Spiderpool/CRD field name, for messages and for the REST API's camelCase fields.
WIRE_NAMES = {
    "ip_version": "ipVersion",
    "subnet": "subnet",
    "ips": "ips",
    "exclude_ips": "excludeIPs",
    "gateway": "gateway",
    "routes": "routes",
    "pod_affinity": "podAffinity",
    "namespace_affinity": "namespaceAffinity",
    "namespace_name": "namespaceName",
    "node_affinity": "nodeAffinity",
    "node_name": "nodeName",
    "multus_name": "multusName",
    "default": "default",
    "disable": "disable",
    "name": "name",
    "tenant": "tenant",
}
# SpiderCoordinator spec: model field → CRD field (spec §1.7), in the CRD's order.
COORDINATOR_WIRE = {
    "mode": "mode",
    "pod_cidr_type": "podCIDRType",
    "hijack_cidr": "hijackCIDR",
    "policy_routes": "policyRoutes",
    "pod_mac_prefix": "podMACPrefix",
    "tune_pod_routes": "tunePodRoutes",
    "pod_default_route_nic": "podDefaultRouteNIC",
    "host_rule_table": "hostRuleTable",
    "pod_rp_filter": "podRPFilter",
    "tx_queue_len": "txQueueLen",
    "veth_link_address": "vethLinkAddress",
    "veth_mtu": "vethMTU",
}
WIRE_NAMES.update(COORDINATOR_WIRE)
_COORDINATOR_FIELD = {wire: field for field, wire in COORDINATOR_WIRE.items()}
_COORDINATOR_EMPTY = {"hijack_cidr": [], "policy_routes": [], "pod_mac_prefix": "", "pod_default_route_nic": "",
                      "veth_link_address": ""}


class SpecInvalid(InvalidInput):
    """A proposed spec broke one or more rules; `details["fields"]` maps field → list of messages."""

    def __init__(self, fields: dict[str, list[str]]):
        summary = "; ".join(f"{WIRE_NAMES.get(k, k)}: {' '.join(v)}" for k, v in fields.items())
        super().__init__(summary, details={"fields": fields})
        self.fields = fields


class _Errors:
    """Collects messages per field so a person sees every problem at once, not one per round trip."""

    def __init__(self):
        self.fields: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        self.fields.setdefault(field, []).append(message)

    def capture(self, field: str, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except InvalidInput as exc:
            self.add(field, exc.message)
            return None

    def raise_if_any(self) -> None:
        if self.fields:
            raise SpecInvalid(self.fields)


def spec_lock() -> None:
    """Serialise spec changes of pools, subnets and reservations (human rate), never allocations.

    Locks the cluster-settings row; must be called inside `transaction.atomic()`.
    """
    ClusterSettings.objects.get_or_create(pk=1)
    list(ClusterSettings.objects.select_for_update().filter(pk=1))


def _check_family(errors: _Errors, version: int, cluster: ClusterSettings) -> None:
    if version not in cluster.families:
        errors.add("ip_version", f"IPv{version} is disabled in the cluster settings (enableIPv{version}: false).")


def _ranges_inside(errors: _Errors, field: str, items, version: int, network) -> RangeSet | None:
    if items is None:
        items = []
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        errors.add(field, "Must be a list of IP range strings such as 10.0.0.1-10.0.0.9 or 10.0.0.5.")
        return None
    ranges = errors.capture(field, RangeSet.parse, items, version)
    if ranges is None or network is None:
        return ranges
    outside = ranges.subtract(RangeSet.from_network(network))
    if outside:
        errors.add(field, f"{', '.join(outside.to_strings())} is outside subnet {network}.")
        return None
    return ranges


def _range_spec_clean(errors: _Errors, spec: dict, cluster: ClusterSettings, instance=None) -> dict:
    """Shared rules of SpiderSubnet and SpiderIPPool: family, canonical CIDR, ranges, gateway, routes."""
    out = dict(spec)
    version = spec.get("ip_version")
    network = None
    subnet_text = spec.get("subnet")
    if not subnet_text:
        errors.add("subnet", "This field is required.")
    else:
        network = errors.capture("subnet", parse_cidr, str(subnet_text), version or None)
        if network is not None:
            if version and version != network.version:
                errors.add("ip_version", f"ipVersion {version} does not match subnet {network} (IPv{network.version}).")
            version = network.version
            out["subnet"] = str(network)
    if version not in (4, 6):
        if "ip_version" not in errors.fields and "subnet" not in errors.fields:
            errors.add("ip_version", "Must be 4 or 6.")
        return out
    out["ip_version"] = version
    _check_family(errors, version, cluster)
    if instance is not None:
        if instance.ip_version != version:
            errors.add("ip_version", "ipVersion is immutable.")
        if network is not None and instance.subnet != str(network):
            errors.add("subnet", "subnet is immutable.")
    ips = _ranges_inside(errors, "ips", spec.get("ips"), version, network)
    excludes = _ranges_inside(errors, "exclude_ips", spec.get("exclude_ips"), version, network)
    if ips is not None:
        out["ips"] = ips.to_strings()
    if excludes is not None:
        out["exclude_ips"] = excludes.to_strings()
    total = ips.subtract(excludes) if ips is not None and excludes is not None else None
    out["_total"] = total
    gateway = spec.get("gateway") or ""
    if gateway and network is not None and total is not None:
        canonical = errors.capture("gateway", validate_gateway, gateway, network, total)
        out["gateway"] = canonical or gateway
    routes = spec.get("routes") or []
    if network is not None:
        if not isinstance(routes, list):
            errors.add("routes", 'Must be a list of {"dst": CIDR, "gw": IP}.')
        else:
            parsed = errors.capture("routes", validate_routes, routes, network)
            if parsed is not None:
                out["routes"] = [r.to_dict() for r in parsed]
    return out


def _selector_clean(errors: _Errors, spec: dict, field: str) -> None:
    selector = spec.get(field)
    if selector is None:
        return
    if field == "pod_affinity" and isinstance(selector, dict) and not any(
        selector.get(key) for key in ("matchLabels", "matchExpressions")
    ):
        # An empty podAffinity would match every pod yet sort as the most specific pool (spec §3.3.7): refused, as
        # upstream's webhook does. Leave it out (or null) for a pool without pod affinity.
        errors.add(field, "podAffinity must have matchLabels or matchExpressions; omit it to match every pod.")
        return
    if selector == {}:
        spec[field] = None
        return
    errors.capture(field, validate_label_selector, selector)


def _multus_name_check(value: str, what: str) -> None:
    """``<namespace>/<name>`` or a bare ``<name>`` (in Spiderpool's namespace) of a NetworkAttachmentDefinition."""
    namespace, slash, name = value.rpartition("/")
    if slash:
        validate_dns_label(namespace, f"{what} namespace")
    validate_dns_subdomain(name, f"{what} name")


# What the CRD (and the API server behind it) accepts for each name list: refused here with the same words.
_NAME_CHECKS = {
    "namespace_name": lambda value: validate_dns_label(value, "namespaceName entry"),
    "node_name": lambda value: validate_dns_subdomain(value, "nodeName entry"),
    "multus_name": lambda value: _multus_name_check(value, "multusName entry"),
}


def _string_list_clean(errors: _Errors, spec: dict, field: str) -> None:
    value = spec.get(field) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        errors.add(field, "Must be a list of non-empty names.")
        return
    check = _NAME_CHECKS.get(field)
    for item in value if check is not None else ():
        errors.capture(field, check, item)
    spec[field] = value


def labels_clean(labels: dict | None) -> dict | None:
    """Object labels as Kubernetes accepts them (keys ``[prefix/]name``, values ≤ 63 characters); None stays None."""
    if labels is None:
        return None
    try:
        validate_labels(labels)
    except InvalidInput as exc:
        raise SpecInvalid({"labels": [exc.message]}) from None
    return labels


def _owner_subnet_for(network, version: int) -> Subnet | None:
    return Subnet.objects.filter(ip_version=version, subnet=str(network), terminating=False).first()


def ippool_clean(spec: dict, *, instance: IPPool | None = None) -> dict:
    """Validate and normalise a SpiderIPPool spec (create when `instance` is None, else update)."""
    cluster = ClusterSettings.load()
    errors = _Errors()
    if instance is not None and instance.terminating:
        raise SpecInvalid({"name": ["cannot update a terminating IPPool"]})
    out = _range_spec_clean(errors, spec, cluster, instance)
    for field in ("pod_affinity", "namespace_affinity", "node_affinity"):
        _selector_clean(errors, out, field)
    for field in ("namespace_name", "node_name", "multus_name"):
        _string_list_clean(errors, out, field)
    total: RangeSet | None = out.pop("_total", None)
    version = out.get("ip_version")
    if errors.fields or total is None:
        errors.raise_if_any()
        return out
    network = parse_cidr(out["subnet"], version)
    others = IPPool.objects.filter(ip_version=version)
    if instance is not None:
        others = others.exclude(pk=instance.pk)
    if instance is None:
        for name, subnet in _overlapping(others.exclude(subnet=out["subnet"]), network):
            errors.add("subnet", f"{network} overlaps the subnet {subnet} of IPPool {name}.")
    for other in others.filter(subnet=out["subnet"]):
        clash = other.total_ranges.intersect(total)
        if clash:
            errors.add("ips", f"{', '.join(clash.to_strings()[:3])} already belong to IPPool {other.name}.")
    owner = instance.owner_subnet if instance is not None and instance.owner_subnet_id else None
    if owner is None and cluster.enable_spider_subnet:
        owner = _owner_subnet_for(network, version)
    if owner is not None:
        outside = total.subtract(owner.total_ranges)
        if outside:
            errors.add(
                "ips", f"{', '.join(outside.to_strings()[:3])} are not in SpiderSubnet {owner.name}'s addresses."
            )
        if not out.get("gateway") and owner.gateway and "gateway" not in spec:
            out["gateway"] = owner.gateway
        if spec.get("routes") is None and owner.routes:
            out["routes"] = list(owner.routes)
    out["owner_subnet"] = owner
    if instance is not None:
        held = _held_outside(instance, total)
        if held:
            errors.add("ips", f"cannot remove allocated addresses {', '.join(held[:5])} from the pool.")
    errors.raise_if_any()
    return out


def _overlapping(rows: QuerySet, network) -> list[tuple[str, str]]:
    """(name, subnet) of the `rows` (pools or subnets) whose subnet overlaps `network`, in name order.

    PostgreSQL compares in the query (`&&` on inet), so a create does not read every pool of the cluster; SQLite
    (the embedded default, a small cluster) compares their subnet columns here.
    """
    rows = rows.order_by("name")
    if connection.vendor == "postgresql":
        column = f'{connection.ops.quote_name(rows.model._meta.db_table)}."subnet"'
        overlaps = RawSQL(f"{column}::inet && %s::inet", [str(network)], output_field=BooleanField())
        return list(rows.alias(overlaps=overlaps).filter(overlaps=True).values_list("name", "subnet"))
    return [(name, subnet) for name, subnet in rows.values_list("name", "subnet")
            if parse_cidr(subnet).overlaps(network)]


def _held_outside(pool: IPPool, total: RangeSet) -> list[str]:
    """Allocated addresses of `pool` that `total` would no longer contain."""
    held = []
    for address in Allocation.objects.filter(pool=pool).values_list("address", flat=True).iterator():
        if address not in total:
            held.append(address)
    return held


def subnet_clean(spec: dict, *, instance: Subnet | None = None) -> dict:
    """Validate and normalise a SpiderSubnet spec."""
    cluster = ClusterSettings.load()
    errors = _Errors()
    if instance is not None and instance.terminating:
        raise SpecInvalid({"name": ["cannot update a terminating SpiderSubnet"]})
    out = _range_spec_clean(errors, spec, cluster, instance)
    total: RangeSet | None = out.pop("_total", None)
    version = out.get("ip_version")
    if errors.fields or total is None:
        errors.raise_if_any()
        return out
    network = parse_cidr(out["subnet"], version)
    if instance is None:
        for name, subnet in _overlapping(Subnet.objects.filter(ip_version=version), network):
            errors.add("subnet", f"{network} overlaps SpiderSubnet {name} ({subnet}).")
        pools = IPPool.objects.filter(ip_version=version)
        for name, subnet in _overlapping(pools.exclude(subnet=str(network)), network):
            errors.add("subnet", f"{network} overlaps the subnet {subnet} of IPPool {name}.")
        for pool in pools.filter(subnet=str(network)).order_by("name"):
            if not pool.total_ranges.issubset(total):
                errors.add("ips", f"SpiderIPPool {pool.name} owns some IP addresses that this subnet can't control.")
    else:
        for pool in instance.pools.all():
            outside = pool.total_ranges.subtract(total)
            if outside:
                errors.add("ips", f"cannot drop {', '.join(outside.to_strings()[:3])}: used by IPPool {pool.name}.")
    errors.raise_if_any()
    return out


def reservedip_clean(spec: dict, *, instance: ReservedIP | None = None) -> dict:
    """Validate and normalise a SpiderReservedIP spec (no overlap checks: a reservation may sit anywhere)."""
    cluster = ClusterSettings.load()
    errors = _Errors()
    out = dict(spec)
    items = spec.get("ips")
    if not items or not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise SpecInvalid({"ips": ["Must be a non-empty list of IP range strings."]})
    version = spec.get("ip_version") or None
    ranges = errors.capture("ips", RangeSet.parse, items, version)
    if ranges is not None:
        out["ips"] = ranges.to_strings()
        out["ip_version"] = ranges.version
        _check_family(errors, ranges.version, cluster)
        if instance is not None and instance.ip_version != ranges.version:
            errors.add("ip_version", "ipVersion is immutable.")
    errors.raise_if_any()
    return out


def tenant_ranges(tenant, version: int) -> RangeSet:
    """Every address `tenant`'s own pools and subnets hold (ips − excludeIPs), for one family."""
    result = RangeSet.empty(version)
    for model in (IPPool, Subnet):
        for row in model.objects.filter(tenant=tenant, ip_version=version, terminating=False):
            result = result.union(row.total_ranges)
    return result


def reservation_confine(*, tenant, spec: dict) -> None:
    """A tenant member's reservation may only hold addresses of that tenant's own pools and subnets.

    Otherwise one member could reserve 0.0.0.0-255.255.255.255 (or another tenant's fixed address) and make every
    allocation of every tenant fail with ip_exhausted. `spec` is the cleaned spec (`reservedip_clean`).
    """
    ranges = RangeSet.parse(spec["ips"], spec["ip_version"])
    outside = ranges.subtract(tenant_ranges(tenant, ranges.version))
    if outside:
        shown = ", ".join(outside.to_strings()[:3]) + (" …" if len(outside.to_strings()) > 3 else "")
        raise SpecInvalid({"ips": [f"{shown} are not addresses of tenant {tenant.name}'s own pools or subnets."]})


def ippool_confine(*, tenant, spec: dict) -> None:
    """A tenant member's pool may not sit inside another tenant's SpiderSubnet (its capacity, its deletion and its
    name are that tenant's). `spec` is the cleaned spec (`ippool_clean`); the other subnet is not named.
    """
    owner = spec.get("owner_subnet")
    network = parse_cidr(spec["subnet"], spec["ip_version"])
    foreign = owner is not None and owner.tenant_id != tenant.pk
    if not foreign:
        foreign = bool(_overlapping(Subnet.objects.filter(ip_version=spec["ip_version"]).exclude(tenant=tenant),
                                    network))
    if foreign:
        raise SpecInvalid({"subnet": [f"{network} lies in a SpiderSubnet of another tenant; "
                                      f"create the pool in a subnet of tenant {tenant.name}."]})


def subnet_confine(*, tenant, spec: dict) -> None:
    """A tenant member's SpiderSubnet may not cover another tenant's pools (it would adopt them: take their
    capacity, block their deletion and learn their names). `spec` is the cleaned spec (`subnet_clean`)."""
    network = parse_cidr(spec["subnet"], spec["ip_version"])
    if _overlapping(IPPool.objects.filter(ip_version=spec["ip_version"]).exclude(tenant=tenant), network):
        raise SpecInvalid({"subnet": [f"{network} covers pools of another tenant; choose a subnet of tenant "
                                      f"{tenant.name}'s own."]})


def reserved_ranges(version: int) -> RangeSet:
    """Union of every non-terminating reservation of a family: never handed out."""
    result = RangeSet.empty(version)
    for reserved in ReservedIP.objects.filter(ip_version=version, terminating=False).only("ips", "ip_version"):
        result = result.union(reserved.ranges)
    return result


def pools_of_family(version: int) -> QuerySet[IPPool]:
    return IPPool.objects.filter(ip_version=version)


def coordinator_clean(spec: dict, *, instance=None) -> dict:
    """Validate and normalise a SpiderCoordinator spec (keyed by model field) with the webhook's own rules.

    The mutating webhook's defaults fill what is missing (``mode: auto``, ``hostRuleTable: 500``, ...), bare IPs in
    ``hijackCIDR``/``policyRoutes`` become /32 or /128, and every broken rule of spec §1.7 is reported on its field.
    The admin, the mirror and the webhook therefore accept exactly the same coordinators.

    >>> clean = coordinator_clean({"pod_cidr_type": "cluster", "hijack_cidr": ["169.254.25.10"]})
    >>> clean["mode"], clean["host_rule_table"], clean["hijack_cidr"], clean["pod_mac_prefix"]
    ('auto', 500, ['169.254.25.10/32'], '')
    """
    wire = {COORDINATOR_WIRE[name]: value for name, value in spec.items()
            if name in COORDINATOR_WIRE and value is not None}
    try:
        wire = netconf.coordinator_mutate({"metadata": {}, "spec": wire})["spec"]
    except InvalidInput as exc:
        raise SpecInvalid({"pod_cidr_type": [exc.message]}) from None
    errors = _Errors()
    for problem in netconf.coordinator_problems(wire):
        path, _, message = problem.partition(": ")
        where = path.removeprefix("spec.")
        top = where.split(".")[0].split("[")[0]
        errors.add(_COORDINATOR_FIELD.get(top, top), message if where == top else f"{where}: {message}")
    errors.raise_if_any()
    return {field: wire.get(name, _COORDINATOR_EMPTY.get(field)) for field, name in COORDINATOR_WIRE.items()}
