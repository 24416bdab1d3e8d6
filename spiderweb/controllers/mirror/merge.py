"""Three-way merge of one object's portal copy and Kubernetes copy against the last version both agreed on.

A *document* is ``{"spec": {field: value}, "labels": {key: value}}`` in canonical form (see
``spiderweb.controllers.mirror.documents``): one entry per spec field and per label, each compared as a whole
value (a list of ranges is one value). For every entry:

* both sides equal → that value;
* only one side changed it since the base → that side's value (an edit is never dropped);
* both changed it, differently → Kubernetes wins and the portal's value is reported as a :class:`FieldConflict`,
  so the caller can record it (change log + Warning Event) instead of losing it silently;
* no base at all (the two copies were never in sync) → every difference is such a conflict.

Pure: no Django, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ABSENT: Any = None  # a missing entry; canonical documents never hold None values, so None can mark absence


@dataclass(frozen=True)
class FieldConflict:
    """One entry both sides changed differently; ``portal`` is the value that lost."""

    path: str
    base: Any
    portal: Any
    kubernetes: Any


@dataclass(frozen=True)
class MergeResult:
    merged: dict
    conflicts: tuple[FieldConflict, ...]

    def differs_from(self, doc: dict) -> bool:
        return _flatten(self.merged) != _flatten(doc)


def _flatten(doc: dict | None) -> dict[tuple[str, str], Any]:
    flat: dict[tuple[str, str], Any] = {}
    for section, fields in (doc or {}).items():
        for key, value in (fields or {}).items():
            if value is not None:
                flat[(section, key)] = value
    return flat


def _unflatten(flat: dict[tuple[str, str], Any], sections) -> dict:
    doc: dict[str, dict] = {section: {} for section in sections}
    for (section, key), value in sorted(flat.items()):
        doc.setdefault(section, {})[key] = value
    return doc


def three_way_merge(base: dict | None, portal: dict, kubernetes: dict) -> MergeResult:
    """Merge ``portal`` and ``kubernetes`` against ``base`` (``None`` when they never agreed).

    >>> base = {"spec": {"ips": ["10.0.0.1-10.0.0.9"], "default": True}, "labels": {}}
    >>> portal = {"spec": {"ips": ["10.0.0.1-10.0.0.9"], "default": True, "nodeName": ["n1"]}, "labels": {}}
    >>> k8s = {"spec": {"ips": ["10.0.0.1-10.0.0.20"], "default": True}, "labels": {"team": "a"}}
    >>> r = three_way_merge(base, portal, k8s)
    >>> r.merged, r.conflicts
    ({'spec': {'default': True, 'ips': ['10.0.0.1-10.0.0.20'], 'nodeName': ['n1']}, 'labels': {'team': 'a'}}, ())
    >>> r = three_way_merge(base, {"spec": {"ips": ["10.0.0.1-10.0.0.5"]}}, k8s)
    >>> r.merged["spec"], [c.path for c in r.conflicts]
    ({'ips': ['10.0.0.1-10.0.0.20']}, ['spec.ips'])
    """
    flat_base = _flatten(base) if base is not None else None
    flat_portal, flat_k8s = _flatten(portal), _flatten(kubernetes)
    merged: dict[tuple[str, str], Any] = {}
    conflicts: list[FieldConflict] = []
    for key in sorted(set(flat_portal) | set(flat_k8s) | set(flat_base or {})):
        ours, theirs = flat_portal.get(key, ABSENT), flat_k8s.get(key, ABSENT)
        if ours == theirs:
            value = ours
        elif flat_base is not None and ours == flat_base.get(key, ABSENT):
            value = theirs  # only Kubernetes changed it
        elif flat_base is not None and theirs == flat_base.get(key, ABSENT):
            value = ours  # only the portal changed it
        else:
            value = theirs  # both changed it (or there is no base): Kubernetes wins, the portal's value is reported
            conflicts.append(FieldConflict(path=".".join(key), base=(flat_base or {}).get(key, ABSENT),
                                           portal=ours, kubernetes=theirs))
        if value is not ABSENT:
            merged[key] = value
    sections = list(dict.fromkeys([*(kubernetes or {}), *(portal or {})]))
    return MergeResult(merged=_unflatten(merged, sections), conflicts=tuple(conflicts))
