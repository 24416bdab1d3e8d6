"""SpiderCoordinator and SpiderMultusConfig admission: defaults (spec §1.7, §10.1) and rules (§1.7, §10.2).

Pure functions on the CRD's own JSON. The rules that need other objects (an existing NetworkAttachmentDefinition
owned by a different SpiderMultusConfig) are not checked here. Never imports Django.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any

from spiderweb.engine import keys
from spiderweb.engine.errors import InvalidInput
from spiderweb.k8s.crd import FINALIZER, is_terminating, meta

COORDINATOR_MODES = ("auto", "underlay", "overlay", "disabled", "disable")
POD_CIDR_TYPES = ("auto", "cluster", "calico", "cilium", "none")
CNI_TYPES = ("macvlan", "ipvlan", "vlan", "sriov", "ovs", "ib-sriov", "ipoib", "custom")
CNI_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
ANNO_CR_NAME = keys.ANNO_SMC_CR_NAME
ANNO_CNI_VERSION = keys.ANNO_SMC_CNI_VERSION
INJECT_KEYS = (keys.ANNO_RDMA_RESOURCE_INJECT, keys.ANNO_NETWORK_RESOURCE_INJECT)
# cniType -> the spec key of its sub-config
SUBCONFIG = {"macvlan": "macvlan", "ipvlan": "ipvlan", "vlan": "vlan", "sriov": "sriov", "ovs": "ovs",
             "ib-sriov": "ibsriov", "ipoib": "ipoib"}
_MAC_PREFIX = re.compile(r"^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _as_cidr(text: Any) -> str | None:
    """A bare IP becomes /32 or /128; a CIDR is kept (host bits allowed, as Spiderpool does); junk → None.

    >>> _as_cidr("169.254.25.10"), _as_cidr("10.0.0.0/8"), _as_cidr("fd00::1"), _as_cidr("x")
    ('169.254.25.10/32', '10.0.0.0/8', 'fd00::1/128', None)
    """
    text = str(text)
    try:
        if "/" in text:
            ipaddress.ip_network(text, strict=False)
            return text
        address = ipaddress.ip_address(text)
        return f"{address}/{address.max_prefixlen}"
    except ValueError:
        return None


def _normalise_coordinator(spec: dict) -> None:
    if isinstance(spec.get("hijackCIDR"), list):
        spec["hijackCIDR"] = [_as_cidr(c) or c for c in spec["hijackCIDR"]]
    if isinstance(spec.get("policyRoutes"), list):
        spec["policyRoutes"] = [
            {**r, "dst": _as_cidr(r.get("dst")) or r.get("dst")} if isinstance(r, Mapping) else r
            for r in spec["policyRoutes"]
        ]


COORDINATOR_DEFAULTS = {"mode": "auto", "tunePodRoutes": True, "hostRuleTable": 500, "podRPFilter": 0,
                        "txQueueLen": 0, "vethLinkAddress": "", "vethMTU": 1500}


def coordinator_mutate(obj: Mapping) -> dict:
    """SpiderCoordinator mutating webhook: defaults, normalised CIDRs, finalizer; a missing podCIDRType is refused.

    >>> out = coordinator_mutate({"metadata": {"name": "default"}, "spec": {"podCIDRType": "cluster",
    ...     "hijackCIDR": ["169.254.25.10"]}})
    >>> out["spec"]["mode"], out["spec"]["vethMTU"], out["spec"]["hijackCIDR"], out["metadata"]["finalizers"]
    ('auto', 1500, ['169.254.25.10/32'], ['spiderpool.spidernet.io'])
    """
    out = copy.deepcopy(dict(obj))
    if is_terminating(out):
        return out
    spec = out.setdefault("spec", {})
    if not spec.get("podCIDRType"):
        raise InvalidInput("spec.podCIDRType is required (auto, cluster, calico, cilium or none)")
    for key, value in COORDINATOR_DEFAULTS.items():
        spec.setdefault(key, value)
    _normalise_coordinator(spec)
    m = out.setdefault("metadata", {})
    if FINALIZER not in (m.get("finalizers") or []):
        m["finalizers"] = [*(m.get("finalizers") or []), FINALIZER]
    return out


def coordinator_problems(spec: Mapping, *, prefix: str = "spec", pod_cidr_required: bool = True) -> list[str]:
    """Every broken SpiderCoordinator rule (spec §1.7), as messages naming the field.

    >>> coordinator_problems({"podCIDRType": "cluster", "podMACPrefix": "01:02", "vethMTU": 0})
    ['spec.podMACPrefix: the first byte must be even (a unicast MAC), got 01:02', 'spec.vethMTU: must be at least 1']
    """
    problems: list[str] = []
    mode = spec.get("mode")
    if mode is not None and mode not in COORDINATOR_MODES:
        problems.append(f"{prefix}.mode: must be one of {', '.join(COORDINATOR_MODES[:4])}, got {mode!r}")
    pod_cidr_type = spec.get("podCIDRType")
    if pod_cidr_type is None and pod_cidr_required:
        problems.append(f"{prefix}.podCIDRType: required")
    elif pod_cidr_type is not None and pod_cidr_type not in POD_CIDR_TYPES:
        problems.append(f"{prefix}.podCIDRType: must be one of {', '.join(POD_CIDR_TYPES)}, got {pod_cidr_type!r}")
    for i, cidr in enumerate(spec.get("hijackCIDR") or []):
        if _as_cidr(cidr) is None:
            problems.append(f"{prefix}.hijackCIDR[{i}]: {cidr!r} is not an IP address or CIDR")
    for i, route in enumerate(spec.get("policyRoutes") or []):
        problems.extend(_route_problems(route, f"{prefix}.policyRoutes[{i}]"))
    mac = spec.get("podMACPrefix")
    if mac:
        if not _MAC_PREFIX.match(str(mac)):
            problems.append(f"{prefix}.podMACPrefix: use two hex bytes such as 0a:1b, got {mac!r}")
        elif int(str(mac)[:2], 16) & 1:
            problems.append(f"{prefix}.podMACPrefix: the first byte must be even (a unicast MAC), got {mac}")
    table = spec.get("hostRuleTable")
    if table is not None and not (isinstance(table, int) and not isinstance(table, bool) and 1 <= table < 2**31):
        problems.append(f"{prefix}.hostRuleTable: must be a routing table number from 1 to 2147483647, got {table!r}")
    tune = spec.get("tunePodRoutes")
    if tune is not None and not isinstance(tune, bool):
        problems.append(f"{prefix}.tunePodRoutes: must be true or false, got {tune!r}")
    rp_filter = spec.get("podRPFilter")
    if rp_filter is not None and not (isinstance(rp_filter, int) and rp_filter <= 2):
        problems.append(f"{prefix}.podRPFilter: must be 0, 1, 2 or negative (leave unchanged), got {rp_filter!r}")
    tx = spec.get("txQueueLen")
    if tx is not None and not (isinstance(tx, int) and tx >= 0):
        problems.append(f"{prefix}.txQueueLen: must be 0 or more, got {tx!r}")
    link = spec.get("vethLinkAddress")
    if link:
        try:
            ipaddress.ip_address(str(link))
        except ValueError:
            problems.append(f"{prefix}.vethLinkAddress: {link!r} is not an IP address")
    mtu = spec.get("vethMTU")
    if mtu is not None and not (isinstance(mtu, int) and mtu >= 1):
        problems.append(f"{prefix}.vethMTU: must be at least 1")
    return problems


def _route_problems(route: Any, where: str) -> list[str]:
    if not isinstance(route, Mapping):
        return [f"{where}: must be an object with dst and gw"]
    dst, gw = _as_cidr(route.get("dst")), route.get("gw")
    try:
        gateway = ipaddress.ip_address(str(gw))
    except ValueError:
        return [f"{where}.gw: {gw!r} is not an IP address"]
    if dst is None:
        return [f"{where}.dst: {route.get('dst')!r} is not an IP address or CIDR"]
    if ipaddress.ip_network(dst, strict=False).version != gateway.version:
        return [f"{where}: dst {dst} and gw {gw} are of different IP families"]
    return []


# ------------------------------------------------------------------------------------------- SpiderMultusConfig

_SUB_DEFAULTS: dict[str, dict] = {
    "macvlan": {"vlanID": 0, "mtu": 0, "rdmaResourceName": ""},
    "ipvlan": {"vlanID": 0, "mtu": 0, "rdmaResourceName": ""},
    "vlan": {"mtu": 0, "rdmaResourceName": ""},
    "sriov": {"vlanID": 0, "mtu": 0, "minTxRateMbps": 0, "maxTxRateMbps": 0, "rdmaIsolation": False,
              "resourceName": ""},
    "ibsriov": {"pkey": "", "enableIbKubernetes": False, "rdmaIsolation": True, "linkState": "enable"},
    "ovs": {"vlan": 0},
    "ipoib": {},
}
SMC_COORDINATOR_DEFAULTS = {"mode": "auto", "hijackCIDR": [], "policyRoutes": [], "vethLinkAddress": "",
                            "podMACPrefix": "", "podDefaultRouteNIC": "", "podRPFilter": 0, "tunePodRoutes": True}


def multusconfig_mutate(obj: Mapping) -> dict:
    """SpiderMultusConfig mutating webhook (spec §10.1) on a copy.

    >>> spec = multusconfig_mutate({"metadata": {}, "spec": {"cniType": "macvlan", "macvlan": {"master": ["eth0"]}}})
    >>> spec = spec["spec"]
    >>> spec["macvlan"]["vlanID"], spec["macvlan"]["ippools"], spec["enableCoordinator"], spec["coordinator"]["mode"]
    (0, {'ipv4': [], 'ipv6': []}, True, 'auto')
    >>> multusconfig_mutate({"metadata": {}, "spec": {}})["spec"]
    {'cniType': 'custom', 'customCNI': '', 'coordinator': None, 'enableCoordinator': False, 'chainCNIJsonData': []}
    """
    out = copy.deepcopy(dict(obj))
    if is_terminating(out):
        return out
    spec = out.setdefault("spec", {})
    cni_type = spec.get("cniType") or "custom"
    spec["cniType"] = cni_type
    sub_key = SUBCONFIG.get(cni_type)
    if sub_key and isinstance(spec.get(sub_key), dict):
        sub = spec[sub_key]
        for key, value in _SUB_DEFAULTS.get(sub_key, {}).items():
            sub.setdefault(key, value)
        if cni_type == "vlan":
            sub.setdefault("vlanMode", "manual")
            if sub["vlanMode"] == "manual":
                sub.setdefault("vlanID", 0)
        if isinstance(sub.get("bond"), dict):
            sub["bond"].setdefault("options", "")
        if cni_type != "ovs" or "ippools" in sub:
            pools = sub.get("ippools") if isinstance(sub.get("ippools"), dict) else {}
            pools.setdefault("ipv4", [])
            pools.setdefault("ipv6", [])
            if cni_type == "sriov":
                pools.setdefault("matchMasterSubnet", False)
            sub["ippools"] = pools
    if cni_type == "custom":
        spec.setdefault("customCNI", "")
        spec["coordinator"] = None
        spec["enableCoordinator"] = False
    else:
        spec.setdefault("enableCoordinator", True)
        block = spec.get("coordinator")
        if not isinstance(block, dict):
            spec["coordinator"] = dict(SMC_COORDINATOR_DEFAULTS)
        else:
            for key, value in {**SMC_COORDINATOR_DEFAULTS, "tunePodRoutes": False, "txQueueLen": 0}.items():
                block.setdefault(key, copy.deepcopy(value))
            _normalise_coordinator(block)
    if spec.get("chainCNIJsonData") is None:
        spec["chainCNIJsonData"] = []
    m = out.setdefault("metadata", {})
    annotations = m.get("annotations") or {}
    injected = {k: annotations[k] for k in INJECT_KEYS if k in annotations}
    if injected:
        m["labels"] = {**(m.get("labels") or {}), **injected}
    return out


def multusconfig_problems(obj: Mapping, old: Mapping | None = None) -> list[str]:
    """Every broken SpiderMultusConfig rule of spec §10.2 that can be checked on the object alone.

    >>> multusconfig_problems({"metadata": {"name": "m"}, "spec": {"cniType": "macvlan", "macvlan": {"master": []},
    ...     "ipvlan": {"master": ["eth0"]}}})
    ['spec.ipvlan: only the macvlan sub-config may be set for cniType macvlan', 'spec.macvlan.master: at least one \
master interface is required']
    """
    problems: list[str] = []
    m, spec = meta(obj), obj.get("spec") or {}
    annotations = m.get("annotations") or {}
    old_annotations = meta(old).get("annotations") or {} if old else {}
    cr_name = annotations.get(ANNO_CR_NAME)
    if old is not None and cr_name != old_annotations.get(ANNO_CR_NAME):
        problems.append(f"metadata.annotations[{ANNO_CR_NAME}]: cannot be added or changed after creation")
    if cr_name is not None and not (_DNS1123_SUBDOMAIN.match(cr_name) and len(cr_name) <= 253):
        problems.append(f"metadata.annotations[{ANNO_CR_NAME}]: {cr_name!r} is not a DNS-1123 subdomain")
    version = annotations.get(ANNO_CNI_VERSION)
    if version is not None and version not in CNI_VERSIONS:
        problems.append(f"metadata.annotations[{ANNO_CNI_VERSION}]: must be one of {', '.join(CNI_VERSIONS)}")
    cni_type = spec.get("cniType") or "custom"
    if cni_type not in CNI_TYPES:
        return [*problems, f"spec.cniType: must be one of {', '.join(CNI_TYPES)}, got {cni_type!r}"]
    wanted = SUBCONFIG.get(cni_type)
    for other in SUBCONFIG.values():
        if other != wanted and spec.get(other) is not None:
            problems.append(f"spec.{other}: only the {wanted or 'customCNI'} sub-config may be set for cniType "
                            f"{cni_type}")
    sub = spec.get(wanted) if wanted else None
    if wanted and not isinstance(sub, Mapping):
        problems.append(f"spec.{wanted}: required for cniType {cni_type}")
        sub = None
    if sub is not None:
        problems.extend(_subconfig_problems(cni_type, wanted, sub))
    if cni_type == "custom" and spec.get("customCNI"):
        try:
            json.loads(spec["customCNI"])
        except ValueError:
            problems.append("spec.customCNI: must be valid JSON")
    for key in INJECT_KEYS:
        if key in annotations and cni_type in ("ovs", "custom"):
            problems.append(f"metadata.annotations[{key}]: not supported for cniType {cni_type}")
    if isinstance(spec.get("coordinator"), Mapping):
        problems.extend(coordinator_problems(spec["coordinator"], prefix="spec.coordinator", pod_cidr_required=False))
    for i, entry in enumerate(spec.get("chainCNIJsonData") or []):
        try:
            plugin = json.loads(entry)
        except (TypeError, ValueError):
            plugin = None
        if not isinstance(plugin, dict) or not plugin.get("type"):
            problems.append(f"spec.chainCNIJsonData[{i}]: must be a JSON CNI plugin object with a type")
    return problems


def _vlan_ok(value: Any) -> bool:
    return value is None or (isinstance(value, int) and 0 <= value <= 4094)


def _subconfig_problems(cni_type: str, key: str, sub: Mapping) -> list[str]:
    where = f"spec.{key}"
    problems: list[str] = []
    if not _vlan_ok(sub.get("vlanID")):
        problems.append(f"{where}.vlanID: must be between 0 and 4094")
    mtu = sub.get("mtu")
    if mtu is not None and not (isinstance(mtu, int) and mtu >= 0):
        problems.append(f"{where}.mtu: must be 0 or more")
    if cni_type in ("macvlan", "ipvlan", "vlan"):
        masters = sub.get("master") or []
        if not masters:
            problems.append(f"{where}.master: at least one master interface is required")
        if len(masters) >= 2 and not (sub.get("bond") or {}).get("name"):
            problems.append(f"{where}.bond.name: required with two or more masters")
        if (sub.get("ippools") or {}).get("matchMasterSubnet"):
            problems.append(f"{where}.ippools.matchMasterSubnet: only meaningful for sriov")
    if cni_type == "vlan":
        mode = sub.get("vlanMode") or "manual"
        if mode not in ("manual", "auto"):
            problems.append(f"{where}.vlanMode: must be manual or auto")
        elif mode == "auto" and sub.get("vlanID"):
            problems.append(f"{where}.vlanID: must not be set with vlanMode auto")
    if cni_type == "sriov":
        low, high = sub.get("minTxRateMbps") or 0, sub.get("maxTxRateMbps") or 0
        if high and low > high:
            problems.append(f"{where}: minTxRateMbps ({low}) must not exceed maxTxRateMbps ({high})")
    if cni_type in ("sriov", "ib-sriov") and not sub.get("resourceName"):
        problems.append(f"{where}.resourceName: required")
    if cni_type == "ipoib" and not sub.get("master"):
        problems.append(f"{where}.master: required")
    if cni_type == "ovs":
        if not sub.get("bridge"):
            problems.append(f"{where}.bridge: required")
        if not _vlan_ok(sub.get("vlan")):
            problems.append(f"{where}.vlan: must be between 0 and 4094")
        for i, trunk in enumerate(sub.get("trunk") or []):
            low, high = trunk.get("minID"), trunk.get("maxID")
            if (low is not None and low > 4094) or (high is not None and high > 4094):
                problems.append(f"{where}.trunk[{i}]: minID and maxID must be at most 4094")
            elif low is not None and high is not None and high < low:
                problems.append(f"{where}.trunk[{i}]: maxID must not be below minID")
            if trunk.get("id") is not None and trunk["id"] > 4096:
                problems.append(f"{where}.trunk[{i}].id: must be at most 4096")
    return problems
