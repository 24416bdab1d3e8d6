"""SpiderSubnet auto pools (spec §4): create, grow, shrink and reclaim the pools that follow a workload's replicas.

Pre-allocation is one PostgreSQL transaction per (NIC, family) under the spec lock and the subnet's row lock, not
Spiderpool's two-phase status dance: the new addresses are chosen from the subnet minus every other pool of it
minus the reservations, and written to the pool through ``ippool_create``/``ippool_update`` (the REST API's
rules: a pool can never take an address another pool owns nor drop one a pod holds). Nothing half-done survives a
crash: the transaction either moved the addresses or it did not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction

from spiderweb.engine import autopool
from spiderweb.engine.autopool import App, IPNumber, SubnetRequest
from spiderweb.engine.errors import Conflict, InvalidInput, NotFound
from spiderweb.engine.keys import (
    ANNO_IPPOOL_IP_NUMBER,
    LABEL_IPPOOL_RECLAIM,
    LABEL_OWNER_APP_KIND,
    LABEL_OWNER_APP_NAME,
    LABEL_OWNER_APP_NAMESPACE,
)
from spiderweb.engine.ranges import RangeSet, key_to_int
from spiderweb.ipam import services, validation
from spiderweb.ipam.models import Allocation, ClusterSettings, IPPool, Subnet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutoPoolState:
    """What one reconcile left: the pool, its size, the size wanted, and why the two differ (``""``: they don't)."""

    pool: str
    size: int
    desired: int
    shortfall: str = ""


def autopools_reconcile(*, app: App, requests: list[SubnetRequest], ip_number: IPNumber, replicas: int,
                        reclaim: bool) -> list[AutoPoolState]:
    """Bring every auto pool of ``app`` (one per NIC and family) to ``ip_number.desired(replicas)`` addresses."""
    cluster = ClusterSettings.load()
    if not (cluster.enable_spider_subnet and cluster.enable_auto_pool_for_application):
        raise InvalidInput("auto pools need enableSpiderSubnet and enableAutoPoolForApplication")
    if not autopool.app_name_fits(app):
        raise InvalidInput(f"{app.kind} {app.namespace}/{app.name}: the name is longer than the 63 characters of "
                           f"the owner-application-name label, so it cannot have auto pools")
    desired = ip_number.desired(replicas)
    states = []
    for request in requests:
        for version in (4, 6):
            if request.subnet(version) and version in cluster.families:
                states.append(_reconcile_one(app, request.subnet(version), request.interface, version, desired,
                                             ip_number, reclaim))
    return states


def _reconcile_one(app: App, subnet_name: str, interface: str, version: int, desired: int, ip_number: IPNumber,
                   reclaim: bool) -> AutoPoolState:
    with transaction.atomic():
        validation.spec_lock()
        subnet = Subnet.objects.select_for_update().filter(name=subnet_name).first()
        if subnet is None:
            raise NotFound(f"SpiderSubnet {subnet_name} does not exist")
        if subnet.terminating:
            raise Conflict(f"SpiderSubnet {subnet_name} is being deleted")
        if subnet.ip_version != version:
            raise InvalidInput(f"SpiderSubnet {subnet_name} is IPv{subnet.ip_version}, asked for IPv{version}")
        pool = auto_pool_find(app, subnet=subnet, interface=interface, version=version)
        current = RangeSet.parse(pool.ips, version) if pool else RangeSet.empty(version)
        taken = RangeSet.empty(version)
        for other in IPPool.objects.filter(owner_subnet=subnet).exclude(pk=pool.pk if pool else None):
            taken = taken.union(RangeSet.parse(other.ips, version))
        free = subnet.total_ranges.subtract(taken).subtract(validation.reserved_ranges(version)).subtract(current)
        in_use = _in_use(pool, version)
        plan = autopool.resize(current, desired=desired, subnet_free=free, in_use=in_use)
        name = pool.name if pool else autopool.auto_pool_name(version, app.name, interface, app.uid)
        if pool is None and not plan.ips:
            return AutoPoolState(name, 0, desired, plan.shortfall)
        labels = autopool.auto_pool_labels(app, subnet=subnet.name, interface=interface, version=version,
                                           reclaim=reclaim)
        spec = {"ip_version": version, "subnet": subnet.subnet, "ips": plan.ips.to_strings(),
                "gateway": subnet.gateway, "routes": subnet.routes,
                "pod_affinity": autopool.auto_pool_pod_affinity(app)}
        if pool is None:
            pool = services.ippool_create(tenant=subnet.tenant, name=name, spec=spec, labels=labels)
            log.info("auto pool %s created for %s %s/%s with %d addresses", name, app.kind, app.namespace,
                     app.name, plan.ips.count())
        elif plan.ips != current or {**(pool.labels or {}), **labels} != pool.labels:
            pool = services.ippool_update(pool=pool, spec=spec, labels={**(pool.labels or {}), **labels},
                                          by_application_controller=True)
        annotations = {**(pool.annotations or {}), ANNO_IPPOOL_IP_NUMBER: str(ip_number)}
        IPPool.objects.filter(pk=pool.pk).update(auto_app_uid=app.uid, auto_interface=interface, auto_desired=desired,
                                                 annotations=annotations)
    return AutoPoolState(name, plan.ips.count(), desired, plan.shortfall)


def _in_use(pool: IPPool | None, version: int) -> RangeSet:
    if pool is None:
        return RangeSet.empty(version)
    keys = Allocation.objects.filter(pool=pool).values_list("address_key", flat=True)
    return RangeSet.from_pairs(((key_to_int(k), key_to_int(k)) for k in keys), version)


def auto_pool_find(app: App, *, subnet: Subnet, interface: str, version: int) -> IPPool | None:
    """The application's pool for this NIC and family, locked: the one with its UID, else (spec §4.7) a
    ``reclaim: "false"`` pool left by an earlier application of the same kind, namespace and name (re-adoption)."""
    candidates = list(IPPool.objects.select_for_update().filter(owner_subnet=subnet, ip_version=version,
                                                                auto_interface=interface).exclude(auto_app_uid=""))
    for pool in candidates:
        if pool.auto_app_uid == app.uid:
            return pool
    for pool in candidates:
        labels = pool.labels or {}
        if (labels.get(LABEL_OWNER_APP_KIND), labels.get(LABEL_OWNER_APP_NAMESPACE),
                labels.get(LABEL_OWNER_APP_NAME)) == (app.kind, app.namespace, app.name) \
                and labels.get(LABEL_IPPOOL_RECLAIM) == "false":
            return pool
    return None


def autopools_reclaim(*, app_uid: str) -> dict:
    """Spec §4.7: the application is gone; delete its reclaimable pools. A pool that still holds addresses (pods
    not yet released by CNI DEL or GC) is marked terminating, so nothing new is allocated from it, and is
    deleted by a later reclaim once empty. Returns ``{"deleted": [...], "waiting": [...]}``."""
    deleted, waiting = [], []
    for pool in IPPool.objects.filter(auto_app_uid=app_uid).order_by("pk"):
        if (pool.labels or {}).get(LABEL_IPPOOL_RECLAIM) == "false":
            continue
        if Allocation.objects.filter(pool=pool).exists():
            if not pool.terminating:
                IPPool.objects.filter(pk=pool.pk).update(terminating=True)
                transaction.on_commit(_catalog_invalidate)
            waiting.append(pool.name)
            continue
        try:
            services.ippool_delete(pool=pool)
            deleted.append(pool.name)
        except Exception as exc:  # noqa: BLE001 - an allocation raced in; the next reclaim retries
            log.info("auto pool %s not deleted yet: %s", pool.name, exc)
            waiting.append(pool.name)
    return {"deleted": deleted, "waiting": waiting}


def _catalog_invalidate() -> None:
    from spiderweb.ipam.allocation import pool_catalog_invalidate

    pool_catalog_invalidate()


def auto_pool_apps() -> dict[str, tuple[str, str, str, str]]:
    """Every application that owns auto pools: uid → (gv, kind, namespace, name) from the pools' labels."""
    from spiderweb.engine import keys

    apps: dict[str, tuple[str, str, str, str]] = {}
    for uid, labels in IPPool.objects.exclude(auto_app_uid="").values_list("auto_app_uid", "labels"):
        labels = labels or {}
        apps[uid] = (labels.get(keys.LABEL_OWNER_APP_GV, ""), labels.get(keys.LABEL_OWNER_APP_KIND, ""),
                     labels.get(keys.LABEL_OWNER_APP_NAMESPACE, ""), labels.get(keys.LABEL_OWNER_APP_NAME, ""))
    return apps

