"""Admission webhooks, the pure part: AdmissionReview v1 in and out, JSONPatch, and Spiderpool's mutating defaults.

The Django views (``controllers/mirror/webhooks.py``) read the database (owning subnet, cluster switches) and
write it; everything that only looks at the object lives here so it is testable with plain dicts, and so the
defaults applied to a CRD are the same code whatever serves them. Never imports Django.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spiderweb.engine.errors import InvalidInput
from spiderweb.engine.keys import LABEL_IPPOOL_CIDR, LABEL_OWNER_SUBNET, LABEL_SUBNET_CIDR
from spiderweb.engine.ranges import RangeSet, cidr_label
from spiderweb.k8s.crd import API_VERSION, FINALIZER, is_terminating, meta

ADMISSION_API_VERSION = "admission.k8s.io/v1"
CIDR_LABEL, SUBNET_CIDR_LABEL, OWNER_SUBNET_LABEL = LABEL_IPPOOL_CIDR, LABEL_SUBNET_CIDR, LABEL_OWNER_SUBNET

CREATE, UPDATE, DELETE, CONNECT = "CREATE", "UPDATE", "DELETE", "CONNECT"

_REASONS = {400: "BadRequest", 403: "Forbidden", 409: "Conflict", 422: "Invalid", 500: "InternalError"}


# ------------------------------------------------------------------------------------------------ AdmissionReview


@dataclass(frozen=True)
class AdmissionRequest:
    """The parts of an AdmissionReview v1 ``request`` a webhook acts on."""

    uid: str
    kind: str
    operation: str
    name: str
    namespace: str
    object: dict | None
    old_object: dict | None
    dry_run: bool
    username: str

    @classmethod
    def parse(cls, body: bytes | str | Mapping) -> AdmissionRequest:
        """Parse an AdmissionReview; :class:`InvalidInput` names what is wrong (the API server never sends that).

        >>> r = AdmissionRequest.parse({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        ...     "request": {"uid": "u1", "kind": {"kind": "SpiderIPPool"}, "operation": "CREATE",
        ...                 "object": {"metadata": {"name": "p1"}}, "userInfo": {"username": "admin"}}})
        >>> (r.uid, r.kind, r.operation, r.name, r.dry_run, r.username)
        ('u1', 'SpiderIPPool', 'CREATE', 'p1', False, 'admin')
        """
        if isinstance(body, (bytes, str)):
            try:
                body = json.loads(body)
            except ValueError as exc:
                raise InvalidInput(f"the AdmissionReview is not JSON: {exc}") from exc
        if not isinstance(body, Mapping) or body.get("kind") != "AdmissionReview":
            raise InvalidInput("expected an AdmissionReview object")
        if body.get("apiVersion") != ADMISSION_API_VERSION:
            raise InvalidInput(f"only {ADMISSION_API_VERSION} AdmissionReviews are served, "
                               f"got {body.get('apiVersion')}")
        request = body.get("request")
        if not isinstance(request, Mapping) or not request.get("uid"):
            raise InvalidInput("the AdmissionReview has no request.uid")
        obj = request.get("object") if isinstance(request.get("object"), Mapping) else None
        old = request.get("oldObject") if isinstance(request.get("oldObject"), Mapping) else None
        name = request.get("name") or meta(obj).get("name") or meta(old).get("name") or ""
        return cls(
            uid=str(request["uid"]),
            kind=str((request.get("kind") or {}).get("kind") or ""),
            operation=str(request.get("operation") or ""),
            name=str(name),
            namespace=str(request.get("namespace") or ""),
            object=dict(obj) if obj is not None else None,
            old_object=dict(old) if old is not None else None,
            dry_run=bool(request.get("dryRun")),
            username=str((request.get("userInfo") or {}).get("username") or ""),
        )


def review_allowed(uid: str, *, patch: list[dict] | None = None, warnings: list[str] | None = None) -> dict:
    """An allowing AdmissionReview response, with a JSONPatch when ``patch`` is non-empty.

    >>> review_allowed("u1", patch=[{"op": "add", "path": "/spec/ipVersion", "value": 4}])["response"]["patchType"]
    'JSONPatch'
    """
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    if warnings:
        response["warnings"] = list(warnings)
    return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}


def review_denied(uid: str, message: str, *, code: int = 403) -> dict:
    """A denying response; the API server shows ``message`` to the user, after "denied the request"."""
    status = {"code": code, "message": message, "reason": _REASONS.get(code, "Forbidden"), "status": "Failure"}
    return {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": False, "status": status}}


# ------------------------------------------------------------------------------------------------------ JSONPatch


def _pointer(parts: list[str]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def json_patch(before: Mapping, after: Mapping) -> list[dict]:
    """RFC 6902 operations turning ``before`` into ``after``: objects are diffed key by key, lists replaced whole.

    >>> json_patch({"metadata": {"name": "p"}, "spec": {"ips": ["10.0.0.1"]}},
    ...            {"metadata": {"name": "p", "labels": {"a/b": "x"}}, "spec": {"ips": ["10.0.0.1-10.0.0.2"]}})
    [{'op': 'add', 'path': '/metadata/labels', 'value': {'a/b': 'x'}}, \
{'op': 'replace', 'path': '/spec/ips', 'value': ['10.0.0.1-10.0.0.2']}]
    >>> json_patch({"metadata": {"labels": {"a/b": "x"}}}, {"metadata": {"labels": {"a/b": "y"}}})
    [{'op': 'replace', 'path': '/metadata/labels/a~1b', 'value': 'y'}]
    """
    ops: list[dict] = []
    _diff(before, after, [], ops)
    return ops


def _diff(before: Mapping, after: Mapping, path: list[str], ops: list[dict]) -> None:
    for key in before:
        if key not in after:
            ops.append({"op": "remove", "path": _pointer([*path, key])})
    for key, value in after.items():
        if key not in before:
            ops.append({"op": "add", "path": _pointer([*path, key]), "value": value})
        elif isinstance(value, Mapping) and isinstance(before[key], Mapping):
            _diff(before[key], value, [*path, key], ops)
        elif before[key] != value or type(before[key]) is not type(value):
            ops.append({"op": "replace", "path": _pointer([*path, key]), "value": value})


# ------------------------------------------------------------------------------------------ IPAM mutating defaults


@dataclass(frozen=True)
class OwnerSubnet:
    """The SpiderSubnet a pool inherits from (same CIDR), as the mutating webhook needs it."""

    name: str
    uid: str
    gateway: str
    routes: list


def family_of(subnet: Any) -> int | None:
    """IP family of a CIDR string, leniently (host bits allowed: the validator reports non-canonical forms).

    >>> family_of("10.6.0.0/16"), family_of("fd00::/64"), family_of("junk")
    (4, 6, None)
    """
    try:
        return ipaddress.ip_network(str(subnet), strict=False).version
    except ValueError:
        return None


def merged_ranges(items: Any, version: int | None) -> list[str] | None:
    """Canonical, merged range strings, or ``None`` when they do not parse (the validator then says why).

    >>> merged_ranges(["10.0.0.5", "10.0.0.1-10.0.0.4", "10.0.0.4"], 4)
    ['10.0.0.1-10.0.0.5']
    """
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        return None
    try:
        return RangeSet.parse(items, version).to_strings() if items else []
    except (InvalidInput, ValueError):
        return None


def _label_of(subnet: Any) -> str | None:
    try:
        return cidr_label(str(subnet))
    except (InvalidInput, ValueError):
        return None


def _with_finalizer(m: dict) -> None:
    finalizers = list(m.get("finalizers") or [])
    if FINALIZER not in finalizers:
        m["finalizers"] = [*finalizers, FINALIZER]


def _range_spec_defaults(obj: dict, label_key: str) -> tuple[dict, dict, int | None]:
    """Finalizer, ipVersion from subnet, CIDR label and merged ips/excludeIPs (shared by pools and subnets)."""
    m = obj.setdefault("metadata", {})
    spec = obj.setdefault("spec", {})
    _with_finalizer(m)
    version = spec.get("ipVersion") or family_of(spec.get("subnet"))
    if version:
        spec["ipVersion"] = version
    label = _label_of(spec.get("subnet"))
    if label:
        m["labels"] = {**(m.get("labels") or {}), label_key: label}
    for key in ("ips", "excludeIPs"):
        if key in spec and spec[key] is not None:
            merged = merged_ranges(spec[key], version if version in (4, 6) else None)
            if merged is not None:
                spec[key] = merged
    return m, spec, version


def ippool_mutate(obj: Mapping, *, owner: OwnerSubnet | None = None) -> dict:
    """Spiderpool's SpiderIPPool mutating webhook (spec §1.2), on a copy; terminating objects are left alone.

    Finalizer, ``ipVersion`` from ``subnet``, the ``ipam.spidernet.io/ippool-cidr`` label, merged ranges, and, when
    ``owner`` is given (a SpiderSubnet of the same CIDR while the subnet feature is on): controller ownerReference
    (when the pool has no controller yet and the subnet's UID is known), owner label, ``gateway`` when unset and
    ``routes`` when absent (an explicit empty list means "do not inherit").

    >>> out = ippool_mutate({"metadata": {"name": "p"}, "spec": {"subnet": "10.6.0.0/16",
    ...     "ips": ["10.6.0.3", "10.6.0.1-10.6.0.2"]}}, owner=OwnerSubnet("s1", "uid-1", "10.6.0.254", []))
    >>> out["spec"], out["metadata"]["finalizers"], out["metadata"]["labels"]["ipam.spidernet.io/ippool-cidr"]
    ({'subnet': '10.6.0.0/16', 'ips': ['10.6.0.1-10.6.0.3'], 'ipVersion': 4, 'gateway': '10.6.0.254'}, \
['spiderpool.spidernet.io'], '10-6-0-0-16')
    >>> out["metadata"]["ownerReferences"][0]["kind"], out["metadata"]["labels"][OWNER_SUBNET_LABEL]
    ('SpiderSubnet', 's1')
    """
    out = copy.deepcopy(dict(obj))
    if is_terminating(out):
        return out
    m, spec, _ = _range_spec_defaults(out, CIDR_LABEL)
    if owner is not None:
        refs = list(m.get("ownerReferences") or [])
        if owner.uid and not any(r.get("controller") for r in refs):
            refs.append({"apiVersion": API_VERSION, "kind": "SpiderSubnet", "name": owner.name, "uid": owner.uid,
                         "controller": True, "blockOwnerDeletion": True})
            m["ownerReferences"] = refs
        m["labels"] = {**(m.get("labels") or {}), OWNER_SUBNET_LABEL: owner.name}
        if not spec.get("gateway") and owner.gateway:
            spec["gateway"] = owner.gateway
        if spec.get("routes") is None and owner.routes:
            spec["routes"] = copy.deepcopy(owner.routes)
    return out


def subnet_mutate(obj: Mapping) -> dict:
    """SpiderSubnet mutating webhook (spec §1.3): finalizer, ``ipVersion``, ``subnet-cidr`` label, merged ranges.

    >>> out = subnet_mutate({"metadata": {"name": "s"}, "spec": {"subnet": "fd00::/64", "ips": ["fd00::1"]}})
    >>> out["spec"]["ipVersion"], out["metadata"]["labels"]
    (6, {'ipam.spidernet.io/subnet-cidr': 'fd00---64'})
    """
    out = copy.deepcopy(dict(obj))
    if is_terminating(out):
        return out
    _range_spec_defaults(out, SUBNET_CIDR_LABEL)
    return out


def reservedip_mutate(obj: Mapping) -> dict:
    """SpiderReservedIP mutating webhook (spec §1.4): refuse empty ``ips``; ``ipVersion`` from the first; merge.

    >>> reservedip_mutate({"metadata": {}, "spec": {"ips": ["10.0.0.9", "10.0.0.8"]}})["spec"]
    {'ips': ['10.0.0.8-10.0.0.9'], 'ipVersion': 4}
    >>> reservedip_mutate({"metadata": {}, "spec": {}})
    Traceback (most recent call last):
    ...
    spiderweb.engine.errors.InvalidInput: spec.ips: a SpiderReservedIP needs at least one IP range
    """
    out = copy.deepcopy(dict(obj))
    if is_terminating(out):
        return out
    spec = out.setdefault("spec", {})
    ips = spec.get("ips")
    if not ips:
        raise InvalidInput("spec.ips: a SpiderReservedIP needs at least one IP range")
    version = spec.get("ipVersion")
    if not version and isinstance(ips, list) and isinstance(ips[0], str):
        try:
            version = ipaddress.ip_address(ips[0].split("-", 1)[0]).version
        except ValueError:
            version = None
    if version:
        spec["ipVersion"] = version
    merged = merged_ranges(ips, version if version in (4, 6) else None)
    if merged is not None:
        spec["ips"] = merged
    return out
