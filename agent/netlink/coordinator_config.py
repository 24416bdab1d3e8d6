"""The coordinator's effective configuration: conflist entry merged over the agent's SpiderCoordinator view.

Spec §8.1: every key present (and non-empty) in the conflist entry wins; otherwise the value the agent serves
from the SpiderCoordinator (spec + status, with the ``ipam.spidernet.io/default-route-nic`` annotation already
applied) is used; otherwise the default. The result is validated once, here, into a frozen dataclass so the
netlink code never re-checks or re-parses anything.

Deliberate differences from upstream, each explained where it is enforced:

* ``mode: disabled`` (the CRD spelling) is accepted as ``disable`` (spec A6).
* ``podMACPrefix`` is checked for what the spec means (two hex bytes, unicast first byte) rather than with
  upstream's regex, which also admits ``,`` and odd (multicast) first bytes the kernel would later refuse.
* ``hostRuleTable`` may not name the kernel's reserved tables (253 default, 254 main, 255 local).
* Legacy keys (``detectGateway``, ``detectIPConflict``, ``hostRPFilter``, ``multusNicPrefix``, ``logOptions``)
  are ignored (spec A18).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MODE_AUTO = "auto"
MODE_UNDERLAY = "underlay"
MODE_OVERLAY = "overlay"
MODE_DISABLE = "disable"
_MODE_NAMES = {
    "auto": MODE_AUTO,
    "underlay": MODE_UNDERLAY,
    "overlay": MODE_OVERLAY,
    "disable": MODE_DISABLE,
    "disabled": MODE_DISABLE,  # the SpiderCoordinator CRD enum spelling (spec A6)
}

DEFAULT_HOST_RULE_TABLE = 500
DEFAULT_VETH_MTU = 1500
DEFAULT_POD_DEFAULT_CNI_NIC = "eth0"
_RESERVED_TABLES = {253, 254, 255}  # default, main, local

_MAC_PREFIX_RE = re.compile(r"^([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})$")


@dataclass(frozen=True)
class PolicyRoute:
    """A static route ``dst via gw`` put into the current NIC's table (``policyRoutes``)."""

    dst: IPNetwork
    gw: IPAddress

    @property
    def version(self) -> int:
        """The IP version (4 or 6) of both ends."""
        return self.dst.version


@dataclass(frozen=True)
class CoordinatorConfig:
    """Validated coordinator settings for one CNI invocation (field meanings in spec §1.7 and §8.1)."""

    mode: str = MODE_AUTO
    overlay_pod_cidr: tuple[IPNetwork, ...] = ()
    service_cidr: tuple[IPNetwork, ...] = ()
    hijack_cidr: tuple[IPNetwork, ...] = ()
    policy_routes: tuple[PolicyRoute, ...] = ()
    pod_mac_prefix: str = ""
    tune_pod_routes: bool = True
    pod_default_route_nic: str = ""
    host_rule_table: int = DEFAULT_HOST_RULE_TABLE
    pod_rp_filter: int = 0
    tx_queue_len: int = 0
    veth_link_address: str = ""
    veth_mtu: int = DEFAULT_VETH_MTU
    pod_default_cni_nic: str = DEFAULT_POD_DEFAULT_CNI_NIC

    @property
    def hijack_routes(self) -> tuple[IPNetwork, ...]:
        """overlayPodCIDR ∪ serviceCIDR ∪ hijackCIDR, in that order, without duplicates (spec §8.3 step 13)."""
        seen: dict[IPNetwork, None] = {}
        for net in (*self.overlay_pod_cidr, *self.service_cidr, *self.hijack_cidr):
            seen.setdefault(net, None)
        return tuple(seen)


def _present(value: Any) -> bool:
    """A conflist value counts as set unless it is missing, ``None``, ``""`` or an empty list/dict."""
    if value is None:
        return False
    return not (isinstance(value, (str, list, tuple, dict)) and len(value) == 0)


def _pick(conflist: dict, agent: dict, conf_key: str, agent_key: str | None = None) -> Any:
    """Return the conflist value if set, else the agent's value (``None`` when neither has one)."""
    value = conflist.get(conf_key)
    if _present(value):
        return value
    return agent.get(agent_key or conf_key)


def _parse_mode(value: Any) -> str:
    if value is None or value == "":
        return MODE_AUTO
    if not isinstance(value, str) or value not in _MODE_NAMES:
        raise ValueError(f"coordinator mode must be one of auto, underlay, overlay, disable(d); got {value!r}")
    return _MODE_NAMES[value]


def parse_cidr(value: Any, field: str) -> IPNetwork:
    """Parse an IP or CIDR into a network; a bare address becomes /32 or /128, host bits are cleared.

    >>> parse_cidr("169.254.0.0/16", "hijackCIDR"), parse_cidr("10.0.0.1", "hijackCIDR")
    (IPv4Network('169.254.0.0/16'), IPv4Network('10.0.0.1/32'))
    >>> parse_cidr("fd00::5/64", "serviceCIDR")
    IPv6Network('fd00::/64')
    """
    if not isinstance(value, str):
        raise ValueError(f"{field}: {value!r} is not an IP or CIDR string")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError as exc:
        raise ValueError(f"{field}: {value!r} is not a valid IP or CIDR ({exc})") from None


def _parse_cidr_list(value: Any, field: str) -> tuple[IPNetwork, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{field} must be a list of CIDRs, got {type(value).__name__}")
    return tuple(parse_cidr(item, field) for item in value)


def _parse_policy_routes(value: Any) -> tuple[PolicyRoute, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"policyRoutes must be a list of {{dst, gw}}, got {type(value).__name__}")
    routes = []
    for item in value:
        if not isinstance(item, dict) or "dst" not in item or "gw" not in item:
            raise ValueError(f"policyRoutes entry {item!r} must be an object with dst and gw")
        dst = parse_cidr(item["dst"], "policyRoutes.dst")
        try:
            gw = ipaddress.ip_address(str(item["gw"]).strip())
        except ValueError:
            raise ValueError(f"policyRoutes.gw: {item['gw']!r} is not a valid IP address") from None
        if dst.version != gw.version:
            raise ValueError(f"policyRoutes entry {item!r}: dst and gw must be the same IP family")
        routes.append(PolicyRoute(dst=dst, gw=gw))
    return tuple(routes)


def parse_mac_prefix(value: Any) -> str:
    """Validate ``podMACPrefix`` (two hex bytes, ``:`` or ``-``; unicast first byte) and return ``xx:yy``.

    The lowest bit of the first byte is the multicast bit; a MAC with it set cannot be given to a NIC.

    >>> parse_mac_prefix(""), parse_mac_prefix("0A-bc")
    ('', '0a:bc')
    >>> parse_mac_prefix("03:00")
    Traceback (most recent call last):
    ...
    ValueError: podMACPrefix '03:00': the first byte must be unicast (lowest bit 0)
    """
    if value is None or value == "":
        return ""
    match = _MAC_PREFIX_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"podMACPrefix {value!r} must be two hex bytes such as 'fa:16' or 'fa-16'")
    first, second = match.group(1).lower(), match.group(2).lower()
    if int(first, 16) & 0x01:
        raise ValueError(f"podMACPrefix {value!r}: the first byte must be unicast (lowest bit 0)")
    return f"{first}:{second}"


def _int_field(value: Any, field: str) -> int:
    # bool is an int subclass; "true" for an integer field is a typo worth reporting.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be an integer, got {value!r}")
    return value


def _parse_rp_filter(value: Any) -> int:
    if value is None:
        return 0
    value = _int_field(value, "podRPFilter")
    if value not in (-1, 0, 1, 2):
        raise ValueError(f"podRPFilter must be -1 (leave unchanged), 0, 1 or 2; got {value}")
    return value


def _parse_host_rule_table(conf_value: Any, agent_value: Any) -> int:
    for value, source in ((conf_value, "conflist"), (agent_value, "agent")):
        if value is None:
            continue
        table = _int_field(value, f"hostRuleTable ({source})")
        if table <= 0:
            continue  # spec: "spec if >0, else 500"
        if table in _RESERVED_TABLES or table >= 2**32:
            raise ValueError(f"hostRuleTable {table} is reserved or out of range (use 1..2^32-1, not 253-255)")
        return table
    return DEFAULT_HOST_RULE_TABLE


def _parse_veth_mtu(conf_value: Any, agent_value: Any) -> int:
    if conf_value is not None:
        mtu = _int_field(conf_value, "vethMTU")
        if mtu <= 0:
            raise ValueError(f"vethMTU must be > 0, got {mtu}")
        return mtu
    if agent_value is not None and _int_field(agent_value, "vethMTU (agent)") > 0:
        return agent_value
    return DEFAULT_VETH_MTU


def _parse_veth_link_address(value: Any) -> str:
    if value is None or value == "":
        return ""
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise ValueError(f"vethLinkAddress {value!r} is not a valid IP address") from None
    if address.version != 4:
        raise ValueError(f"vethLinkAddress {value!r} must be an IPv4 address (it is put on veth0 as a /32)")
    return str(address)


def _parse_bool(value: Any, field: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValueError(f"{field} must be true or false, got {value!r}")
    return value


def _parse_str(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string, got {value!r}")
    return value


def merge(conflist_entry: dict, agent_defaults: dict) -> CoordinatorConfig:
    """Apply spec §8.1 precedence and validation; raise ``ValueError`` naming the bad field.

    ``conflist_entry`` is the coordinator object of the CNI conflist (camelCase keys, ``podDefaultRouteNic``
    spelled with a lower-case ``ic``); ``agent_defaults`` is the agent's ``CoordinatorConfig`` answer
    (``podDefaultRouteNIC``, ``overlayPodCIDR``/``serviceCIDR`` from the SpiderCoordinator status).

    >>> cfg = merge({"type": "coordinator", "mode": "disabled", "vethMTU": 9000},
    ...             {"mode": "auto", "serviceCIDR": ["10.233.0.0/18"], "hostRuleTable": 0, "vethMTU": 1500})
    >>> cfg.mode, cfg.veth_mtu, cfg.host_rule_table, [str(n) for n in cfg.service_cidr]
    ('disable', 9000, 500, ['10.233.0.0/18'])
    """
    if not isinstance(conflist_entry, dict) or not isinstance(agent_defaults, dict):
        raise ValueError("coordinator config and agent defaults must be JSON objects")
    conf, agent = conflist_entry, agent_defaults

    conf_route_nic = conf.get("podDefaultRouteNic", conf.get("podDefaultRouteNIC"))
    route_nic = conf_route_nic if _present(conf_route_nic) else agent.get("podDefaultRouteNIC")

    tune = conf.get("tunePodRoutes")
    if tune is None:
        tune = agent.get("tunePodRoutes")
    tx_queue_len = _int_field(_pick(conf, agent, "txQueueLen") or 0, "txQueueLen")
    if tx_queue_len < 0:
        raise ValueError(f"txQueueLen must be >= 0, got {tx_queue_len}")
    rp_filter = conf.get("podRPFilter")
    if rp_filter is None:
        rp_filter = agent.get("podRPFilter")

    return CoordinatorConfig(
        mode=_parse_mode(_pick(conf, agent, "mode")),
        overlay_pod_cidr=_parse_cidr_list(_pick(conf, agent, "overlayPodCIDR"), "overlayPodCIDR"),
        service_cidr=_parse_cidr_list(_pick(conf, agent, "serviceCIDR"), "serviceCIDR"),
        hijack_cidr=_parse_cidr_list(_pick(conf, agent, "hijackCIDR"), "hijackCIDR"),
        policy_routes=_parse_policy_routes(_pick(conf, agent, "policyRoutes")),
        pod_mac_prefix=parse_mac_prefix(_pick(conf, agent, "podMACPrefix")),
        tune_pod_routes=_parse_bool(tune, "tunePodRoutes", default=True),
        pod_default_route_nic=_parse_str(route_nic, "podDefaultRouteNic"),
        host_rule_table=_parse_host_rule_table(conf.get("hostRuleTable"), agent.get("hostRuleTable")),
        pod_rp_filter=_parse_rp_filter(rp_filter),
        tx_queue_len=tx_queue_len,
        veth_link_address=_parse_veth_link_address(_pick(conf, agent, "vethLinkAddress")),
        veth_mtu=_parse_veth_mtu(conf.get("vethMTU"), agent.get("vethMTU")),
        pod_default_cni_nic=_parse_str(conf.get("podDefaultCniNic"), "podDefaultCniNic")
        or DEFAULT_POD_DEFAULT_CNI_NIC,
    )
