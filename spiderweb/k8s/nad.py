"""SpiderMultusConfig → NetworkAttachmentDefinition (spec §10.3): the NAD a SpiderMultusConfig stands for.

Pure functions on the API's JSON dicts. The SpiderMultusConfig is first defaulted with the mutating webhook's own
rules (:func:`spiderweb.k8s.netconf.multusconfig_mutate`, idempotent), so the NAD is the same whether or not the
webhook ran. Key order follows spec §10.3 (its worked example and mapping table) and is kept by ``json.dumps``:
``{"cniVersion", "name", "plugins"}``, each plugin ``type`` first. Fields that are empty strings, empty lists or
empty objects (and an ifacer ``vlanID`` of 0) are left out; every other number and boolean is written as set
(spec Appendix C12). ``podRPFilter`` and ``hostRuleTable`` are written whenever set (Appendix A8, unlike
Spiderpool). Never imports Django.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from spiderweb.engine import keys
from spiderweb.k8s import crd, netconf, resources
from spiderweb.k8s.crd import meta

ANNO_CNICONFIG_NAME = keys.ANNO_SMC_CNICONFIG_NAME
ANNO_RESOURCE_NAME = keys.ANNO_MULTUS_RESOURCE_NAME
DEFAULT_CNI_VERSION = "0.3.1"
IPAM_TYPE = "spiderpool"
# SMC coordinator field → NAD coordinator field, in the order of spec §10.3's mapping table.
COORDINATOR_KEYS = (("mode", "mode"), ("hijackCIDR", "hijackCIDR"), ("policyRoutes", "policyRoutes"),
                    ("podMACPrefix", "podMACPrefix"), ("podDefaultRouteNIC", "podDefaultRouteNic"),
                    ("vethLinkAddress", "vethLinkAddress"), ("vethMTU", "vethMTU"), ("tunePodRoutes", "tunePodRoutes"),
                    ("txQueueLen", "txQueueLen"), ("podRPFilter", "podRPFilter"), ("hostRuleTable", "hostRuleTable"))


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _plugin(plugin_type: str, *pairs: tuple[str, Any]) -> dict:
    """``{"type": plugin_type, key: value, ...}`` in the given order, empty values left out (C12)."""
    out: dict[str, Any] = {"type": plugin_type}
    for key, value in pairs:
        if not _empty(value):
            out[key] = value
    return out


def nad_name(smc: Mapping[str, Any]) -> str:
    """The NAD's name: annotation ``multus.spidernet.io/cr-name``, else the SpiderMultusConfig's name."""
    return (meta(smc).get("annotations") or {}).get(netconf.ANNO_CR_NAME) or meta(smc)["name"]


def _ipam(spec: Mapping[str, Any], sub: Mapping[str, Any]) -> dict | None:
    if spec.get("disableIPAM"):
        return None
    pools = sub.get("ippools") or {}
    ipam = _plugin(IPAM_TYPE, ("default_ipv4_ippool", list(pools.get("ipv4") or [])),
                   ("default_ipv6_ippool", list(pools.get("ipv6") or [])))
    if spec.get("cniType") == "sriov" and pools.get("matchMasterSubnet"):
        ipam["match_master_subnet"] = True
    return ipam


def _master(sub: Mapping[str, Any], *, vlan_suffix: bool) -> str:
    """The parent device: the single master or the bond, ``.<vlanID>`` appended for a macvlan/ipvlan VLAN."""
    masters = list(sub.get("master") or [])
    master = (sub.get("bond") or {}).get("name") if len(masters) >= 2 else (masters[0] if masters else "")
    vlan = sub.get("vlanID") or 0
    return f"{master}.{vlan}" if vlan_suffix and vlan else str(master or "")


def _ifacer(sub: Mapping[str, Any], *, vlan: int) -> dict:
    bond = sub.get("bond") if len(sub.get("master") or []) >= 2 else None
    bond_out = None
    if isinstance(bond, Mapping):
        bond_out = {"name": bond.get("name"), "mode": bond.get("mode", 0)}
        if bond.get("options"):
            bond_out["options"] = bond["options"]
    return _plugin("ifacer", ("interfaces", list(sub.get("master") or [])), ("vlanID", vlan or None),
                   ("bond", bond_out))


def _coordinator(block: Mapping[str, Any] | None) -> dict:
    block = block or {}
    return _plugin("coordinator", *((nad_key, block.get(smc_key)) for smc_key, nad_key in COORDINATOR_KEYS))


def _main_plugins(spec: Mapping[str, Any]) -> tuple[list[dict], list[dict]]:
    """(plugins before the chain entries, plugins after the coordinator) for the SMC's cniType."""
    cni_type = spec["cniType"]
    sub = spec.get(netconf.SUBCONFIG[cni_type]) or {}
    ipam = _ipam(spec, sub)
    masters = list(sub.get("master") or []) if cni_type in ("macvlan", "ipvlan", "vlan") else []
    if cni_type in ("macvlan", "ipvlan"):
        vlan = sub.get("vlanID") or 0
        before = [_ifacer(sub, vlan=vlan)] if vlan or len(masters) >= 2 else []
        pairs = [("master", _master(sub, vlan_suffix=True))]
        if cni_type == "macvlan":
            pairs.append(("mode", "bridge"))
        return [*before, _plugin(cni_type, *pairs, ("mtu", sub.get("mtu", 0)), ("ipam", ipam))], []
    if cni_type == "vlan":
        before = [_ifacer(sub, vlan=0)] if len(masters) >= 2 else []
        mode = sub.get("vlanMode") or "manual"
        vlan_id = ("vlanId", sub.get("vlanID", 0)) if mode == "manual" else ("vlanId", None)
        return [*before, _plugin("vlan", ("master", _master(sub, vlan_suffix=False)), ("vlanMode", mode), vlan_id,
                                 ("mtu", sub.get("mtu", 0)), ("ipam", ipam))], []
    if cni_type == "sriov":
        main = [_plugin("sriov", ("vlan", sub.get("vlanID", 0)), ("min_tx_rate", sub.get("minTxRateMbps", 0)),
                        ("max_tx_rate", sub.get("maxTxRateMbps", 0)), ("ipam", ipam))]
        if sub.get("rdmaIsolation"):
            main.append({"type": "rdma"})
        after = [{"type": "tuning", "mtu": sub["mtu"]}] if (sub.get("mtu") or 0) > 0 else []
        return main, after
    if cni_type == "ib-sriov":
        return [_plugin("ib-sriov", ("pkey", sub.get("pkey")), ("link_state", sub.get("linkState")),
                        ("rdmaIsolation", sub.get("rdmaIsolation")),
                        ("ibKubernetesEnabled", sub.get("enableIbKubernetes")), ("ipam", ipam))], []
    if cni_type == "ipoib":
        return [_plugin("ipoib", ("master", sub.get("master")), ("ipam", ipam))], []
    if cni_type == "ovs":
        trunk = [{k: t[k] for k in ("minID", "maxID", "id") if t.get(k) is not None} for t in sub.get("trunk") or []]
        return [_plugin("ovs", ("bridge", sub.get("bridge")), ("vlan", sub.get("vlan", 0)), ("trunk", trunk),
                        ("deviceID", sub.get("deviceID")), ("ipam", ipam))], []
    raise ValueError(f"no NAD mapping for cniType {cni_type!r}")


def nad_config(smc: Mapping[str, Any]) -> dict | str | None:
    """The NAD's ``spec.config``: a conflist dict, the ``customCNI`` text verbatim, or ``None`` (custom, empty).

    >>> smc = {"metadata": {"name": "macvlan-ens192", "namespace": "kube-system"}, "spec": {"cniType": "macvlan",
    ...        "macvlan": {"master": ["ens192"], "vlanID": 100, "ippools": {"ipv4": ["v4-pool"]}}}}
    >>> print(json.dumps(nad_config(smc), separators=(",", ":")))
    {"cniVersion":"0.3.1","name":"macvlan-ens192","plugins":[{"type":"ifacer","interfaces":["ens192"],"vlanID":100},\
{"type":"macvlan","master":"ens192.100","mode":"bridge","mtu":0,"ipam":{"type":"spiderpool","default_ipv4_ippool":\
["v4-pool"]}},{"type":"coordinator","mode":"auto","tunePodRoutes":true,"podRPFilter":0}]}
    """
    smc = netconf.multusconfig_mutate(smc)
    spec = smc["spec"]
    if spec["cniType"] == "custom":
        return spec.get("customCNI") or None
    annotations = meta(smc).get("annotations") or {}
    before, after = _main_plugins(spec)
    chain = [json.loads(entry) for entry in spec.get("chainCNIJsonData") or []]
    coordinator = [_coordinator(spec.get("coordinator"))] if spec.get("enableCoordinator") else []
    return {"cniVersion": annotations.get(netconf.ANNO_CNI_VERSION) or DEFAULT_CNI_VERSION,
            "name": annotations.get(ANNO_CNICONFIG_NAME) or nad_name(smc),
            "plugins": [*before, *chain, *coordinator, *after]}


def nad_config_text(smc: Mapping[str, Any]) -> str | None:
    """``spec.config`` as the NAD stores it: compact JSON (as Spiderpool's ``json.Marshal``), custom text verbatim."""
    config = nad_config(smc)
    return config if config is None or isinstance(config, str) else json.dumps(config, separators=(",", ":"))


def nad_annotations(smc: Mapping[str, Any]) -> dict:
    """The SMC's annotations, plus ``k8s.v1.cni.cncf.io/resourceName`` for SR-IOV/InfiniBand and OVS offload."""
    spec = netconf.multusconfig_mutate(smc)["spec"]
    out = dict(meta(smc).get("annotations") or {})
    sub = spec.get(netconf.SUBCONFIG.get(spec["cniType"], "")) or {}
    if spec["cniType"] in ("sriov", "ib-sriov") and sub.get("resourceName"):
        out[ANNO_RESOURCE_NAME] = sub["resourceName"]
    if spec["cniType"] == "ovs" and sub.get("deviceID"):
        out[ANNO_RESOURCE_NAME] = f"ovs-cni.network.kubevirt.io/{sub.get('bridge')}"
    return out


def owner_reference(smc: Mapping[str, Any]) -> dict:
    """The controller ownerReference to the SMC: deleting it deletes the NAD through Kubernetes' GC."""
    return {"apiVersion": crd.API_VERSION, "kind": crd.SPIDER_MULTUSCONFIG.kind, "name": meta(smc)["name"],
            "uid": meta(smc).get("uid"), "controller": True, "blockOwnerDeletion": True}


def controller_owner(obj: Mapping[str, Any] | None) -> dict | None:
    """The ownerReference marked ``controller`` of ``obj``, if any."""
    return next((ref for ref in meta(obj).get("ownerReferences") or [] if ref.get("controller")), None)


def owned_by_other(nad: Mapping[str, Any], smc: Mapping[str, Any]) -> str | None:
    """The name of another SpiderMultusConfig controlling ``nad`` (spec §10.2: never taken over), else ``None``.

    An older incarnation of the same SMC (same name, another uid) is gone, so its NAD is adopted.

    >>> nad = {"metadata": {"ownerReferences": [{"kind": "SpiderMultusConfig", "name": "a", "controller": True}]}}
    >>> owned_by_other(nad, {"metadata": {"name": "b"}}), owned_by_other(nad, {"metadata": {"name": "a"}})
    ('a', None)
    """
    owner = controller_owner(nad)
    if owner is None or owner.get("kind") != crd.SPIDER_MULTUSCONFIG.kind or owner.get("name") == meta(smc)["name"]:
        return None
    return str(owner.get("name"))


def nad_desired(smc: Mapping[str, Any], existing: Mapping[str, Any] | None = None) -> dict:
    """The NAD to create (``existing`` None) or to replace ``existing`` with: other owner references, labels and
    finalizers of an existing NAD are kept, the resourceVersion is the precondition."""
    m = meta(smc)
    text = nad_config_text(smc)
    body: dict[str, Any] = {"apiVersion": resources.NETWORK_ATTACHMENT_DEFINITION.api_version,
                            "kind": resources.NETWORK_ATTACHMENT_DEFINITION.kind,
                            "metadata": {"name": nad_name(smc), "namespace": m.get("namespace")},
                            "spec": {"config": text} if text is not None else {}}
    annotations = nad_annotations(smc)
    if annotations:
        body["metadata"]["annotations"] = annotations
    owners = [owner_reference(smc)]
    if existing is not None:
        em = meta(existing)
        owners += [ref for ref in em.get("ownerReferences") or [] if not ref.get("controller")]
        for key in ("labels", "finalizers", "resourceVersion", "uid"):
            if em.get(key):
                body["metadata"][key] = em[key]
        extra = {k: v for k, v in (existing.get("spec") or {}).items() if k != "config"}
        body["spec"] = {**extra, **body["spec"]}
    body["metadata"]["ownerReferences"] = owners
    return body


def nad_differs(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Spiderpool's rule: the NAD is rewritten when its annotations, ``spec.config`` or controller owner differ."""
    em, dm = meta(existing), meta(desired)
    return ((em.get("annotations") or {}) != (dm.get("annotations") or {})
            or (existing.get("spec") or {}).get("config") != (desired.get("spec") or {}).get("config")
            or _owner_key(controller_owner(existing)) != _owner_key(controller_owner(desired)))


def _owner_key(ref: Mapping[str, Any] | None) -> tuple:
    return () if ref is None else (ref.get("kind"), ref.get("name"), ref.get("uid"))
