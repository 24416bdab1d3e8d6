"""Pod resource injection (spec §10.5, F51): what the pod mutating webhook ``/mutate--v1-pod`` adds to a new pod.

A pod (or its namespace) annotated ``cni.spidernet.io/rdma-resource-inject: <value>`` or
``cni.spidernet.io/network-resource-inject: <value>`` asks for every SpiderMultusConfig labelled with the same key and
value (the SMC webhook copies the annotation into a label). The pod then gets those networks in
``k8s.v1.cni.cncf.io/networks`` (``<namespace>/<NAD name>``, sorted by resource name then ``namespace/name``) and a
limit of 1 of each distinct device-plugin resource they need on its first container, unless some container
already asks for it. Pure functions on the API's JSON dicts; never imports Django.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from spiderweb.engine import keys
from spiderweb.engine.errors import InvalidInput
from spiderweb.k8s import nad, netconf
from spiderweb.k8s.crd import meta

INJECT_KEYS = (keys.ANNO_RDMA_RESOURCE_INJECT, keys.ANNO_NETWORK_RESOURCE_INJECT)


def inject_request(pod: Mapping[str, Any], namespace: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """``(key, value)`` the pod asks with: its own annotation, else its namespace's; ``None`` when neither.

    >>> inject_request({"metadata": {}}, {"metadata": {"annotations": {"cni.spidernet.io/rdma-resource-inject": "a"}}})
    ('cni.spidernet.io/rdma-resource-inject', 'a')
    """
    for source in (pod, namespace or {}):
        annotations = meta(source).get("annotations") or {}
        for key in INJECT_KEYS:
            if annotations.get(key):
                return key, str(annotations[key])
    return None


def resource_name(smc: Mapping[str, Any]) -> str:
    """The device-plugin resource an SMC's NIC needs: ``rdmaResourceName`` (macvlan, ipvlan, vlan),
    ``resourceName`` (sriov, ib-sriov), ``master`` (ipoib); ``""`` when none.

    >>> resource_name({"spec": {"cniType": "sriov", "sriov": {"resourceName": "spidernet.io/vf"}}})
    'spidernet.io/vf'
    """
    spec = smc.get("spec") or {}
    cni_type = spec.get("cniType") or "custom"
    sub = spec.get(netconf.SUBCONFIG.get(cni_type, "")) or {}
    if cni_type in ("macvlan", "ipvlan", "vlan"):
        return str(sub.get("rdmaResourceName") or "")
    if cni_type in ("sriov", "ib-sriov"):
        return str(sub.get("resourceName") or "")
    if cni_type == "ipoib":
        return str(sub.get("master") or "")
    return ""


def _problems(smc: Mapping[str, Any], key: str) -> list[str]:
    """Spec §10.2's inject rules, checked again at use: an SMC changed while its webhook was off still fails here."""
    spec = smc.get("spec") or {}
    cni_type = spec.get("cniType") or "custom"
    where = f"SpiderMultusConfig {meta(smc).get('namespace')}/{meta(smc).get('name')}"
    if cni_type in ("ovs", "custom"):
        return [f"{where}: cniType {cni_type} cannot be injected"]
    pools = (spec.get(netconf.SUBCONFIG[cni_type]) or {}).get("ippools") or {}
    has_pools = bool(pools.get("ipv4") or pools.get("ipv6"))
    name = resource_name(smc)
    if key == keys.ANNO_RDMA_RESOURCE_INJECT and not (name and has_pools):
        return [f"{where}: an RDMA-injected network needs a resource name and at least one default IP pool"]
    if key == keys.ANNO_NETWORK_RESOURCE_INJECT and name and not has_pools:
        return [f"{where}: a network with a resource name needs at least one default IP pool"]
    return []


def pod_inject(pod: Mapping[str, Any], namespace: Mapping[str, Any] | None,
               smcs: Iterable[Mapping[str, Any]]) -> dict:
    """The pod with the networks and resource limits it asked for (unchanged when it asked for nothing).

    Raises :class:`InvalidInput` (the pod is refused, with the reason) when no SpiderMultusConfig carries the label or
    one of them breaks the inject rules.

    >>> smc = {"metadata": {"namespace": "net", "name": "rdma-a", "labels": {
    ...     "cni.spidernet.io/rdma-resource-inject": "hca"}}, "spec": {"cniType": "macvlan", "macvlan": {
    ...     "master": ["ens1"], "rdmaResourceName": "spidernet.io/hca", "ippools": {"ipv4": ["p"]}}}}
    >>> pod = {"metadata": {"annotations": {"cni.spidernet.io/rdma-resource-inject": "hca"}},
    ...        "spec": {"containers": [{"name": "app"}]}}
    >>> out = pod_inject(pod, None, [smc])
    >>> out["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"], out["spec"]["containers"][0]["resources"]
    ('net/rdma-a', {'limits': {'spidernet.io/hca': '1'}})
    """
    request = inject_request(pod, namespace)
    out = copy.deepcopy(dict(pod))
    if request is None:
        return out
    key, value = request
    chosen = [s for s in smcs if (meta(s).get("labels") or {}).get(key) == value]
    if not chosen:
        raise InvalidInput(f"{key}={value}: no SpiderMultusConfig is labelled {key}={value}")
    chosen.sort(key=lambda s: (resource_name(s), f"{meta(s).get('namespace')}/{meta(s).get('name')}"))
    problems = [p for s in chosen for p in _problems(s, key)]
    if problems:
        raise InvalidInput(f"{key}={value}: " + "; ".join(problems))
    m = out.setdefault("metadata", {})
    annotations = m["annotations"] = dict(m.get("annotations") or {})
    current = [n.strip() for n in (annotations.get(keys.ANNO_MULTUS_NETWORKS) or "").split(",") if n.strip()]
    for smc in chosen:
        network = f"{meta(smc).get('namespace')}/{nad.nad_name(smc)}"
        if network not in current:
            current.append(network)
    annotations[keys.ANNO_MULTUS_NETWORKS] = ",".join(current)
    _limits_add(out, [resource_name(s) for s in chosen])
    return out


def _limits_add(pod: dict, names: list[str]) -> None:
    containers = (pod.get("spec") or {}).get("containers") or []
    if not containers:
        return
    asked = {name for c in containers for part in ("limits", "requests")
             for name in ((c.get("resources") or {}).get(part) or {})}
    first = containers[0]
    for name in dict.fromkeys(n for n in names if n):
        if name in asked:
            continue
        resources = first.setdefault("resources", {})
        resources.setdefault("limits", {})[name] = "1"
