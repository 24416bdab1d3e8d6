"""What the allocator needs to know about a pod, gathered by the agent (or the Kubernetes code).

The facts cross a process boundary (agent → portal) as JSON, so they validate themselves on construction: a wrongly
typed field fails here, with its name, instead of deep inside pool selection.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from spiderweb.engine.errors import InvalidInput


def _check_str(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, got {type(value).__name__} {value!r}")


def _check_str_map(value: object, name: str) -> None:
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} must be an object mapping strings to strings, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str):
            raise InvalidInput(f"{name} must map strings to strings; key {key!r} is a {type(key).__name__}")
        if not isinstance(item, str):
            raise InvalidInput(f"{name}[{key!r}] must be a string, got {type(item).__name__} {item!r}")


@dataclass(frozen=True)
class TopController:
    """The pod's top controller (Deployment, StatefulSet, ...; ``kind="Pod"`` for orphans).

    ``api_version`` is the Kubernetes apiVersion (``apps/v1``, ``batch/v1``, ``v1``), from which :attr:`group`
    and :attr:`version` are split for matching auto-pool podAffinity labels.

    >>> owner = TopController(kind="Deployment", name="web", uid="u1", api_version="apps/v1")
    >>> owner.group, owner.version
    ('apps', 'v1')
    >>> TopController(kind="Pod", name="p", uid="u2", api_version="v1").group
    ''
    """

    kind: str
    name: str
    uid: str
    api_version: str

    def __post_init__(self) -> None:
        for item in fields(self):
            _check_str(getattr(self, item.name), f"owner.{item.name}")

    @property
    def group(self) -> str:
        """API group: ``"apps"`` for ``apps/v1``, ``""`` for the core group ``v1``."""
        group, _, _ = self.api_version.rpartition("/")
        return group

    @property
    def version(self) -> str:
        """API version within the group: ``"v1"`` for both ``apps/v1`` and ``v1``."""
        return self.api_version.rpartition("/")[2]

    def to_dict(self) -> dict[str, str]:
        """JSON-able form; :meth:`from_dict` reverses it."""
        return {"kind": self.kind, "name": self.name, "uid": self.uid, "api_version": self.api_version}

    @classmethod
    def from_dict(cls, data: Any) -> TopController:
        """Build from :meth:`to_dict` output, naming the field at fault on bad input.

        >>> TopController.from_dict({"kind": "Pod", "name": "p", "uid": 7, "api_version": "v1"})
        Traceback (most recent call last):
        ...
        spiderweb.engine.errors.InvalidInput: owner.uid must be a string, got int 7
        """
        return cls(**_pick(data, "owner", [item.name for item in fields(cls)], optional=()))


@dataclass(frozen=True)
class PodFacts:
    """Everything pool selection looks at for one pod: identity, labels, annotations, owner, namespace and node.

    The dicts are copied on construction so a later change to the caller's dict does not change the facts.
    """

    namespace: str
    name: str
    uid: str
    node: str
    labels: dict[str, str]
    annotations: dict[str, str]
    owner: TopController
    namespace_labels: dict[str, str]
    namespace_annotations: dict[str, str]
    node_labels: dict[str, str]
    alive: bool = field(default=True)

    def __post_init__(self) -> None:
        for name in ("namespace", "name", "uid", "node"):
            _check_str(getattr(self, name), name)
        for name in ("labels", "annotations", "namespace_labels", "namespace_annotations", "node_labels"):
            value = getattr(self, name)
            _check_str_map(value, name)
            object.__setattr__(self, name, dict(value))
        if not isinstance(self.owner, TopController):
            raise InvalidInput(f"owner must be a TopController, got {type(self.owner).__name__}")
        if not isinstance(self.alive, bool):
            raise InvalidInput(f"alive must be true or false, got {self.alive!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form with the field names as keys; :meth:`from_dict` reverses it."""
        out: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            out[item.name] = value.to_dict() if isinstance(value, TopController) else value
        for name in ("labels", "annotations", "namespace_labels", "namespace_annotations", "node_labels"):
            out[name] = dict(out[name])
        return out

    @classmethod
    def from_dict(cls, data: Any) -> PodFacts:
        """Build from :meth:`to_dict` output; ``alive`` defaults to true.

        Unknown keys are ignored so an agent one release ahead of the portal can still talk to it; every known
        field is type-checked and a bad one is named.

        >>> PodFacts.from_dict({"namespace": "default", "name": "web-0", "uid": "u", "node": "n1",
        ...     "labels": {"app": 1}, "annotations": {}, "namespace_labels": {}, "namespace_annotations": {},
        ...     "node_labels": {}, "owner": {"kind": "Pod", "name": "web-0", "uid": "u", "api_version": "v1"}})
        Traceback (most recent call last):
        ...
        spiderweb.engine.errors.InvalidInput: labels['app'] must be a string, got int 1
        """
        names = [item.name for item in fields(cls)]
        values = _pick(data, "pod facts", names, optional=("alive",))
        values["owner"] = TopController.from_dict(values["owner"])
        return cls(**values)


def _pick(data: Any, what: str, names: list[str], optional: tuple[str, ...]) -> dict[str, Any]:
    """Take the known keys out of ``data``, failing with the names of the missing required ones."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{what} must be a JSON object, got {type(data).__name__}")
    missing = [name for name in names if name not in data and name not in optional]
    if missing:
        raise InvalidInput(f"{what} is missing required field(s): {', '.join(missing)}")
    return {name: data[name] for name in names if name in data}
