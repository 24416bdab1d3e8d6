"""Reconciliation of the mirror between the IPAM tables and the Spiderpool CRDs (watch events, portal edits, resync).

Level-based: every entry point reads both copies of an object (row and CRD) plus the last document both agreed on
(``MirrorState.synced_spec``), merges three ways (``merge.py``) and writes whichever side differs.
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
import logging

from django.db import transaction
from django.utils import timezone

from spiderweb.changelog.context import Actor, acting_as
from spiderweb.changelog.services import object_snapshot
from spiderweb.controllers.config import kube_client
from spiderweb.controllers.mirror.config import mirror_config
from spiderweb.controllers.mirror.documents import (
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
from spiderweb.controllers.mirror.merge import three_way_merge
from spiderweb.controllers.mirror.models import MirrorState
from spiderweb.controllers.mirror.records import REFUSED_REASON, conflicts_record, event_record, terminating_set
from spiderweb.controllers.mirror.signals import from_kubernetes
from spiderweb.engine.errors import IPAMError, PoolInUse, Unavailable
from spiderweb.k8s import crd
from spiderweb.k8s.client import KubeClient, KubeConflict

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 4
# A row the webhook wrote whose CRD is not visible yet: the API server may still be storing it.
ADMISSION_GRACE = _dt.timedelta(seconds=60)
MIRROR_ACTOR = Actor(name="kubernetes-mirror")


class MirrorRetry(Unavailable):
    """The CRD kept changing between read and write; the task retries later with backoff."""


# ---------------------------------------------------------------------------------------------- reconciliation


def mirror_in(*, kind: str, name: str, client: KubeClient | None = None) -> str:
    """Bring the database in line with the CRD ``name`` (and the CRD with the database where the portal edited)."""
    return mirror_reconcile(kind=kind, name=name, client=client)


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


def mirror_out(*, kind: str, pk: int, client: KubeClient | None = None) -> str:
    """Bring the CRD in line with the row ``pk``; a deleted row is found by id in its ``MirrorState``."""
    mk = mirror_kind(kind)
    row = mk.model.objects.filter(pk=pk).only("name").first()
    if row is not None:
        return mirror_reconcile(kind=kind, name=row.name, client=client)
    state = MirrorState.objects.filter(kind=kind, object_id=pk).first()
    if state is None:
        return "absent"
    return mirror_reconcile(kind=kind, name=state.name, client=client)


def mirror_reconcile(*, kind: str, name: str, client: KubeClient | None = None) -> str:
    """Reconcile one object; returns what was done. Raises ``MirrorRetry``/``KubeUnavailable`` to be retried."""
    mk = mirror_kind(kind)
    if transaction.get_connection().in_atomic_block:
        # Our CRD writes call our own webhook, which takes the spec lock: a transaction held here would deadlock it.
        raise RuntimeError("mirror_reconcile must not run inside a database transaction")
    client = client or kube_client()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with acting_as(MIRROR_ACTOR):
                return _reconcile_once(mk, name, client)
        except KubeConflict as exc:
            log.info("%s %s changed while reconciling (attempt %d): %s", kind, name, attempt, exc)
    raise MirrorRetry(f"{kind} {name} kept changing during {MAX_ATTEMPTS} reconcile attempts")


def _reconcile_once(mk: MirrorKind, name: str, client: KubeClient) -> str:
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
        terminating_set(mk, row, False)
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
            event_record(client, obj, REFUSED_REASON, f"Spiderweb cannot take this {mk.kind}: {exc.message}")
            log.warning("%s %s: Kubernetes value refused: %s", mk.kind, name, exc.message)
            return "refused"
        if result.conflicts:
            conflicts_record(mk, row, obj, result.conflicts, before, client=client)
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


def _adopt(mk: MirrorKind, obj: dict, client: KubeClient):
    """A CRD the database has never seen (created while the webhooks were off): take it in, or say why not."""
    try:
        with from_kubernetes():
            return mk.create(tenant=tenant_for(obj), name=crd.meta(obj)["name"], spec=model_spec_for_create(mk, obj),
                             labels=doc_from_crd(mk, obj)["labels"])
    except IPAMError as exc:
        event_record(client, obj, REFUSED_REASON, f"Spiderweb cannot take this {mk.kind}: {exc.message}")
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
        terminating_set(mk, row, True)
    return f"terminating ({in_use} in use)"


def _k8s_terminating(mk: MirrorKind, obj: dict, row, client: KubeClient) -> str:
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


def _portal_deleted(mk: MirrorKind, obj: dict, client: KubeClient) -> str:
    """The row was deleted in the portal after both sides agreed: delete the CRD (this incarnation only)."""
    client.delete(mk.crd, crd.meta(obj)["name"], uid=crd.uid_of(obj))
    fresh = client.get(mk.crd, crd.meta(obj)["name"])
    if fresh is not None and crd.uid_of(fresh) == crd.uid_of(obj):
        client.finalizer_remove(mk.crd, fresh)
    _state_drop(mk, crd.meta(obj)["name"])
    return "deleted-in-kubernetes"



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

