"""Which pools a pod may use, NIC by NIC (spec §2.1, §3.2–§3.4, Appendix A4/A5).

Three steps, each a pure function so the agent and the portal reach the same answer:

1. :func:`plan_nics` picks candidate pool names by Spiderpool's precedence rules (pod ``ippools`` annotation,
   pod ``ippool`` annotation, namespace defaults, CNI config defaults, cluster default pools), expanding
   wildcards and dropping disabled families;
2. :func:`filter_pools` removes the pools this pod may not use and says why, in words a person understands;
3. :func:`sort_by_specificity` puts the most specific pools first, keeping the user's order among equals.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from typing import Any

from spiderweb.engine.errors import InvalidInput, NoPoolAvailable, NotFound
from spiderweb.engine.facts import PodFacts
from spiderweb.engine.keys import (
    ANNO_IPPOOL,
    ANNO_IPPOOLS,
    ANNO_MULTUS_DEFAULT_NETWORK,
    ANNO_MULTUS_NETWORKS,
    ANNO_NAMESPACE_DEFAULT_POOL,
    APP_API_GROUP,
    APP_API_VERSION,
    APP_KIND,
    APP_NAME,
    APP_NAMESPACE,
    AUTO_POOL_LABELS,
)
from spiderweb.engine.selector import label_selector_matches

NO_SELECTION_RULES = "no IPPool available, no pool selection rules of any type are specified"

_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

_RULE_SOURCES = {
    "ippools": f"pod annotation {ANNO_IPPOOLS}",
    "ippool": f"pod annotation {ANNO_IPPOOL}",
    "namespace": "namespace annotations ipam.spidernet.io/default-ipv4-ippool / default-ipv6-ippool",
    "cni": "CNI config default_ipv4_ippool / default_ipv6_ippool",
    "cluster": "cluster default IPPools",
}


@dataclass(frozen=True)
class PoolView:
    """What selection needs to know about one SpiderIPPool.

    Selectors are the CRD's LabelSelector dicts or None when unset (an empty dict is *set* and matches
    everything, as in Kubernetes); name lists become tuples.
    """

    name: str
    version: int
    subnet: str
    default: bool = False
    disable: bool = False
    terminating: bool = False
    pod_affinity: dict[str, Any] | None = None
    namespace_affinity: dict[str, Any] | None = None
    namespace_name: tuple[str, ...] = ()
    node_affinity: dict[str, Any] | None = None
    node_name: tuple[str, ...] = ()
    multus_name: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("namespace_name", "node_name", "multus_name"):
            value = getattr(self, name)
            object.__setattr__(self, name, tuple(value) if value is not None else ())


@dataclass(frozen=True)
class NicRequest:
    """Ordered candidate pool names, per family, for one NIC, and the precedence rule that produced them."""

    interface: str
    clean_gateway: bool
    v4: tuple[str, ...]
    v6: tuple[str, ...]
    rule: str

    def pools(self, version: int) -> tuple[str, ...]:
        """Candidates of one family.

        >>> NicRequest("eth0", False, ("a",), ("b",), "ippool").pools(6)
        ('b',)
        """
        return self.v4 if version == 4 else self.v6


@dataclass(frozen=True)
class CniDefaults:
    """The IPAM section of the CNI config: ``default_ipv4_ippool``, ``default_ipv6_ippool``, ``clean_gateway``."""

    v4: tuple[str, ...] = ()
    v6: tuple[str, ...] = ()
    clean_gateway: bool = False


@dataclass(frozen=True)
class Rejection:
    """Why one candidate pool was filtered out."""

    pool: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        """JSON-able form for ``details["candidates"]`` of NoPoolAvailable.

        >>> Rejection("p1", "pool is disabled").to_dict()
        {'pool': 'p1', 'reason': 'pool is disabled'}
        """
        return {"pool": self.pool, "reason": self.reason}


@dataclass(frozen=True)
class MultusNetwork:
    """One entry of a Multus network annotation: the NAD ``namespace/name`` and the NIC it creates."""

    namespace: str
    name: str
    interface: str

    @property
    def nad(self) -> str:
        """``namespace/name`` of the NetworkAttachmentDefinition."""
        return f"{self.namespace}/{self.name}"


# -- candidate acquisition (§3.2) -------------------------------------------------------------------------------------


def plan_nics(
    facts: PodFacts,
    *,
    if_name: str,
    cni: CniDefaults,
    pool_names: dict[int, list[str]],
    cluster_default: dict[int, list[str]],
    families: frozenset[int],
) -> list[NicRequest]:
    """Pick candidate pools for the NICs of this request by Spiderpool's precedence (first matching rule wins).

    Rules: ``ipam.spidernet.io/ippools`` (every listed NIC), ``ipam.spidernet.io/ippool``, the namespace's
    ``default-ipv4-ippool``/``default-ipv6-ippool``, the CNI config defaults, and finally all pools with
    ``default: true`` (``cluster_default``, taken in name order so the result never depends on database order).
    Subnet annotations are the allocator's job and come before this.

    * Wildcards (``*``, ``?``, ``[..]``) expand in place to the matching names of ``pool_names[version]`` in sorted
      order, leaving out names the list also spells literally or that an earlier pattern already produced (so
      ``["p1", "p*"]`` means "p1, then the other p-pools"). A literal name written twice is kept twice and
      rejected by :func:`filter_pools`.
    * Clean-gateway comes from the ``ippools`` item (``cleangateway``), otherwise from ``cni.clean_gateway``.
    * Families not in ``families`` are dropped silently; a family without candidates is simply not allocated.
    * In unnamed ``ippools`` mode (no item has ``interface``) item 0 is ``if_name`` and item i is the NIC of the
      i-th entry of ``k8s.v1.cni.cncf.io/networks`` (``net<i>`` when that entry names none), instead of
      Spiderpool's temporary empty NIC names.

    Raises InvalidInput for a malformed annotation, an ``ippools`` list mixing named and unnamed items, duplicate
    interfaces or a named list without ``if_name``; NoPoolAvailable when no rule applies at all, or when the NIC
    being configured ends up with no candidate in any enabled family.

    >>> from spiderweb.engine.facts import TopController
    >>> facts = PodFacts(namespace="default", name="web", uid="u1", node="n1", labels={},
    ...     annotations={"ipam.spidernet.io/ippool": '{"ipv4": ["v4-*"], "ipv6": ["v6-a"]}'},
    ...     owner=TopController("Pod", "web", "u1", "v1"), namespace_labels={}, namespace_annotations={},
    ...     node_labels={})
    >>> plan_nics(facts, if_name="eth0", cni=CniDefaults(), pool_names={4: ["v4-b", "v4-a", "x"], 6: ["v6-a"]},
    ...           cluster_default={}, families=frozenset({4}))
    [NicRequest(interface='eth0', clean_gateway=False, v4=('v4-a', 'v4-b'), v6=(), rule='ippool')]
    """
    if not isinstance(if_name, str) or not if_name:
        raise InvalidInput(f"if_name must be a non-empty interface name, got {if_name!r}")
    if not families or not set(families) <= {4, 6}:
        raise InvalidInput(f"families must be a non-empty subset of {{4, 6}}, got {sorted(families)!r}")
    annotations = facts.annotations
    planned: list[tuple[str, bool, dict[int, list[str]]]]
    if ANNO_IPPOOLS in annotations:
        rule = "ippools"
        planned = _plan_from_ippools(facts, if_name)
    elif ANNO_IPPOOL in annotations:
        rule = "ippool"
        planned = [(if_name, cni.clean_gateway, _parse_family_lists(annotations[ANNO_IPPOOL], ANNO_IPPOOL))]
    else:
        namespace_pools = _namespace_default_pools(facts.namespace_annotations)
        if namespace_pools[4] or namespace_pools[6]:
            rule = "namespace"
            planned = [(if_name, cni.clean_gateway, namespace_pools)]
        elif cni.v4 or cni.v6:
            rule = "cni"
            planned = [(if_name, cni.clean_gateway, {4: list(cni.v4), 6: list(cni.v6)})]
        else:
            rule = "cluster"
            defaults = {version: sorted(cluster_default.get(version) or []) for version in (4, 6)}
            if not any(defaults[version] for version in families):
                raise NoPoolAvailable(NO_SELECTION_RULES, details={"interface": if_name, "candidates": []})
            planned = [(if_name, cni.clean_gateway, defaults)]

    requests = []
    for interface, clean_gateway, lists in planned:
        expanded = {
            version: _expand_wildcards(lists.get(version) or [], sorted(pool_names.get(version) or []))
            if version in families
            else ()
            for version in (4, 6)
        }
        requests.append(NicRequest(interface, clean_gateway, expanded[4], expanded[6], rule))

    own = next(request for request in requests if request.interface == if_name)
    if not own.v4 and not own.v6:
        own_lists = next(lists for interface, _, lists in planned if interface == if_name)
        asked = {f"ipv{version}": list(own_lists.get(version) or []) for version in (4, 6)}
        enabled = "/".join(f"IPv{version}" for version in sorted(families))
        raise NoPoolAvailable(
            f"no IPPool available for {if_name}: {_RULE_SOURCES[rule]} yields no {enabled} pool "
            f"(it asks for {asked}; disabled families are dropped and wildcards match only existing pools)",
            details={"interface": if_name, "rule": rule, "requested": asked, "candidates": []},
        )
    return requests


def _plan_from_ippools(facts: PodFacts, if_name: str) -> list[tuple[str, bool, dict[int, list[str]]]]:
    """Parse ``ipam.spidernet.io/ippools`` into ``(interface, clean_gateway, {4: names, 6: names})`` per NIC."""
    key = ANNO_IPPOOLS
    value = _load_json(
        facts.annotations[key],
        key,
        '[{"interface": "eth0", "ipv4": ["pool-a"], "ipv6": ["pool-b"], "cleangateway": false}]',
    )
    if not isinstance(value, list):
        raise InvalidInput(f"{key} must be a JSON list of per-NIC objects, got {type(value).__name__}")
    if not value:
        raise InvalidInput(f"{key} must list at least one NIC")
    items = []
    for index, item in enumerate(value):
        where = f"{key}[{index}]"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where} must be an object with interface, ipv4, ipv6 and cleangateway")
        fields = _go_json_fields(item)
        interface = fields.get("interface")
        if interface is None:
            interface = ""
        if not isinstance(interface, str):
            raise InvalidInput(f"{where}.interface must be a string, got {interface!r}")
        clean_gateway = fields.get("cleangateway")
        if clean_gateway is None:
            clean_gateway = False
        if not isinstance(clean_gateway, bool):
            raise InvalidInput(f"{where}.cleangateway must be true or false, got {clean_gateway!r}")
        lists = {4: _name_list(fields.get("ipv4"), f"{where}.ipv4"), 6: _name_list(fields.get("ipv6"), f"{where}.ipv6")}
        items.append((interface, clean_gateway, lists))

    named = [bool(interface) for interface, _, _ in items]
    if any(named) and not all(named):
        missing = [index for index, is_named in enumerate(named) if not is_named]
        raise InvalidInput(f"{key}: set interface on every item or on none; items {missing} have none")
    if all(named):
        interfaces = [interface for interface, _, _ in items]
        if if_name not in interfaces:
            raise InvalidInput(f"{key} lists interfaces {interfaces} but not {if_name}, the NIC being configured")
    else:
        networks = parse_multus_networks(
            facts.annotations.get(ANNO_MULTUS_NETWORKS, ""), default_namespace=facts.namespace
        )
        if len(items) - 1 > len(networks):
            raise InvalidInput(
                f"{key} has {len(items)} items without interface names, so items 1.. map to the entries of "
                f"{ANNO_MULTUS_NETWORKS}, which has only {len(networks)}; name the interfaces or add networks"
            )
        names = [if_name] + [network.interface for network in networks[: len(items) - 1]]
        items = [(name, clean_gateway, lists) for name, (_, clean_gateway, lists) in zip(names, items, strict=True)]
        interfaces = names
    duplicates = sorted({name for name in interfaces if interfaces.count(name) > 1})
    if duplicates:
        raise InvalidInput(f"{key} configures interface(s) {duplicates} more than once; each NIC at most once")
    return items


def _namespace_default_pools(namespace_annotations: dict[str, str]) -> dict[int, list[str]]:
    """Read the namespace's ``default-ipv4-ippool`` / ``default-ipv6-ippool`` JSON arrays (absent or blank = empty)."""
    out: dict[int, list[str]] = {}
    for version, key in ANNO_NAMESPACE_DEFAULT_POOL.items():
        text = namespace_annotations.get(key)
        if text is None or not text.strip():
            out[version] = []
            continue
        value = _load_json(text, f"namespace annotation {key}", '["pool-a", "pool-b*"]')
        out[version] = _name_list(value, f"namespace annotation {key}")
    return out


def _parse_family_lists(text: str, key: str) -> dict[int, list[str]]:
    """Parse ``{"ipv4": [...], "ipv6": [...]}`` (the ``ippool`` annotation)."""
    value = _load_json(text, key, '{"ipv4": ["pool-a"], "ipv6": ["pool-b"]}')
    if not isinstance(value, dict):
        raise InvalidInput(f'{key} must be a JSON object like {{"ipv4": ["pool-a"], "ipv6": ["pool-b"]}}')
    fields = _go_json_fields(value)
    return {4: _name_list(fields.get("ipv4"), f"{key}.ipv4"), 6: _name_list(fields.get("ipv6"), f"{key}.ipv6")}


def _load_json(text: str, what: str, example: str) -> Any:
    """Decode an annotation value, naming the annotation and showing the expected shape on failure."""
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be a JSON string, got {text!r}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{what} is not valid JSON ({exc.msg} at position {exc.pos}): {text!r}; expected something like {example}"
        ) from None


def _go_json_fields(item: dict[str, Any]) -> dict[str, Any]:
    """Lower-case the keys: Spiderpool decodes annotations with Go's case-insensitive JSON field matching.

    Unknown keys are ignored, as Spiderpool ignores them, so annotations written for Spiderpool keep working.
    """
    return {str(key).lower(): value for key, value in item.items()}


def _name_list(value: Any, where: str) -> list[str]:
    """A list of non-empty pool names or patterns; JSON null counts as empty."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(name, str) and name for name in value):
        raise InvalidInput(f"{where} must be a list of pool names, got {value!r}")
    return list(value)


def _is_pattern(name: str) -> bool:
    return any(char in name for char in "*?[")


def pattern_check(name: str) -> None:
    """Raise InvalidInput for a malformed shell-glob pool name pattern (Go's filepath.Match: ErrBadPattern).

    A malformed pattern would match nothing, and the ADD would silently fall through to the next candidate pool.

    >>> pattern_check("pool-[ab]*")
    >>> pattern_check("pool-[ab")
    Traceback (most recent call last):
    ...
    spiderweb.engine.errors.InvalidInput: pool name pattern 'pool-[ab' is malformed: '[' at 5 has no closing ']'
    """
    index = 0
    while index < len(name):
        if name[index] == "[":
            start = index
            index += 1
            if index < len(name) and name[index] in "!^":
                index += 1
            members = 0
            while index < len(name) and name[index] != "]":
                if name[index] == "-" and (members == 0 or index + 1 >= len(name) or name[index + 1] == "]"):
                    raise InvalidInput(f"pool name pattern {name!r} is malformed: a range at {index} has no bounds")
                members += 1
                index += 1
            if index >= len(name):
                raise InvalidInput(f"pool name pattern {name!r} is malformed: '[' at {start} has no closing ']'")
            if members == 0:
                raise InvalidInput(f"pool name pattern {name!r} is malformed: '[]' at {start} is an empty class")
        elif name[index] == "]":
            raise InvalidInput(f"pool name pattern {name!r} is malformed: ']' at {index} has no opening '['")
        index += 1


def _expand_wildcards(names: list[str], available: list[str]) -> tuple[str, ...]:
    """Replace each pattern by the sorted matching pool names, in place; a malformed pattern is refused.

    >>> _expand_wildcards(["p1", "p*", "q"], ["p1", "p2", "p3", "q"])
    ('p1', 'p2', 'p3', 'q')
    """
    for name in names:
        if _is_pattern(name) or "]" in name:
            pattern_check(name)
    literal = {name for name in names if not _is_pattern(name)}
    out: list[str] = []
    produced: set[str] = set()
    for name in names:
        if not _is_pattern(name):
            out.append(name)
            continue
        for match in available:
            if match not in literal and match not in produced and fnmatch.fnmatchcase(match, name):
                out.append(match)
                produced.add(match)
    return tuple(out)


# -- Multus networks (§2.1, §3.3.6) -------------------------------------------------------------------------------


def _multus_network(namespace: str, name: str, interface: str, where: str) -> MultusNetwork:
    """Build one entry, insisting on Kubernetes object names and a plausible interface name."""
    for label, value in (("namespace", namespace), ("name", name)):
        if len(value) > 253 or not _K8S_NAME.match(value):
            raise InvalidInput(
                f"{where}: {label} {value!r} is not a valid Kubernetes name (lowercase alphanumerics, '-' and '.')"
            )
    if len(interface) > 15 or any(char.isspace() or char in "/:" for char in interface):
        raise InvalidInput(f"{where}: interface {interface!r} is not a valid Linux interface name")
    return MultusNetwork(namespace, name, interface)


def parse_multus_networks(text: str, *, default_namespace: str) -> list[MultusNetwork]:
    """Parse a Multus network annotation: a comma list of ``[ns/]name[@ifname]`` or a JSON array of objects.

    Entries without a namespace get ``default_namespace``; entries without an interface are ``net1``, ``net2``, ...
    by position, as Multus names them.

    >>> [n.nad + "@" + n.interface for n in parse_multus_networks("kube-system/macvlan, sriov@net5",
    ...                                                             default_namespace="default")]
    ['kube-system/macvlan@net1', 'default/sriov@net5']
    """
    if not isinstance(text, str):
        raise InvalidInput(f"a Multus network annotation must be a string, got {text!r}")
    text = text.strip()
    if not text:
        return []
    out = []
    if any(char in text for char in '[{"'):
        value = _load_json(
            text, "Multus network annotation", '[{"name": "macvlan", "namespace": "kube-system", "interface": "net1"}]'
        )
        if not isinstance(value, list):
            raise InvalidInput(f"Multus network annotation {text!r} must be a JSON list of network objects")
        for index, item in enumerate(value):
            where = f"Multus network annotation entry {index}"
            if not isinstance(item, dict):
                raise InvalidInput(f"{where} must be an object with name, namespace and interface, got {item!r}")
            fields = _go_json_fields(item)
            name, namespace, interface = fields.get("name"), fields.get("namespace"), fields.get("interface")
            if not isinstance(name, str) or not name:
                raise InvalidInput(f"{where} needs a non-empty name, got {name!r}")
            for label, part in (("namespace", namespace), ("interface", interface)):
                if part is not None and not isinstance(part, str):
                    raise InvalidInput(f"{where}.{label} must be a string, got {part!r}")
            out.append(_multus_network(namespace or default_namespace, name, interface or f"net{index + 1}", where))
        return out
    for index, raw in enumerate(text.split(",")):
        entry = raw.strip()
        where = f"Multus network annotation entry {index} ({entry!r})"
        if not entry:
            raise InvalidInput(f"Multus network annotation {text!r} has an empty entry at position {index}")
        reference, at, interface = entry.partition("@")
        namespace, slash, name = reference.rpartition("/")
        if "@" in interface or "/" in namespace or (at and not interface) or (slash and not namespace) or not name:
            raise InvalidInput(f"{where} is not of the form [namespace/]name[@interface]")
        out.append(_multus_network(namespace or default_namespace, name, interface or f"net{index + 1}", where))
    return out


def multus_network_for_nic(
    facts: PodFacts,
    interface: str,
    *,
    first_nic: str = "eth0",
    spiderpool_namespace: str,
    cluster_network: str = "",
) -> str | None:
    """``namespace/name`` of the NetworkAttachmentDefinition behind a NIC, or None when it cannot be told.

    The first NIC comes from ``v1.multus-cni.io/default-network`` (namespace defaults to Spiderpool's) or else
    the agent's ``MULTUS_CLUSTER_NETWORK`` (``cluster_network``); other NICs come from
    ``k8s.v1.cni.cncf.io/networks`` (namespace defaults to the pod's). Callers ask only for pools that set
    ``multusName`` (Appendix A5), so a pod without Multus never loses its pools.

    >>> from spiderweb.engine.facts import TopController
    >>> facts = PodFacts(namespace="apps", name="web", uid="u1", node="n1", labels={},
    ...     annotations={"k8s.v1.cni.cncf.io/networks": "macvlan@net1"},
    ...     owner=TopController("Pod", "web", "u1", "v1"), namespace_labels={}, namespace_annotations={},
    ...     node_labels={})
    >>> multus_network_for_nic(facts, "net1", spiderpool_namespace="kube-system")
    'apps/macvlan'
    >>> multus_network_for_nic(facts, "eth0", spiderpool_namespace="kube-system", cluster_network="calico")
    'kube-system/calico'
    """
    if interface == first_nic:
        text = facts.annotations.get(ANNO_MULTUS_DEFAULT_NETWORK, "").strip()
        if text:
            networks = parse_multus_networks(text, default_namespace=spiderpool_namespace)
            if len(networks) != 1:
                raise InvalidInput(f"{ANNO_MULTUS_DEFAULT_NETWORK} must name exactly one network, got {text!r}")
            return networks[0].nad
        if cluster_network:
            namespace, _, name = cluster_network.rpartition("/")
            return f"{namespace or spiderpool_namespace}/{name}"
        return None
    networks = parse_multus_networks(facts.annotations.get(ANNO_MULTUS_NETWORKS, ""), default_namespace=facts.namespace)
    for network in networks:
        if network.interface == interface:
            return network.nad
    return None


# -- filtering (§3.3) and sorting (§3.4) ----------------------------------------------------------------------------


def is_auto_pool(pool: PoolView) -> bool:
    """True for pools auto-created from a SpiderSubnet: their podAffinity carries the five app-* match labels.

    >>> is_auto_pool(PoolView("p", 4, "10.0.0.0/24", pod_affinity={"matchLabels": {"app": "web"}}))
    False
    """
    if not isinstance(pool.pod_affinity, dict):
        return False
    match_labels = pool.pod_affinity.get("matchLabels")
    return isinstance(match_labels, dict) and all(key in match_labels for key in AUTO_POOL_LABELS)


def _owner_identity(group: str, version: str, kind: str, namespace: str, name: str) -> str:
    api_version = f"{group}/{version}" if group else version
    return f"{api_version} {kind} {namespace}/{name}"


def auto_pool_matches_owner(pool: PoolView, facts: PodFacts) -> bool:
    """True when an auto pool belongs to the pod's top controller (group, version, kind, namespace, name).

    Auto pools are matched against the application, not pod labels: ``apps/v1`` gives group ``apps`` and version
    ``v1``; the core ``v1`` gives group ``""``. A pool that is not an auto pool never matches.

    >>> from spiderweb.engine.facts import TopController
    >>> labels = {APP_API_GROUP: "apps", APP_API_VERSION: "v1", APP_KIND: "Deployment",
    ...           APP_NAMESPACE: "default", APP_NAME: "web"}
    >>> pool = PoolView("auto4-web-eth0-1a2b3", 4, "10.0.0.0/24", pod_affinity={"matchLabels": labels})
    >>> facts = PodFacts(namespace="default", name="web-1", uid="u", node="n1", labels={}, annotations={},
    ...     owner=TopController("Deployment", "web", "d1", "apps/v1"), namespace_labels={},
    ...     namespace_annotations={}, node_labels={})
    >>> auto_pool_matches_owner(pool, facts)
    True
    """
    if not is_auto_pool(pool):
        return False
    labels = pool.pod_affinity["matchLabels"]  # type: ignore[index]
    owner = facts.owner
    return (
        labels[APP_API_GROUP],
        labels[APP_API_VERSION],
        labels[APP_KIND],
        labels[APP_NAMESPACE],
        labels[APP_NAME],
    ) == (owner.group, owner.version, owner.kind, facts.namespace, owner.name)


def _selector_reason(selector: dict[str, Any], labels: dict[str, str], what: str, field: str) -> str | None:
    """None when ``labels`` match; otherwise a reason (a malformed selector rejects the pool, not the request)."""
    try:
        matched = label_selector_matches(selector, labels)
    except InvalidInput as exc:
        return f"pool's {field} is invalid: {exc.message}"
    return None if matched else f"{what} labels do not match {field}"


def _rejection_reason(
    pool: PoolView, *, version: int, facts: PodFacts, interface: str, nad: str | None, spiderpool_namespace: str
) -> str | None:
    """The first §3.3 check (2–6) that ``pool`` fails for this pod and NIC, or None when it passes them all."""
    if pool.terminating:
        return "pool is terminating"
    if pool.disable:
        return "pool is disabled"
    if pool.version != version:
        return f"IPv{pool.version} pool cannot serve IPv{version}"
    if pool.node_name:
        if facts.node not in pool.node_name:
            return f"node {facts.node!r} not in nodeName {list(pool.node_name)}"
    elif pool.node_affinity is not None:
        reason = _selector_reason(pool.node_affinity, facts.node_labels, "node", "nodeAffinity")
        if reason:
            return reason
    if pool.namespace_name:
        if facts.namespace not in pool.namespace_name:
            return f"namespace {facts.namespace!r} not in namespaceName {list(pool.namespace_name)}"
    elif pool.namespace_affinity is not None:
        reason = _selector_reason(pool.namespace_affinity, facts.namespace_labels, "namespace", "namespaceAffinity")
        if reason:
            return reason
    if pool.pod_affinity is not None:
        if is_auto_pool(pool):
            if auto_pool_matches_owner(pool, facts):
                return None
            labels = pool.pod_affinity["matchLabels"]
            owner = facts.owner
            pod_app = _owner_identity(owner.group, owner.version, owner.kind, facts.namespace, owner.name)
            pool_app = _owner_identity(*(labels[key] for key in AUTO_POOL_LABELS))
            return f"pod's top controller {pod_app} is not this auto pool's application {pool_app}"
        reason = _selector_reason(pool.pod_affinity, facts.labels, "pod", "podAffinity")
        if reason:
            return reason
    if pool.multus_name:
        allowed = [name if "/" in name else f"{spiderpool_namespace}/{name}" for name in pool.multus_name]
        if nad is None:
            return f"NIC {interface} has no known Multus network, but the pool requires one of multusName {allowed}"
        if nad not in allowed:
            return f"NIC {interface} uses network {nad!r} not in multusName {allowed}"
    return None


def filter_pools(
    names: list[str],
    pools: dict[str, PoolView],
    *,
    version: int,
    facts: PodFacts,
    interface: str,
    nad: str | None,
    spiderpool_namespace: str,
) -> tuple[list[str], list[Rejection]]:
    """Split one NIC's candidate list (one family) into usable pools, most specific first, and rejections.

    Implements spec §3.3 checks 1–6 (``matchMasterSubnet`` is the agent's job). An unknown or repeated name fails
    the whole request (NotFound / InvalidInput), as in Spiderpool. ``nad`` is the NIC's Multus network from
    :func:`multus_network_for_nic`; it only matters for pools that set ``multusName``. Accepted pools are ordered
    by :func:`sort_by_specificity`.

    >>> from spiderweb.engine.facts import TopController
    >>> facts = PodFacts(namespace="default", name="web", uid="u1", node="n1", labels={}, annotations={},
    ...     owner=TopController("Pod", "web", "u1", "v1"), namespace_labels={}, namespace_annotations={},
    ...     node_labels={})
    >>> pools = {"a": PoolView("a", 4, "10.0.0.0/24"), "b": PoolView("b", 4, "10.1.0.0/24", node_name=("n2",)),
    ...          "c": PoolView("c", 4, "10.2.0.0/24", namespace_name=("default",))}
    >>> filter_pools(["a", "b", "c"], pools, version=4, facts=facts, interface="eth0", nad=None,
    ...              spiderpool_namespace="kube-system")
    (['c', 'a'], [Rejection(pool='b', reason="node 'n1' not in nodeName ['n2']")])
    """
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInput(f"pool {name!r} is listed twice for IPv{version} of {interface}; list each pool once")
        seen.add(name)
    unknown = [name for name in names if name not in pools]
    if unknown:
        raise NotFound(
            f"IPPool(s) {unknown} named for IPv{version} of {interface} do not exist", details={"pools": unknown}
        )
    accepted = []
    rejections = []
    for name in names:
        pool = pools[name]
        reason = _rejection_reason(
            pool, version=version, facts=facts, interface=interface, nad=nad, spiderpool_namespace=spiderpool_namespace
        )
        if reason is None:
            accepted.append(pool)
        else:
            rejections.append(Rejection(name, reason))
    return [pool.name for pool in sort_by_specificity(accepted)], rejections


def sort_by_specificity(pools: list[PoolView]) -> list[PoolView]:
    """Most specific pools first: podAffinity > nodeName > nodeAffinity > namespaceName > namespaceAffinity >
    multusName, compared lexicographically; a stable sort keeps the user's order among equals (Appendix A4).

    >>> order = sort_by_specificity([PoolView("plain", 4, "10.0.0.0/24"),
    ...                              PoolView("multus", 4, "10.0.0.0/24", multus_name=("m",)),
    ...                              PoolView("node", 4, "10.0.0.0/24", node_name=("n1",))])
    >>> [pool.name for pool in order]
    ['node', 'multus', 'plain']
    """
    return sorted(
        pools,
        key=lambda pool: (
            pool.pod_affinity is None,
            not pool.node_name,
            pool.node_affinity is None,
            not pool.namespace_name,
            pool.namespace_affinity is None,
            not pool.multus_name,
        ),
    )
