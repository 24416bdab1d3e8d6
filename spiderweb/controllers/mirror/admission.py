"""Admission: a CREATE/UPDATE/DELETE of a pool, subnet or reservation applied with kubectl is written to the
database inside the webhook, with the REST API's rules and under the spec lock (two overlapping pools admitted at
the same moment cannot both pass).
"""

from __future__ import annotations

import logging

from django.db import transaction

from spiderweb.changelog.context import acting_as
from spiderweb.changelog.services import object_snapshot
from spiderweb.controllers.mirror.documents import (
    doc_from_crd,
    doc_from_row,
    mirror_kind,
    model_spec,
    model_spec_for_create,
    tenant_for,
)
from spiderweb.controllers.mirror.merge import three_way_merge
from spiderweb.controllers.mirror.models import MirrorState
from spiderweb.controllers.mirror.records import conflict_text, conflicts_record, kubernetes_actor, terminating_set
from spiderweb.controllers.mirror.signals import from_kubernetes
from spiderweb.engine import keys
from spiderweb.engine.errors import Conflict, PoolInUse
from spiderweb.engine.ranges import RangeSet
from spiderweb.ipam.models import ClusterSettings, IPPool, Subnet
from spiderweb.ipam.validation import SpecInvalid
from spiderweb.k8s import crd
from spiderweb.k8s.admission import AdmissionRequest

log = logging.getLogger(__name__)


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
        # Spec §1.2/§1.3: while the finalizer is on, no update of a dying object at all (labels included); the update
        # that removes the finalizer goes through.
        if crd.FINALIZER in (crd.meta(obj).get("finalizers") or []):
            raise SpecInvalid({"name": [f"cannot update a terminating {kind}"]})
        return []
    warnings: list[str] = []
    uid = crd.uid_of(obj)
    with acting_as(kubernetes_actor(request.username)), from_kubernetes(), transaction.atomic():
        row = mk.model.objects.select_related("tenant").filter(name=request.name).first()
        k8s_doc = doc_from_crd(mk, obj)
        if mk.model is IPPool:
            auto_pool_admission(obj, row)
        if row is None:
            row = mk.create(tenant=tenant_for(obj), name=request.name, spec=model_spec_for_create(mk, obj),
                            labels=k8s_doc["labels"])
        else:
            if row.terminating:
                raise Conflict(f"{kind} {request.name} is still being deleted in Spiderweb "
                               f"({mk.in_use(row)} in use); create it again once it is gone")
            if request.operation == "CREATE":
                create_of_existing_row_check(mk, kind, row, k8s_doc)
            state = MirrorState.objects.filter(kind=kind, name=request.name).first()
            base = state.synced_spec if state is not None and uid and state.k8s_uid == uid else None
            portal_doc = doc_from_row(mk, row)
            result = three_way_merge(base, portal_doc, k8s_doc)
            if result.differs_from(portal_doc):
                before = object_snapshot(row)
                row = mk.update(row, model_spec(mk, result.merged["spec"]), result.merged["labels"])
                if result.conflicts:
                    conflicts_record(mk, row, obj, result.conflicts, before)
                    warnings.append(conflict_text(result.conflicts))
        if uid and row.k8s_uid != uid:
            mk.model.objects.filter(pk=row.pk).update(k8s_uid=uid)
        if request.dry_run:
            transaction.set_rollback(True)
    return warnings


def create_of_existing_row_check(mk, kind: str, row, k8s_doc: dict) -> None:
    """A CREATE naming a row that already exists is refused, unless it is the mirror pushing that row.

    The API server refuses a CREATE of a name it already has (after the webhooks), so admitting it would rewrite
    the row for an object that never comes to exist. The one legitimate case: a row made in the portal that has no
    CRD yet (no ``k8s_uid``) is created in Kubernetes by the mirror, with the row's own spec. The mutating webhook
    may still add defaults to that body (a gateway inherited from the subnet, say), so the address space decides
    (``ipVersion``, ``subnet``, ``ips``, ``excludeIPs``): a ``kubectl create`` of other addresses under that name is
    refused, as it would silently replace the portal's.
    """
    if row.k8s_uid:
        raise Conflict(f"{kind} {row.name} already exists")
    identity = ("ipVersion", "subnet", "ips", "excludeIPs")
    wanted, held = k8s_doc["spec"], doc_from_row(mk, row)["spec"]
    if any((wanted.get(key) or None) != (held.get(key) or None) for key in identity):
        raise Conflict(f"{kind} {row.name} already exists in Spiderweb with another spec (not yet in Kubernetes); "
                       f"apply that spec, or choose another name")


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
    with acting_as(kubernetes_actor(request.username)), from_kubernetes():
        terminating_set(mk, row, True)



def auto_pool_admission(obj: dict, row: IPPool | None) -> None:
    """Spec §1.2 rules for pools a SpiderSubnet controls: the controller owner must exist; an auto pool's
    podAffinity may name only the five ``ipam.spidernet.io/app-*`` keys; its ``ips`` belong to the application
    controller (the mirror's own writes carry the row's addresses, so they pass)."""
    m = crd.meta(obj)
    owner = next((ref for ref in m.get("ownerReferences") or []
                  if ref.get("controller") and ref.get("kind") == "SpiderSubnet"), None)
    if owner is not None and not Subnet.objects.filter(name=owner.get("name")).exists():
        raise SpecInvalid({"ownerReferences": [f"the controller owner SpiderSubnet {owner.get('name')} does not "
                                               f"exist"]})
    auto = bool((m.get("labels") or {}).get(keys.LABEL_OWNER_APP_UID)) or (row is not None and row.auto_app_uid)
    if not auto:
        return
    spec = obj.get("spec") or {}
    affinity = spec.get("podAffinity") or {}
    extra = sorted(set(affinity.get("matchLabels") or {}) - set(keys.AUTO_POOL_LABELS))
    if extra or affinity.get("matchExpressions"):
        raise SpecInvalid({"podAffinity": [f"an auto-created IPPool's podAffinity may only use "
                                           f"{', '.join(keys.AUTO_POOL_LABELS)} in matchLabels"
                                           + (f", not {', '.join(extra)}" if extra else "")]})
    if row is not None and row.auto_app_uid:
        wanted = RangeSet.parse(spec.get("ips") or [], row.ip_version)
        if wanted != RangeSet.parse(row.ips or [], row.ip_version):
            raise SpecInvalid({"ips": [f"the addresses of auto-created IPPool {row.name} are managed by the "
                                       f"application controller; change ipam.spidernet.io/ippool-ip-number on the "
                                       f"application instead"]})
