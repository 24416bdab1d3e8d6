"""Writes for subnets, pools, reservations and node credentials.

Every write validates with `validation` (the rules shared with the REST API and the webhooks), runs in one
transaction under `spec_lock()` so overlap checks cannot race, and records a change-log entry with before and
after snapshots.
"""

from __future__ import annotations

import hashlib
import secrets

from django.db import transaction
from django.utils import timezone

from spiderweb.changelog.models import ObjectChange
from spiderweb.changelog.services import object_change_record, object_snapshot
from spiderweb.engine.errors import Conflict, NotFound, PoolInUse
from spiderweb.engine.keys import LABEL_IPPOOL_CIDR, LABEL_OWNER_SUBNET, LABEL_SUBNET_CIDR
from spiderweb.engine.ranges import RangeSet, cidr_label
from spiderweb.ipam import validation
from spiderweb.ipam.models import Allocation, ClusterSettings, Coordinator, IPPool, NodeCredential, ReservedIP, Subnet
from spiderweb.tenancy.models import Tenant

POOL_FIELDS = (
    "ip_version subnet ips exclude_ips gateway routes pod_affinity namespace_affinity namespace_name node_affinity "
    "node_name multus_name default disable"
).split()
SUBNET_FIELDS = "ip_version subnet ips exclude_ips gateway routes".split()
RESERVED_FIELDS = ("ip_version", "ips")
COORDINATOR_FIELDS = tuple(validation.COORDINATOR_WIRE)
COORDINATOR_STATUS_FIELDS = ("phase", "reason", "overlay_pod_cidr", "service_cidr")
CIDR_LABEL, SUBNET_CIDR_LABEL, OWNER_SUBNET_LABEL = LABEL_IPPOOL_CIDR, LABEL_SUBNET_CIDR, LABEL_OWNER_SUBNET


def _apply(instance, clean: dict, fields) -> bool:
    """Copy cleaned spec fields onto the instance; True when anything changed (bumps the generation)."""
    changed = False
    for name in fields:
        if name in clean and getattr(instance, name) != clean[name]:
            setattr(instance, name, clean[name])
            changed = True
    return changed


def _catalog_changed() -> None:
    """Pools changed: this process plans with fresh data right away (others within a second)."""
    from spiderweb.ipam.allocation import pool_catalog_invalidate

    transaction.on_commit(pool_catalog_invalidate)


def _reset_scan(pool: IPPool) -> None:
    """Addresses may have become free below the scan hint: walk the pool again from its lowest address."""
    pool.scan_from = ""
    pool.fresh_exhausted = False


# ------------------------------------------------------------------------------------------------------- pools


def ippool_create(
    *, tenant: Tenant, name: str, spec: dict, labels: dict | None = None, confined: bool = False
) -> IPPool:
    """Create a SpiderIPPool after every webhook rule passed; defaults and labels as Spiderpool's mutator.

    `confined` (a tenant member, not a cluster administrator): the pool may not lie in another tenant's subnet.
    """
    with transaction.atomic():
        validation.spec_lock()
        if IPPool.objects.filter(name=name).exists():
            raise validation.SpecInvalid({"name": [f"IPPool {name} already exists."]})
        clean = validation.ippool_clean(spec)
        if confined:
            validation.ippool_confine(tenant=tenant, spec=clean)
        pool = IPPool(name=name, tenant=tenant, labels=dict(validation.labels_clean(labels) or {}))
        _apply(pool, clean, POOL_FIELDS)
        pool.owner_subnet = clean.get("owner_subnet")
        _pool_labels(pool)
        pool.full_clean(exclude=["scan_from"])
        pool.save()
        object_change_record(instance=pool, action=ObjectChange.Action.CREATE, before=None)
        _catalog_changed()
    return pool


def ippool_update(*, pool: IPPool, spec: dict, labels: dict | None = None,
                  by_application_controller: bool = False) -> IPPool:
    """Update a pool's spec; ipVersion and subnet are immutable and allocated addresses cannot be dropped.

    The addresses of a SpiderSubnet auto pool are the application controller's (spec §1.2): only it passes
    ``by_application_controller``; the REST API, the admin and the webhooks are refused a change of them.
    """
    with transaction.atomic():
        validation.spec_lock()
        pool = IPPool.objects.select_for_update().get(pk=pool.pk)
        if pool.auto_app_uid and not by_application_controller and "ips" in spec and \
                RangeSet.parse(spec["ips"] or [], pool.ip_version) != RangeSet.parse(pool.ips or [], pool.ip_version):
            raise validation.SpecInvalid({"ips": [
                f"the addresses of auto-created IPPool {pool.name} are managed by the application controller; change "
                f"ipam.spidernet.io/ippool-ip-number on the application instead"]})
        before = object_snapshot(pool)
        merged = {name: getattr(pool, name) for name in POOL_FIELDS} | spec
        clean = validation.ippool_clean(merged, instance=pool)
        if _apply(pool, clean, POOL_FIELDS):
            pool.generation += 1
            _reset_scan(pool)
        if labels is not None:
            pool.labels = dict(validation.labels_clean(labels))
        if pool.owner_subnet_id is None and clean.get("owner_subnet") is not None:
            pool.owner_subnet = clean["owner_subnet"]
        _pool_labels(pool)
        pool.full_clean(exclude=["scan_from"])
        pool.save()
        object_change_record(instance=pool, action=ObjectChange.Action.UPDATE, before=before)
        _catalog_changed()
    return pool


def ippool_delete(*, pool: IPPool) -> None:
    """Delete a pool that holds no allocation; otherwise refuse and name the holders."""
    with transaction.atomic():
        pool = IPPool.objects.select_for_update().get(pk=pool.pk)
        holders = list(
            Allocation.objects.filter(pool=pool).select_related("endpoint").order_by("address_key")[:20]
        )
        if holders:
            total = Allocation.objects.filter(pool=pool).count()
            names = [f"{a.address} ({a.endpoint}, {a.interface})" for a in holders]
            raise PoolInUse(
                f"IPPool {pool.name} still holds {total} allocations: {', '.join(names[:5])}"
                + (" …" if total > 5 else ""),
                details={"holders": names, "count": total},
            )
        before = object_snapshot(pool)
        object_change_record(instance=pool, action=ObjectChange.Action.DELETE, before=before)
        pool.delete()
        _catalog_changed()


def _pool_labels(pool: IPPool) -> None:
    pool.labels = dict(pool.labels or {})
    pool.labels[CIDR_LABEL] = cidr_label(pool.network)
    if pool.owner_subnet is not None:
        pool.labels[OWNER_SUBNET_LABEL] = pool.owner_subnet.name


# ----------------------------------------------------------------------------------------------------- subnets


def subnet_create(
    *, tenant: Tenant, name: str, spec: dict, labels: dict | None = None, confined: bool = False
) -> Subnet:
    """Create a SpiderSubnet and adopt orphan pools of the same CIDR (spec §1.3 controller).

    `confined` (a tenant member): the subnet may not cover another tenant's pools.
    """
    with transaction.atomic():
        validation.spec_lock()
        if Subnet.objects.filter(name=name).exists():
            raise validation.SpecInvalid({"name": [f"SpiderSubnet {name} already exists."]})
        clean = validation.subnet_clean(spec)
        if confined:
            validation.subnet_confine(tenant=tenant, spec=clean)
        subnet = Subnet(name=name, tenant=tenant, labels=dict(validation.labels_clean(labels) or {}))
        _apply(subnet, clean, SUBNET_FIELDS)
        subnet.labels[SUBNET_CIDR_LABEL] = cidr_label(subnet.network)
        subnet.full_clean()
        subnet.save()
        for pool in IPPool.objects.filter(ip_version=subnet.ip_version, subnet=subnet.subnet, owner_subnet=None):
            pool.owner_subnet = subnet
            _pool_labels(pool)
            pool.save(update_fields=["owner_subnet", "labels", "updated_at"])
        object_change_record(instance=subnet, action=ObjectChange.Action.CREATE, before=None)
    return subnet


def subnet_update(*, subnet: Subnet, spec: dict, labels: dict | None = None) -> Subnet:
    with transaction.atomic():
        validation.spec_lock()
        subnet = Subnet.objects.select_for_update().get(pk=subnet.pk)
        before = object_snapshot(subnet)
        merged = {name: getattr(subnet, name) for name in SUBNET_FIELDS} | spec
        clean = validation.subnet_clean(merged, instance=subnet)
        if _apply(subnet, clean, SUBNET_FIELDS):
            subnet.generation += 1
        if labels is not None:
            subnet.labels = dict(validation.labels_clean(labels))
        subnet.labels[SUBNET_CIDR_LABEL] = cidr_label(subnet.network)
        subnet.full_clean()
        subnet.save()
        object_change_record(instance=subnet, action=ObjectChange.Action.UPDATE, before=before)
    return subnet


def subnet_delete(*, subnet: Subnet) -> None:
    """Delete a subnet that controls no pool; otherwise refuse and name them."""
    with transaction.atomic():
        subnet = Subnet.objects.select_for_update().get(pk=subnet.pk)
        pools = list(subnet.pools.values_list("name", flat=True)[:20])
        if pools:
            raise PoolInUse(
                f"SpiderSubnet {subnet.name} still controls IPPools {', '.join(pools)}",
                details={"holders": pools},
            )
        object_change_record(instance=subnet, action=ObjectChange.Action.DELETE, before=object_snapshot(subnet))
        subnet.delete()


# --------------------------------------------------------------------------------------------------- reserved


def reservedip_create(
    *, tenant: Tenant, name: str, spec: dict, labels: dict | None = None, confined: bool = False
) -> ReservedIP:
    """Create a SpiderReservedIP. `confined` (a tenant member): only addresses of the tenant's own pools/subnets."""
    with transaction.atomic():
        validation.spec_lock()
        if ReservedIP.objects.filter(name=name).exists():
            raise validation.SpecInvalid({"name": [f"SpiderReservedIP {name} already exists."]})
        clean = validation.reservedip_clean(spec)
        if confined:
            validation.reservation_confine(tenant=tenant, spec=clean)
        reserved = ReservedIP(name=name, tenant=tenant, labels=dict(validation.labels_clean(labels) or {}))
        _apply(reserved, clean, RESERVED_FIELDS)
        reserved.full_clean()
        reserved.save()
        object_change_record(instance=reserved, action=ObjectChange.Action.CREATE, before=None)
    return reserved


def reservedip_update(
    *, reserved: ReservedIP, spec: dict, labels: dict | None = None, confined: bool = False
) -> ReservedIP:
    """Change a reservation; `confined` as in `reservedip_create`."""
    with transaction.atomic():
        validation.spec_lock()
        reserved = ReservedIP.objects.select_for_update().get(pk=reserved.pk)
        before = object_snapshot(reserved)
        merged = {name: getattr(reserved, name) for name in RESERVED_FIELDS} | spec
        clean = validation.reservedip_clean(merged, instance=reserved)
        if confined and "ips" in spec:
            validation.reservation_confine(tenant=reserved.tenant, spec=clean)
        if _apply(reserved, clean, RESERVED_FIELDS):
            reserved.generation += 1
            _reset_family_scans(reserved.ip_version)
        if labels is not None:
            reserved.labels = dict(validation.labels_clean(labels))
        reserved.save()
        object_change_record(instance=reserved, action=ObjectChange.Action.UPDATE, before=before)
    return reserved


def reservedip_delete(*, reserved: ReservedIP) -> None:
    with transaction.atomic():
        validation.spec_lock()
        object_change_record(instance=reserved, action=ObjectChange.Action.DELETE, before=object_snapshot(reserved))
        _reset_family_scans(reserved.ip_version)
        reserved.delete()


def _reset_family_scans(version: int) -> None:
    """Freed reservations may open addresses below every pool's scan hint."""
    IPPool.objects.filter(ip_version=version).update(scan_from="", fresh_exhausted=False)


# ------------------------------------------------------------------------------------------------ coordinators


def coordinator_create(*, tenant: Tenant, name: str, spec: dict, labels: dict | None = None) -> Coordinator:
    """Create the mirror of a SpiderCoordinator (the webhook's defaults and rules, spec §1.7); its status starts
    ``NotReady`` until the coordinator controller has discovered the cluster's CIDRs."""
    with transaction.atomic():
        validation.spec_lock()
        if Coordinator.objects.filter(name=name).exists():
            raise validation.SpecInvalid({"name": [f"SpiderCoordinator {name} already exists."]})
        clean = validation.coordinator_clean(spec)
        coordinator = Coordinator(name=name, tenant=tenant, labels=dict(labels or {}))
        _apply(coordinator, clean, COORDINATOR_FIELDS)
        coordinator.full_clean()
        coordinator.save()
        object_change_record(instance=coordinator, action=ObjectChange.Action.CREATE, before=None)
    return coordinator


def coordinator_update(*, coordinator: Coordinator, spec: dict, labels: dict | None = None) -> Coordinator:
    """Change a coordinator's spec (the same rules as create); a spec change bumps the generation, so the mirror
    pushes it to the CRD."""
    with transaction.atomic():
        validation.spec_lock()
        coordinator = Coordinator.objects.select_for_update().get(pk=coordinator.pk)
        if coordinator.terminating:
            raise validation.SpecInvalid({"name": ["cannot update a terminating SpiderCoordinator"]})
        before = object_snapshot(coordinator)
        merged = {name: getattr(coordinator, name) for name in COORDINATOR_FIELDS} | spec
        clean = validation.coordinator_clean(merged, instance=coordinator)
        if _apply(coordinator, clean, COORDINATOR_FIELDS):
            coordinator.generation += 1
        if labels is not None:
            coordinator.labels = dict(labels)
        coordinator.full_clean()
        coordinator.save()
        object_change_record(instance=coordinator, action=ObjectChange.Action.UPDATE, before=before)
    return coordinator


def coordinator_delete(*, coordinator: Coordinator) -> None:
    """Delete a coordinator's mirror (nothing holds it: pods read it only while they start)."""
    with transaction.atomic():
        object_change_record(instance=coordinator, action=ObjectChange.Action.DELETE,
                             before=object_snapshot(coordinator))
        coordinator.delete()


def coordinator_status_set(*, name: str, status: dict) -> Coordinator | None:
    """Store the status the coordinator controller discovered (``phase``, ``reason``, ``overlayPodCIDR``,
    ``serviceCIDR`` as in the CRD). Only a change is written, with a change-log record; ``None`` when no
    coordinator of that name is mirrored (yet)."""
    values = {"phase": status.get("phase") or Coordinator.Phase.NOT_READY, "reason": status.get("reason") or "",
              "overlay_pod_cidr": list(status.get("overlayPodCIDR") or []),
              "service_cidr": list(status.get("serviceCIDR") or [])}
    with transaction.atomic():
        coordinator = Coordinator.objects.select_for_update().filter(name=name).first()
        if coordinator is None:
            return None
        if all(getattr(coordinator, field) == value for field, value in values.items()):
            return coordinator
        before = object_snapshot(coordinator)
        for field, value in values.items():
            setattr(coordinator, field, value)
        coordinator.full_clean()
        # A queryset update: the status is not the mirror's to push back (no post_save echo to the CRD).
        Coordinator.objects.filter(pk=coordinator.pk).update(**values, updated_at=timezone.now())
        object_change_record(instance=coordinator, action=ObjectChange.Action.UPDATE, before=before,
                             message=f"status {values['phase']}")
    return coordinator


# ----------------------------------------------------------------------------------------------------- tenants


def tenant_create(*, name: str, description: str = "") -> Tenant:
    with transaction.atomic():
        tenant = Tenant(name=name, description=description)
        tenant.full_clean()
        tenant.save()
        object_change_record(instance=tenant, action=ObjectChange.Action.CREATE, before=None)
    return tenant


def tenant_update(*, tenant: Tenant, description: str) -> Tenant:
    with transaction.atomic():
        before = object_snapshot(tenant)
        tenant.description = description
        tenant.full_clean()
        tenant.save()
        object_change_record(instance=tenant, action=ObjectChange.Action.UPDATE, before=before)
    return tenant


def tenant_delete(*, tenant: Tenant) -> None:
    """Delete a tenant that owns nothing; otherwise refuse and say what it still owns."""
    with transaction.atomic():
        owned = [
            f"{model._meta.verbose_name} {obj}"
            for model in (Subnet, IPPool, ReservedIP, Coordinator)
            for obj in model.objects.filter(tenant=tenant)[:5]
        ]
        if owned:
            raise PoolInUse(f"tenant {tenant.name} still owns {', '.join(owned)}", details={"holders": owned})
        object_change_record(instance=tenant, action=ObjectChange.Action.DELETE, before=object_snapshot(tenant))
        tenant.delete()


# ------------------------------------------------------------------------------------------- node credentials


def node_credential_issue(*, node_name: str, created_by=None) -> tuple[NodeCredential, str]:
    """Issue (or rotate) a node's credential. The token is shown once; only its hash is stored."""
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    token = f"swn_{prefix}.{secret}"
    with transaction.atomic():
        credential, _ = NodeCredential.objects.update_or_create(
            node_name=node_name,
            defaults=dict(
                token_prefix=prefix, token_hash=_token_hash(token), revoked=False, created_by=created_by
            ),
        )
    return credential, token


def node_credential_authenticate(token: str) -> NodeCredential:
    """Resolve a bearer token to a live node credential or raise NotFound (no timing oracle on the hash)."""
    if not token.startswith("swn_") or "." not in token:
        raise NotFound("not a node token")
    prefix = token[4:].split(".", 1)[0]
    credential = _live_node_credential(prefix)
    if credential is None or not secrets.compare_digest(credential.token_hash, _token_hash(token)):
        raise NotFound("unknown or revoked node token")
    return credential


def _live_node_credential(prefix: str) -> NodeCredential | None:
    """The unrevoked credential with this token prefix. Every agent request authenticates, so the query is written
    once rather than compiled by the ORM per request (that compilation was the largest part of it)."""
    return next(iter(NodeCredential.objects.raw(_LIVE_CREDENTIAL_SQL, [prefix])), None)


_LIVE_CREDENTIAL_SQL = f"SELECT * FROM {NodeCredential._meta.db_table} WHERE token_prefix = %s AND NOT revoked"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------------- settings


def cluster_settings_update(*, changes: dict) -> ClusterSettings:
    """Change the cluster switches (Spiderpool's spiderpool-conf) with a change-log record; refused while they come
    from the chart's ConfigMap (which every component reads, so the row would silently disagree with the agents)."""
    if ClusterSettings.config_path():
        raise Conflict(f"the cluster settings come from {ClusterSettings.config_path()} (the spiderpool-conf "
                       f"ConfigMap): change them there (helm upgrade), not here")
    with transaction.atomic():
        validation.spec_lock()
        current = ClusterSettings.objects.select_for_update().get(pk=1)
        before = object_snapshot(current)
        for name, value in changes.items():
            setattr(current, name, value)
        if not (current.enable_ipv4 or current.enable_ipv6):
            raise validation.SpecInvalid({"enable_ipv4": ["At least one of IPv4 and IPv6 must stay enabled."]})
        current.full_clean()
        current.save()
        object_change_record(instance=current, action=ObjectChange.Action.UPDATE, before=before)
    return current
