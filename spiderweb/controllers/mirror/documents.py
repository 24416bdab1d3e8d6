"""One object, two shapes: the database row and the CRD, both turned into the same canonical merge document.

A document is ``{"spec": {wireName: value}, "labels": {key: value}}``. Canonical means empty values are left out
(``""``, ``[]``, ``{}``, ``null``, ``false``) because the CRD omits what the row stores as empty and the API server
defaults ``default``/``disable`` to false; comparing canonical documents makes "no difference" mean exactly that.
The ``spiderweb.io/tenant`` label is not part of the document: the tenant is chosen once, when the object first
arrives, and is the portal's to change afterwards (the mirror writes it back onto the CRD).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import models

from spiderweb.ipam import services as ipam_services
from spiderweb.ipam.models import Allocation, Coordinator, IPPool, ReservedIP, Subnet
from spiderweb.ipam.validation import COORDINATOR_WIRE
from spiderweb.k8s import crd
from spiderweb.tenancy.models import Tenant
from spiderweb.tenancy.selectors import tenant_get_default

TENANT_LABEL = "spiderweb.io/tenant"

_RANGE_FIELDS = (("ipVersion", "ip_version"), ("subnet", "subnet"), ("ips", "ips"), ("excludeIPs", "exclude_ips"),
                 ("gateway", "gateway"), ("routes", "routes"))
POOL_FIELDS = (*_RANGE_FIELDS, ("podAffinity", "pod_affinity"), ("namespaceAffinity", "namespace_affinity"),
               ("namespaceName", "namespace_name"), ("nodeAffinity", "node_affinity"), ("nodeName", "node_name"),
               ("multusName", "multus_name"), ("default", "default"), ("disable", "disable"))
RESERVED_FIELDS = (("ipVersion", "ip_version"), ("ips", "ips"))
COORDINATOR_FIELDS = tuple((wire, field) for field, wire in COORDINATOR_WIRE.items())

# The value a model field takes when the CRD leaves the field out (so an update clears it).
_EMPTY = {"ips": [], "exclude_ips": [], "gateway": "", "routes": [], "pod_affinity": None,
          "namespace_affinity": None, "namespace_name": [], "node_affinity": None, "node_name": [], "multus_name": [],
          "default": False, "disable": False, "ip_version": None, "subnet": "",
          # SpiderCoordinator: a field left out is the webhook's default (None), except what canonical() drops
          "tune_pod_routes": False, "hijack_cidr": [], "policy_routes": [], "pod_mac_prefix": "",
          "pod_default_route_nic": "", "veth_link_address": ""}


@dataclass(frozen=True)
class MirrorKind:
    """How one mirrored kind maps onto its model and its IPAM services."""

    crd: crd.CrdKind
    model: type[models.Model]
    fields: tuple[tuple[str, str], ...]
    create: Callable[..., models.Model]
    update: Callable[[models.Model, dict, dict], models.Model]
    delete: Callable[[models.Model], None]
    in_use: Callable[[models.Model], int]
    finalizer_waits_for_use: bool = True

    @property
    def kind(self) -> str:
        return self.crd.kind


MIRROR_KINDS: dict[str, MirrorKind] = {
    mk.kind: mk
    for mk in (
        MirrorKind(
            crd=crd.SPIDER_IPPOOL, model=IPPool, fields=POOL_FIELDS, create=ipam_services.ippool_create,
            update=lambda row, spec, labels: ipam_services.ippool_update(pool=row, spec=spec, labels=labels),
            delete=lambda row: ipam_services.ippool_delete(pool=row),
            in_use=lambda row: Allocation.objects.filter(pool=row).count(),
        ),
        MirrorKind(
            crd=crd.SPIDER_SUBNET, model=Subnet, fields=_RANGE_FIELDS, create=ipam_services.subnet_create,
            update=lambda row, spec, labels: ipam_services.subnet_update(subnet=row, spec=spec, labels=labels),
            delete=lambda row: ipam_services.subnet_delete(subnet=row),
            in_use=lambda row: IPPool.objects.filter(owner_subnet=row).count(),
            finalizer_waits_for_use=False,
        ),
        MirrorKind(
            crd=crd.SPIDER_RESERVEDIP, model=ReservedIP, fields=RESERVED_FIELDS,
            create=ipam_services.reservedip_create,
            update=lambda row, spec, labels: ipam_services.reservedip_update(reserved=row, spec=spec, labels=labels),
            delete=lambda row: ipam_services.reservedip_delete(reserved=row),
            in_use=lambda row: 0,
        ),
        # The CRD is the source of truth; the row is its mirror (admin edits are pushed back). Its status is the
        # coordinator controller's (controllers/coordinator), not part of the merged document.
        MirrorKind(
            crd=crd.SPIDER_COORDINATOR, model=Coordinator, fields=COORDINATOR_FIELDS,
            create=ipam_services.coordinator_create,
            update=lambda row, spec, labels: ipam_services.coordinator_update(coordinator=row, spec=spec,
                                                                              labels=labels),
            delete=lambda row: ipam_services.coordinator_delete(coordinator=row),
            in_use=lambda row: 0,
        ),
    )
}


def mirror_kind(kind: str) -> MirrorKind:
    """The adapter of a mirrored kind; ``ValueError`` naming the mirrored kinds otherwise."""
    try:
        return MIRROR_KINDS[kind]
    except KeyError:
        raise ValueError(f"{kind!r} is not mirrored (choose from {', '.join(MIRROR_KINDS)})") from None


def canonical(value: Any) -> Any:
    """``None`` for an empty value, else the value (the document leaves ``None`` entries out).

    >>> [canonical(v) for v in ("", [], {}, None, False, 0, "x", [1])]
    [None, None, None, None, None, 0, 'x', [1]]
    """
    if value is None or value is False or value == "" or value == [] or value == {}:
        return None
    return value


def _section(pairs) -> dict:
    return {k: v for k, v in ((k, canonical(v)) for k, v in pairs) if v is not None}


def doc_from_row(mk: MirrorKind, row) -> dict:
    """The row as a merge document."""
    return {
        "spec": _section((wire, getattr(row, field)) for wire, field in mk.fields),
        "labels": _section((k, v) for k, v in (row.labels or {}).items() if k != TENANT_LABEL),
    }


def doc_from_crd(mk: MirrorKind, obj: dict | None) -> dict:
    """The CRD as a merge document (spec fields Spiderweb does not model are not part of it)."""
    spec = (obj or {}).get("spec") or {}
    labels = crd.meta(obj).get("labels") or {}
    return {
        "spec": _section((wire, spec.get(wire)) for wire, _ in mk.fields),
        "labels": _section((k, v) for k, v in labels.items() if k != TENANT_LABEL),
    }


def model_spec(mk: MirrorKind, doc_spec: dict) -> dict:
    """A document's spec as the keyword dict the IPAM services take; absent fields become their empty value."""
    return {field: copy.deepcopy(doc_spec.get(wire, _EMPTY.get(field))) for wire, field in mk.fields}


def model_spec_for_create(mk: MirrorKind, obj: dict) -> dict:
    """The CRD's spec for a create: fields the CRD leaves out stay out, so the services apply their defaults
    (a pool without ``routes`` inherits its subnet's; an explicit ``routes: []`` does not)."""
    spec = (obj or {}).get("spec") or {}
    return {field: copy.deepcopy(spec[wire]) for wire, field in mk.fields if wire in spec and spec[wire] is not None}


def tenant_for(obj: dict) -> Tenant:
    """The ``spiderweb.io/tenant`` label's tenant when it exists, else ``SPIDERWEB_DEFAULT_TENANT``."""
    name = (crd.meta(obj).get("labels") or {}).get(TENANT_LABEL)
    tenant = Tenant.objects.filter(name=name).first() if name else None
    return tenant or tenant_get_default()


def crd_body(mk: MirrorKind, row, doc: dict, *, existing: dict | None = None) -> dict:
    """The object to POST (no ``existing``) or PUT (based on ``existing``, keeping what Spiderweb does not model:
    other spec fields, annotations, owner references, finalizers, the resourceVersion precondition)."""
    labels = {**doc.get("labels", {}), TENANT_LABEL: row.tenant.name}
    annotations = dict(getattr(row, "annotations", None) or {})  # an auto pool's ippool-ip-number (spec §4.5)
    owner = _subnet_owner_reference(row)
    if existing is None:
        metadata = {"name": row.name, "labels": labels, "finalizers": [crd.FINALIZER]}
        if annotations:
            metadata["annotations"] = annotations
        if owner:
            metadata["ownerReferences"] = [owner]
        return {"apiVersion": crd.API_VERSION, "kind": mk.kind, "metadata": metadata,
                "spec": copy.deepcopy(doc.get("spec", {}))}
    body = copy.deepcopy(existing)
    body.pop("status", None)
    body["metadata"]["labels"] = labels
    if annotations:
        body["metadata"]["annotations"] = {**(body["metadata"].get("annotations") or {}), **annotations}
    refs = list(body["metadata"].get("ownerReferences") or [])
    if owner and not any(r.get("controller") for r in refs):
        body["metadata"]["ownerReferences"] = [*refs, owner]
    spec = {k: v for k, v in (body.get("spec") or {}).items() if k not in dict(mk.fields)}
    spec.update(copy.deepcopy(doc.get("spec", {})))
    body["spec"] = spec
    return body


def _subnet_owner_reference(row) -> dict | None:
    """A pool cut from a SpiderSubnet is controlled by it (spec §1.2, §4.5): Kubernetes deletes the pool with it."""
    subnet = getattr(row, "owner_subnet", None)
    if subnet is None or not subnet.k8s_uid:
        return None
    return {"apiVersion": crd.API_VERSION, "kind": "SpiderSubnet", "name": subnet.name, "uid": subnet.k8s_uid,
            "controller": True, "blockOwnerDeletion": True}
