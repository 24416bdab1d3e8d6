"""The mirror between the IPAM tables and the Spiderpool CRDs: admission writes, reconciliation, status batches.

Level-based: every entry point reads both copies of an object (row and CRD) plus the last document both agreed on
(``MirrorState.synced_spec``), merges three ways (``spiderweb.mirror.merge``) and writes whichever side differs.
``mirror_in`` and ``mirror_out`` are the same reconciliation, started from a name (a watch event) or from a primary
key (a portal edit, possibly a delete). Rules that keep this safe:

* Database writes go through ``spiderweb.ipam.services`` (validation, spec lock, change log); only the
  ``terminating`` flag, which no IPAM service sets, is written here.
* No database transaction is held across a Kubernetes call: a CRD write calls our own admission webhook, which
  takes the spec lock, so a lock held here would deadlock the webhook.
* Writes to a CRD carry the resourceVersion they are based on; a 409 means "read again and merge again".
* Both sides changed the same field differently → Kubernetes wins, the portal's value goes to the change log and a
  Warning Event goes onto the CRD. Nothing is overwritten silently.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import socket
from functools import lru_cache

from django.db import transaction
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from spiderweb.changelog.context import Actor, acting_as
from spiderweb.changelog.models import ObjectChange
from spiderweb.changelog.services import object_change_record, object_snapshot
from spiderweb.engine.errors import Conflict, IPAMError, PoolInUse, Unavailable
from spiderweb.ipam.allocation import pool_catalog_invalidate
from spiderweb.ipam.models import Allocation, ClusterSettings, Endpoint, IPPool, Subnet
from spiderweb.ipam.validation import SpecInvalid
from spiderweb.k8s import crd
from spiderweb.k8s.admission import AdmissionRequest
from spiderweb.k8s.client import KubeError, KubeUnavailable, api_client
from spiderweb.mirror.config import mirror_config
from spiderweb.mirror.documents import (
    MIRROR_KINDS,
    MirrorKind,
    crd_body,
    doc_from_crd,
    doc_from_row,
    mirror_kind,
    model_spec,
    model_spec_for_create,
    tenant_for,
)
from spiderweb.mirror.merge import FieldConflict, three_way_merge
from spiderweb.mirror.models import Lease, MirrorState
from spiderweb.mirror.signals import from_kubernetes

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 4
# A row the webhook wrote whose CRD is not visible yet: the API server may still be storing it.
ADMISSION_GRACE = _dt.timedelta(seconds=60)
MIRROR_ACTOR = Actor(name="kubernetes-mirror")
CONFLICT_REASON = "SpiderwebConflict"
REFUSED_REASON = "SpiderwebRefused"


class MirrorRetry(Unavailable):
    """The CRD kept changing between read and write; the task retries later with backoff."""


@lru_cache(maxsize=1)
def crd_client() -> crd.CrdClient:
    """This process's Kubernetes client (``KUBECONFIG`` or the in-cluster service account)."""
    config = mirror_config()
    return crd.CrdClient(api_client(config.kubeconfig), timeout=config.k8s_timeout)


def _kubernetes_actor(username: str) -> Actor:
    return Actor(name=f"kubernetes:{username or 'unknown'}"[:150])


# ------------------------------------------------------------------------------------------------- admission


def admission_apply(*, kind: str, request: AdmissionRequest) -> list[str]:
    """Validate a CREATE/UPDATE of a pool, subnet or reservation and write it to the database, in one transaction.

    The write goes through the IPAM services, which validate with the REST API's rules under the spec lock, so two
    overlapping pools admitted at the same moment cannot both pass. On UPDATE the object is merged three ways
    with the portal's copy (a pending portal edit of another field survives). With ``dryRun`` everything runs and
    is rolled back. Returns warnings for the user; raises an ``IPAMError`` to deny.
    """
    mk = mirror_kind(kind)
    obj = request.object or {}
    if request.operation == "UPDATE" and crd.is_terminating(obj):
        # Finalizer removal and other metadata edits go through; spec edits of a dying object do not.
        if doc_from_crd(mk, obj)["spec"] != doc_from_crd(mk, request.old_object)["spec"]:
            raise SpecInvalid({"name": [f"cannot update a terminating {kind}"]})
        return []
    warnings: list[str] = []
    uid = crd.uid_of(obj)
    with acting_as(_kubernetes_actor(request.username)), from_kubernetes(), transaction.atomic():
        row = mk.model.objects.select_related("tenant").filter(name=request.name).first()
        k8s_doc = doc_from_crd(mk, obj)
        if row is None:
            row = mk.create(tenant=tenant_for(obj), name=request.name, spec=model_spec_for_create(mk, obj),
                            labels=k8s_doc["labels"])
        else:
            if row.terminating:
                raise Conflict(f"{kind} {request.name} is still being deleted in Spiderweb "
                               f"({mk.in_use(row)} in use); create it again once it is gone")
            state = MirrorState.objects.filter(kind=kind, name=request.name).first()
            base = state.synced_spec if state is not None and uid and state.k8s_uid == uid else None
            portal_doc = doc_from_row(mk, row)
            result = three_way_merge(base, portal_doc, k8s_doc)
            if result.differs_from(portal_doc):
                before = object_snapshot(row)
                row = mk.update(row, model_spec(mk, result.merged["spec"]), result.merged["labels"])
                if result.conflicts:
                    _conflicts_record(mk, row, obj, result.conflicts, before)
                    warnings.append(_conflict_text(result.conflicts))
        if uid and row.k8s_uid != uid:
            mk.model.objects.filter(pk=row.pk).update(k8s_uid=uid)
        if request.dry_run:
            transaction.set_rollback(True)
    return warnings


def admission_delete(*, kind: str, request: AdmissionRequest) -> None:
    """Allow a DELETE and mark the row terminating (allocation skips it); refuse only when the cluster setting
    ``enableValidatingResourcesDeletedWebhook`` is on and the object is in use (spec A12)."""
    mk = mirror_kind(kind)
    row = mk.model.objects.filter(name=request.name).first()
    old_uid = crd.uid_of(request.old_object)
    if row is None or (row.k8s_uid and old_uid and row.k8s_uid != old_uid):
        return
    in_use = mk.in_use(row)
    if in_use and ClusterSettings.load().enable_validating_resources_deleted_webhook:
        what = "allocated IPs" if mk.model is IPPool else "IPPools"
        raise PoolInUse(f"{kind} {request.name} still holds {in_use} {what}; deletion refused because "
                        f"enableValidatingResourcesDeletedWebhook is on", details={"count": in_use})
    if request.dry_run or row.terminating:
        return
    with acting_as(_kubernetes_actor(request.username)), from_kubernetes():
        _terminating_set(mk, row, True)


# ---------------------------------------------------------------------------------------------- reconciliation


# Kinds not stored in the database whose finalizer (added by our mutating webhook) the mirror still releases.
FINALIZER_ONLY_KINDS = {"SpiderCoordinator": crd.SPIDER_COORDINATOR}


def mirror_in(*, kind: str, name: str, client: crd.CrdClient | None = None) -> str:
    """Bring the database in line with the CRD ``name`` (and the CRD with the database where the portal edited)."""
    if kind in FINALIZER_ONLY_KINDS:
        return _finalizer_release(FINALIZER_ONLY_KINDS[kind], name, client or crd_client())
    return mirror_reconcile(kind=kind, name=name, client=client)


def _finalizer_release(kind: crd.CrdKind, name: str, client: crd.CrdClient) -> str:
    """Release our finalizer from a terminating object Spiderweb does not store (nothing else waits on it)."""
    obj = client.get(kind, name)
    if obj is None or not crd.is_terminating(obj):
        return "nothing to do"
    client.finalizer_remove(kind, obj)
    return "released"


def event_needs_reconcile(kind: str, obj: dict, event_type: str) -> bool:
    """False for a MODIFIED event that changed nothing the mirror owns: same incarnation, same ``generation`` (the
    API server bumps it on spec changes only), same labels, not terminating. Status writes, including our own
    status batches, then cost no task."""
    mk = MIRROR_KINDS.get(kind)
    if event_type != "MODIFIED" or mk is None or crd.is_terminating(obj):
        return True
    state = MirrorState.objects.filter(kind=kind, name=crd.meta(obj).get("name")).first()
    if state is None or state.k8s_uid != crd.uid_of(obj):
        return True
    if state.generation != int(crd.meta(obj).get("generation") or 0):
        return True
    return (state.synced_spec or {}).get("labels") != doc_from_crd(mk, obj)["labels"]


def mirror_out(*, kind: str, pk: int, client: crd.CrdClient | None = None) -> str:
    """Bring the CRD in line with the row ``pk``; a deleted row is found by id in its ``MirrorState``."""
    mk = mirror_kind(kind)
    row = mk.model.objects.filter(pk=pk).only("name").first()
    if row is not None:
        return mirror_reconcile(kind=kind, name=row.name, client=client)
    state = MirrorState.objects.filter(kind=kind, object_id=pk).first()
    if state is None:
        return "absent"
    return mirror_reconcile(kind=kind, name=state.name, client=client)


def mirror_reconcile(*, kind: str, name: str, client: crd.CrdClient | None = None) -> str:
    """Reconcile one object; returns what was done. Raises ``MirrorRetry``/``KubeUnavailable`` to be retried."""
    mk = mirror_kind(kind)
    if transaction.get_connection().in_atomic_block:
        # Our CRD writes call our own webhook, which takes the spec lock: a transaction held here would deadlock it.
        raise RuntimeError("mirror_reconcile must not run inside a database transaction")
    client = client or crd_client()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with acting_as(MIRROR_ACTOR):
                return _reconcile_once(mk, name, client)
        except crd.KubeConflict as exc:
            log.info("%s %s changed while reconciling (attempt %d): %s", kind, name, attempt, exc)
    raise MirrorRetry(f"{kind} {name} kept changing during {MAX_ATTEMPTS} reconcile attempts")


def _reconcile_once(mk: MirrorKind, name: str, client: crd.CrdClient) -> str:
    obj = client.get(mk.crd, name)
    row = mk.model.objects.select_related("tenant").filter(name=name).first()
    state = MirrorState.objects.filter(kind=mk.kind, name=name).first()

    if obj is not None and crd.is_terminating(obj):
        return _k8s_terminating(mk, obj, row, client)
    if obj is None:
        if row is None:
            _state_drop(mk, name)
            return "absent"
        if row.k8s_uid:
            if not row.k8s_resource_version and row.updated_at > timezone.now() - ADMISSION_GRACE:
                return "pending"  # admitted moments ago; the API server may not have stored it yet
            return _k8s_gone(mk, row)
        created = client.create(mk.crd, crd_body(mk, row, doc_from_row(mk, row)))
        _agree(mk, row, created)
        return "created"
    if row is None:
        if state is not None and state.object_id is not None and state.k8s_uid == crd.uid_of(obj):
            return _portal_deleted(mk, obj, client)
        row = _adopt(mk, obj, client)
        if row is None:
            return "refused"
        _agree(mk, row, obj)
        return "adopted"

    if row.terminating:  # a DELETE we admitted did not happen: the object lives on
        _terminating_set(mk, row, False)
    portal_doc, k8s_doc = doc_from_row(mk, row), doc_from_crd(mk, obj)
    same = state is not None and state.k8s_uid == crd.uid_of(obj)
    result = three_way_merge(state.synced_spec if same else None, portal_doc, k8s_doc)
    if result.differs_from(portal_doc):
        before = object_snapshot(row)
        try:
            with from_kubernetes():
                row = mk.update(row, model_spec(mk, result.merged["spec"]), result.merged["labels"])
        except IPAMError as exc:
            # Kubernetes holds a value the database refuses (its webhook was bypassed or off): say so, keep both.
            _event(client, obj, REFUSED_REASON, f"Spiderweb cannot take this {mk.kind}: {exc.message}")
            log.warning("%s %s: Kubernetes value refused: %s", mk.kind, name, exc.message)
            return "refused"
        if result.conflicts:
            _conflicts_record(mk, row, obj, result.conflicts, before, client=client)
    if result.differs_from(k8s_doc):
        obj = client.replace(mk.crd, crd_body(mk, row, result.merged, existing=obj))
        _agree(mk, row, obj, result.merged)
        return "pushed"
    _agree(mk, row, obj, result.merged)
    return "synced"


def _agree(mk: MirrorKind, row, obj: dict, doc: dict | None = None) -> None:
    """Both sides now hold ``doc``: remember it as the next merge base, with the CRD's version and generation."""
    m = crd.meta(obj)
    with transaction.atomic():
        MirrorState.objects.update_or_create(
            kind=mk.kind, name=row.name,
            defaults=dict(object_id=row.pk, k8s_uid=crd.uid_of(obj), synced_spec=doc or doc_from_crd(mk, obj),
                          resource_version=crd.resource_version_of(obj), generation=int(m.get("generation") or 0)),
        )
        mk.model.objects.filter(pk=row.pk).update(k8s_uid=crd.uid_of(obj),
                                                  k8s_resource_version=crd.resource_version_of(obj),
                                                  synced_generation=row.generation)


def _state_drop(mk: MirrorKind, name: str) -> None:
    MirrorState.objects.filter(kind=mk.kind, name=name).delete()


def _adopt(mk: MirrorKind, obj: dict, client: crd.CrdClient):
    """A CRD the database has never seen (created while the webhooks were off): take it in, or say why not."""
    try:
        with from_kubernetes():
            return mk.create(tenant=tenant_for(obj), name=crd.meta(obj)["name"], spec=model_spec_for_create(mk, obj),
                             labels=doc_from_crd(mk, obj)["labels"])
    except IPAMError as exc:
        _event(client, obj, REFUSED_REASON, f"Spiderweb cannot take this {mk.kind}: {exc.message}")
        log.warning("%s %s not adopted: %s", mk.kind, crd.meta(obj).get("name"), exc.message)
        return None


def _k8s_gone(mk: MirrorKind, row) -> str:
    """The CRD was deleted: delete the row, or keep it terminating while it is still in use."""
    in_use = mk.in_use(row)
    if not in_use:
        try:
            with from_kubernetes():
                mk.delete(row)
            _state_drop(mk, row.name)
            return "deleted"
        except PoolInUse:
            in_use = mk.in_use(row)  # an allocation raced in; keep it terminating
    if not row.terminating:
        _terminating_set(mk, row, True)
    return f"terminating ({in_use} in use)"


def _k8s_terminating(mk: MirrorKind, obj: dict, row, client: crd.CrdClient) -> str:
    """The CRD has a deletionTimestamp: release the row, then our finalizer (Spiderpool's controller does the same
    once ``allocatedIPs`` is empty)."""
    ours = row is not None and (row.k8s_uid == crd.uid_of(obj) or (not row.k8s_uid and row.terminating))
    outcome = _k8s_gone(mk, row) if ours else "released"
    if outcome.startswith("terminating") and mk.finalizer_waits_for_use:
        return outcome  # a pool keeps its CRD until its last address is released
    # A subnet lets its CRD go even while pools remain: Kubernetes garbage-collects the pools (owner references)
    # only once the subnet is gone, and the row follows when the last pool has left (resync sweep).
    client.finalizer_remove(mk.crd, obj)
    _state_drop(mk, crd.meta(obj)["name"])
    return outcome


def _portal_deleted(mk: MirrorKind, obj: dict, client: crd.CrdClient) -> str:
    """The row was deleted in the portal after both sides agreed: delete the CRD (this incarnation only)."""
    client.delete(mk.crd, crd.meta(obj)["name"], uid=crd.uid_of(obj))
    fresh = client.get(mk.crd, crd.meta(obj)["name"])
    if fresh is not None and crd.uid_of(fresh) == crd.uid_of(obj):
        client.finalizer_remove(mk.crd, fresh)
    _state_drop(mk, crd.meta(obj)["name"])
    return "deleted-in-kubernetes"


def _terminating_set(mk: MirrorKind, row, flag: bool) -> None:
    """Set the ``terminating`` flag (no IPAM service does) with a change-log record; allocation skips such pools."""
    with transaction.atomic():
        before = object_snapshot(row)
        mk.model.objects.filter(pk=row.pk).update(terminating=flag)
        row.terminating = flag
        message = "deleted in Kubernetes; kept until it is no longer in use" if flag else "deletion did not happen"
        object_change_record(instance=row, action=ObjectChange.Action.UPDATE, before=before, message=message)
        if mk.model is IPPool:
            transaction.on_commit(pool_catalog_invalidate)


# ---------------------------------------------------------------------------------------------------- conflicts


def _conflict_text(conflicts: tuple[FieldConflict, ...]) -> str:
    parts = [f"{c.path}: portal value {json.dumps(c.portal)} replaced by {json.dumps(c.kubernetes)}"
             for c in conflicts]
    return "Kubernetes and the portal changed the same field; Kubernetes wins and the portal's value is kept in " \
           "the Spiderweb change log: " + "; ".join(parts)


def _conflicts_record(mk: MirrorKind, row, obj: dict, conflicts, before: dict, *,
                      client: crd.CrdClient | None = None) -> None:
    """Keep the portal's losing values: a change-log record (full before/after snapshots, summary message) and a
    Warning Event on the CRD once the transaction commits."""
    fields = ", ".join(c.path for c in conflicts)
    object_change_record(instance=row, action=ObjectChange.Action.UPDATE, before=before,
                         message=f"conflict on {fields}: Kubernetes value kept, portal value in prechange data")
    text = _conflict_text(conflicts)
    log.warning("%s %s: %s", mk.kind, row.name, text)
    transaction.on_commit(lambda: _event(client, obj, CONFLICT_REASON, text))


def _event(client: crd.CrdClient | None, obj: dict, reason: str, message: str) -> None:
    """Best effort: a Warning Event that cannot be written is logged, never fatal."""
    if client is None and not mirror_config().enabled:
        return
    try:
        (client or crd_client()).event(obj, reason=reason, message=message)
    except (KubeError, KubeUnavailable) as exc:
        log.warning("could not record the %s event on %s: %s", reason, crd.meta(obj).get("name"), exc)


# ------------------------------------------------------------------------------------------------- resync sweep


def mirror_resync_plan() -> list[tuple[str, str, object]]:
    """Level-based sweep: what needs a reconcile now, as ``("out", kind, pk)`` and ``("in", kind, name)``.

    Rows never pushed (no ``k8s_uid``) or edited since the last push (``generation`` ahead of
    ``synced_generation``) go out; terminating rows go in (their CRD's finalizer waits for them to empty); states
    whose row is gone go out (a portal delete whose message was lost).
    """
    plan: list[tuple[str, str, object]] = []
    if not mirror_config().enabled:
        return plan
    for mk in MIRROR_KINDS.values():
        rows = mk.model.objects.values_list("pk", "name", "k8s_uid", "generation", "synced_generation", "terminating")
        known = set()
        for pk, name, uid, generation, synced, terminating in rows:
            known.add(pk)
            if terminating and uid:
                plan.append(("in", mk.kind, name))
            elif not uid or generation != synced:
                plan.append(("out", mk.kind, pk))
        for object_id in MirrorState.objects.filter(kind=mk.kind).exclude(object_id=None).values_list("object_id",
                                                                                                      flat=True):
            if object_id not in known:
                plan.append(("out", mk.kind, object_id))
    return plan


# ------------------------------------------------------------------------------------------------------- status


def _digest(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def ippool_status(pool: IPPool) -> dict:
    """SpiderIPPool status: ``allocatedIPs`` (JSON string, ``null`` when empty), counts."""
    rows = (Allocation.objects.filter(pool=pool).order_by("address_key")
            .values_list("address", "endpoint__namespace", "endpoint__name", "pod_uid"))
    allocated = {address: {"pod": f"{ns}/{name}", "podUid": uid} for address, ns, name, uid in rows}
    return {
        "allocatedIPs": json.dumps(allocated, separators=(",", ":")) if allocated else None,
        "allocatedIPCount": len(allocated),
        "totalIPCount": pool.total_ip_count,
    }


def _application_of(pool: IPPool) -> str:
    """``<group>_<version>_<Kind>_<ns>_<name>`` of an auto-created pool (from its owner-application labels)."""
    labels = pool.labels or {}
    parts = [labels.get(f"ipam.spidernet.io/owner-application-{k}") for k in ("gv", "kind", "namespace", "name")]
    return "_".join(parts) if all(parts) else ""


def subnet_status(subnet: Subnet) -> dict:
    """SpiderSubnet status: ``controlledIPPools`` (JSON string), total and pre-allocated counts (spec §1.3)."""
    total = subnet.total_ranges
    controlled, allocated = {}, 0
    for pool in IPPool.objects.filter(owner_subnet=subnet).order_by("name"):
        inside = pool.total_ranges.intersect(total)
        entry = {"ips": inside.to_strings()}
        application = _application_of(pool)
        if application:
            entry["application"] = application
        controlled[pool.name] = entry
        allocated += inside.count()
    return {
        "controlledIPPools": json.dumps(controlled, separators=(",", ":")) if controlled else None,
        "totalIPCount": total.count(),
        "allocatedIPCount": allocated,
    }


def spiderendpoint_status(endpoint: Endpoint) -> dict:
    """SpiderEndpoint status (spec §1.5): one ``ips`` entry per NIC, both families merged into it."""
    nics: dict[str, dict] = {}
    for a in endpoint.allocations.select_related("pool").order_by("interface", "ip_version"):
        nic = nics.setdefault(a.interface, {"interface": a.interface})
        family = f"ipv{a.ip_version}"
        nic[family] = a.cidr
        nic[f"{family}Pool"] = a.pool.name
        if a.gateway:
            nic[f"{family}Gateway"] = a.gateway
        if a.clean_gateway:
            nic["cleanGateway"] = True
        if a.vlan:
            nic["vlan"] = a.vlan
        if a.mac:
            nic["mac"] = a.mac
        if a.routes:
            nic["routes"] = [*nic.get("routes", []), *a.routes]
    return {
        "current": {"uid": endpoint.uid, "node": endpoint.node, "ips": list(nics.values())},
        "ownerControllerType": endpoint.owner_kind,
        "ownerControllerName": endpoint.owner_name or endpoint.name,
    }


def mirror_status_write(*, client: crd.CrdClient | None = None) -> dict:
    """Write the status of every mirrored pool and subnet, and every SpiderEndpoint, whose value changed since the
    last write; delete SpiderEndpoints whose endpoint row is gone. Returns counts of what was written.

    Change detection without building every status: a pool's fingerprint is its generation plus count, id sum
    and latest ``bound_at`` of its allocations (ids are never reused, a release deletes a row, a StatefulSet
    re-bind moves ``bound_at``), all from one GROUP BY.
    """
    if client is None and not mirror_config().enabled:
        return {"disabled": True}
    client = client or crd_client()
    counts = {"ippools": 0, "subnets": 0, "endpoints": 0, "endpoints_deleted": 0}
    states = {(s.kind, s.name): s for s in MirrorState.objects.filter(kind__in=["SpiderIPPool", "SpiderSubnet"])}
    prints = {r["pool_id"]: r for r in Allocation.objects.order_by().values("pool_id")
              .annotate(n=Count("id"), s=Sum("id"), b=Max("bound_at"))}
    for pool in IPPool.objects.exclude(k8s_uid="").order_by("pk"):
        state = states.get(("SpiderIPPool", pool.name))
        if state is None or state.k8s_uid != pool.k8s_uid:
            continue
        p = prints.get(pool.pk, {})
        digest = _digest(pool.generation, p.get("n"), p.get("s"), p.get("b"))
        if state.status_digest != digest and _status_patch(client, crd.SPIDER_IPPOOL, pool.name, ippool_status(pool)):
            _status_recorded(state, digest)
            counts["ippools"] += 1
    for subnet in Subnet.objects.exclude(k8s_uid="").order_by("pk"):
        state = states.get(("SpiderSubnet", subnet.name))
        if state is None or state.k8s_uid != subnet.k8s_uid:
            continue
        status = subnet_status(subnet)
        digest = _digest(json.dumps(status, sort_keys=True))
        if state.status_digest != digest and _status_patch(client, crd.SPIDER_SUBNET, subnet.name, status):
            _status_recorded(state, digest)
            counts["subnets"] += 1
    counts.update(_endpoints_write(client))
    return counts


def _status_patch(client: crd.CrdClient, kind: crd.CrdKind, name: str, status: dict) -> bool:
    try:
        return client.patch(kind, name, {"status": status}, subresource="status") is not None
    except KubeError as exc:  # refused (schema): log and try again next batch; transient errors propagate
        log.warning("status of %s %s not written: %s", kind.kind, name, exc)
        return False


def _status_recorded(state: MirrorState, digest: str) -> None:
    MirrorState.objects.filter(pk=state.pk).update(status_digest=digest, status_written_at=timezone.now())


def _endpoints_write(client: crd.CrdClient) -> dict:
    counts = {"endpoints": 0, "endpoints_deleted": 0}
    states = {s.name: s for s in MirrorState.objects.filter(kind="SpiderEndpoint")}
    endpoints = (Endpoint.objects.order_by("pk")
                 .annotate(n=Count("allocations"), s=Sum("allocations__id"), b=Max("allocations__bound_at")))
    for endpoint in endpoints:
        key = f"{endpoint.namespace}/{endpoint.name}"
        state = states.pop(key, None)
        digest = _digest(endpoint.uid, endpoint.node, endpoint.owner_kind, endpoint.owner_name, endpoint.n,
                         endpoint.s, endpoint.b)
        if state is not None and state.status_digest == digest:
            continue
        written = _spiderendpoint_put(client, endpoint)
        if written is None:
            continue
        MirrorState.objects.update_or_create(
            kind="SpiderEndpoint", name=key,
            defaults=dict(object_id=endpoint.pk, k8s_uid=crd.uid_of(written),
                          resource_version=crd.resource_version_of(written), status_digest=digest,
                          status_written_at=timezone.now()),
        )
        counts["endpoints"] += 1
    for key, state in states.items():  # endpoint rows that are gone
        namespace, name = key.split("/", 1)
        client.delete(crd.SPIDER_ENDPOINT, name, namespace=namespace, uid=state.k8s_uid or None)
        state.delete()
        counts["endpoints_deleted"] += 1
    return counts


def _spiderendpoint_put(client: crd.CrdClient, endpoint: Endpoint) -> dict | None:
    """Create or replace one SpiderEndpoint; ``None`` when it cannot be written this round (retried next batch)."""
    status = spiderendpoint_status(endpoint)
    existing = client.get(crd.SPIDER_ENDPOINT, endpoint.name, namespace=endpoint.namespace)
    try:
        if existing is None:
            body = {"apiVersion": crd.API_VERSION, "kind": "SpiderEndpoint",
                    "metadata": {"name": endpoint.name, "namespace": endpoint.namespace,
                                 "labels": {"app.kubernetes.io/managed-by": "spiderweb"}},
                    "status": status}
            return client.create(crd.SPIDER_ENDPOINT, body)
        body = {**existing, "status": status}
        return client.replace(crd.SPIDER_ENDPOINT, body)
    except crd.KubeConflict:
        return None
    except KubeError as exc:  # e.g. the namespace does not exist (yet)
        log.info("SpiderEndpoint %s/%s not written: %s", endpoint.namespace, endpoint.name, exc)
        return None


# ------------------------------------------------------------------------------------------------------ leases


def lease_holder_id() -> str:
    """This process, as a lease holder: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def lease_acquire(name: str, *, holder: str, ttl: float) -> bool:
    """Take or renew the lease ``name`` for ``ttl`` seconds; False while someone else holds an unexpired one.

    One conditional UPDATE, so two contenders cannot both win (works on PostgreSQL and on the demo's SQLite).
    """
    now = timezone.now()
    Lease.objects.get_or_create(name=name)
    free = Q(expires_at__lte=now) | Q(holder=holder) | Q(holder="")
    taken = Lease.objects.filter(free, name=name).update(holder=holder, expires_at=now + _dt.timedelta(seconds=ttl))
    return taken == 1


def lease_release(name: str, *, holder: str) -> None:
    """Give the lease up at once (a clean stop), so a standby need not wait for it to expire."""
    Lease.objects.filter(name=name, holder=holder).update(holder="", expires_at=timezone.now())
