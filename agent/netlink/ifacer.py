"""ifacer: make sure the parent device of a macvlan/ipvlan/vlan NIC exists on the node (spec §9).

ifacer runs first in a conflist, in the host netns: it creates a VLAN sub-interface (``<parent>.<id>``) and/or a
bond of several NICs so the main plugin finds its ``master``. Devices are never removed (DEL and CHECK are
no-ops upstream): they are shared by every pod on that network and vanish only with a reboot.

The work is split in two so it can be tested without kernel support for 802.1Q or bonding:

* pure: :func:`parse_ifacer_config`, :func:`parse_bond_options`, :func:`bond_link_attrs` and
  :func:`plan_ifacer`, which turns the config and the node's current links into a list of steps;
* execution: :func:`ifacer_add` reads the links with pyroute2, plans, and runs each step, registering its undo
  on an ``ExitStack`` so a half-built bond or VLAN is removed again when a later step fails.

Re-running is idempotent: existing devices are reused (brought up if down), never re-created.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import socket
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError as PyNetlinkError

from agent.netlink.errors import IfacerError
from agent.netlink.netns_thread import run_in_netns
from agent.netlink.wire import NETLINK_ROUTE

log = logging.getLogger(__name__)

DEFAULT_BOND_NAME = "sp_bond0"
IFNAMSIZ = 15

# Spec §9: the bond options ifacer understands, in the spelling of the config string.
KNOWN_BOND_OPTIONS = (
    "active_slave", "ad_actor_sys_prio", "ad_actor_system", "ad_select", "ad_user_port_key", "all_slaves_active",
    "arp_interval", "arp_ip_target", "arp_validate", "arp_all_targets", "downdelay", "fail_over_mac", "lacp_rate",
    "miimon", "min_links", "packets_per_slave", "primary", "primary_reselect", "tlb_dynamic_lb", "up_delay",
    "use_carrier", "xmit_hash_policy", "lp_interval", "resend_igmp", "peer_notif_delay",
)

# Option -> pyroute2 keyword (IFLA_BOND_*). Options that name an interface are resolved to an ifindex.
_BOND_ATTR = {
    "active_slave": "bond_active_slave", "ad_actor_sys_prio": "bond_ad_actor_sys_prio",
    "ad_actor_system": "bond_ad_actor_system", "ad_select": "bond_ad_select",
    "ad_user_port_key": "bond_ad_user_port_key", "all_slaves_active": "bond_all_slaves_active",
    "arp_interval": "bond_arp_interval", "arp_ip_target": "bond_arp_ip_target",
    "arp_validate": "bond_arp_validate", "arp_all_targets": "bond_arp_all_targets",
    "downdelay": "bond_downdelay", "fail_over_mac": "bond_fail_over_mac", "lacp_rate": "bond_ad_lacp_rate",
    "miimon": "bond_miimon", "min_links": "bond_min_links", "packets_per_slave": "bond_packets_per_slave",
    "primary": "bond_primary", "primary_reselect": "bond_primary_reselect",
    "tlb_dynamic_lb": "bond_tlb_dynamic_lb", "up_delay": "bond_updelay", "use_carrier": "bond_use_carrier",
    "xmit_hash_policy": "bond_xmit_hash_policy", "lp_interval": "bond_lp_interval",
    "resend_igmp": "bond_resend_igmp",
}
# Named values the kernel's bonding driver accepts in sysfs, as the numbers netlink wants.
_BOND_ENUMS = {
    "ad_select": {"stable": 0, "bandwidth": 1, "count": 2},
    "arp_validate": {"none": 0, "active": 1, "backup": 2, "all": 3, "filter": 4, "filter_active": 5,
                     "filter_backup": 6},
    "arp_all_targets": {"any": 0, "all": 1},
    "fail_over_mac": {"none": 0, "active": 1, "follow": 2},
    "lacp_rate": {"slow": 0, "fast": 1},
    "primary_reselect": {"always": 0, "better": 1, "failure": 2},
    "xmit_hash_policy": {"layer2": 0, "layer3+4": 1, "layer2+3": 2, "encap2+3": 3, "encap3+4": 4,
                         "vlan+srcmac": 5},
}
_INTERFACE_OPTIONS = {"active_slave", "primary"}


# --- configuration ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BondConfig:
    """The ``bond`` block: name, mode 0..6 and the raw options string."""

    name: str = DEFAULT_BOND_NAME
    mode: int = 0
    options: str = ""


@dataclass(frozen=True)
class IfacerConfig:
    """Validated ifacer configuration."""

    interfaces: tuple[str, ...]
    vlan_id: int = 0
    bond: BondConfig | None = None


def _check_ifname(name: object, field: str) -> str:
    if not isinstance(name, str) or not name or len(name) > IFNAMSIZ or "/" in name or " " in name:
        raise ValueError(f"{field}: {name!r} is not a valid interface name (1-{IFNAMSIZ} characters)")
    return name


def parse_ifacer_config(conf: dict) -> IfacerConfig:
    """Validate the ifacer entry of a conflist (``interfaces`` ≥1, ``vlanID`` 0..4094, bond ``mode`` 0..6).

    >>> cfg = parse_ifacer_config({"type": "ifacer", "interfaces": ["ens1", "ens2"], "vlanID": 100,
    ...                            "bond": {"mode": 1, "options": "miimon=100"}})
    >>> cfg.interfaces, cfg.vlan_id, cfg.bond
    (('ens1', 'ens2'), 100, BondConfig(name='sp_bond0', mode=1, options='miimon=100'))
    """
    if not isinstance(conf, dict):
        raise ValueError("ifacer config must be a JSON object")
    interfaces = conf.get("interfaces")
    if not isinstance(interfaces, list) or not interfaces:
        raise ValueError("ifacer: interfaces must be a non-empty list of interface names")
    names = tuple(_check_ifname(name, "interfaces") for name in interfaces)
    if len(set(names)) != len(names):
        raise ValueError(f"ifacer: interfaces {list(names)} lists an interface twice")
    vlan_id = conf.get("vlanID", 0) or 0
    if isinstance(vlan_id, bool) or not isinstance(vlan_id, int) or not 0 <= vlan_id <= 4094:
        raise ValueError(f"ifacer: vlanID must be an integer in 0..4094, got {vlan_id!r}")
    bond = None
    raw_bond = conf.get("bond")
    if raw_bond is not None:
        if not isinstance(raw_bond, dict):
            raise ValueError("ifacer: bond must be an object {name, mode, options}")
        mode = raw_bond.get("mode", 0)
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 6:
            raise ValueError(f"ifacer: bond mode must be an integer in 0..6, got {mode!r}")
        options = raw_bond.get("options") or ""
        if not isinstance(options, str):
            raise ValueError(f"ifacer: bond options must be a string 'k1=v1;k2=v2', got {options!r}")
        name = _check_ifname(raw_bond.get("name") or DEFAULT_BOND_NAME, "bond.name")
        bond = BondConfig(name=name, mode=mode, options=options)
    return IfacerConfig(interfaces=names, vlan_id=vlan_id, bond=bond)


def parse_bond_options(options: str) -> dict[str, int | str | list[str]]:
    """Parse ``k1=v1;k2=v2`` into known options; malformed pairs and unknown keys are skipped (logged).

    Numeric strings become integers; ``arp_ip_target`` is a JSON list in brackets (a bare comma list is accepted).

    >>> parse_bond_options('miimon=100; xmit_hash_policy=layer3+4;bogus;=1;nope=2;arp_ip_target=["10.0.0.1"]')
    {'miimon': 100, 'xmit_hash_policy': 'layer3+4', 'arp_ip_target': ['10.0.0.1']}
    """
    parsed: dict[str, int | str | list[str]] = {}
    for pair in (options or "").split(";"):
        pair = pair.strip()
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            log.warning("bond option %r is malformed (want key=value), skipped", pair)
            continue
        if key not in KNOWN_BOND_OPTIONS:
            log.warning("bond option %r is not supported, skipped", key)
            continue
        if key == "arp_ip_target":
            parsed[key] = _parse_target_list(value)
        elif value.lstrip("-").isdigit():
            parsed[key] = int(value)
        else:
            parsed[key] = value
    return parsed


def _parse_target_list(value: str) -> list[str]:
    try:
        targets = json.loads(value)
    except ValueError:
        targets = [item.strip() for item in value.strip("[]").split(",") if item.strip()]
    if not isinstance(targets, list):
        targets = [targets]
    return [str(item) for item in targets]


def bond_link_attrs(options: dict[str, int | str | list[str]], index_of: Callable[[str], int]) -> dict:
    """Translate parsed options into pyroute2 ``link()`` keywords; raise ``IfacerError`` on a bad value.

    ``index_of`` resolves interface names (``primary``, ``active_slave``) to ifindexes. ``peer_notif_delay`` has
    no attribute in pyroute2 0.9.7 and is skipped with a warning.

    >>> bond_link_attrs({"miimon": 100, "xmit_hash_policy": "layer3+4", "primary": "ens1"}, {"ens1": 7}.__getitem__)
    {'bond_miimon': 100, 'bond_xmit_hash_policy': 1, 'bond_primary': 7}
    """
    attrs: dict = {}
    for key, value in options.items():
        if key not in _BOND_ATTR:
            log.warning("bond option %s cannot be set through netlink here, skipped", key)
            continue
        if key in _INTERFACE_OPTIONS:
            try:
                attrs[_BOND_ATTR[key]] = index_of(str(value))
            except (KeyError, LookupError):
                raise IfacerError(f"bond option {key}={value}: no such interface") from None
        elif key == "arp_ip_target":
            try:
                attrs[_BOND_ATTR[key]] = [str(ipaddress.IPv4Address(t)) for t in value]  # type: ignore[union-attr]
            except ValueError as exc:
                raise IfacerError(f"bond option arp_ip_target={value}: {exc}") from None
        elif key == "ad_actor_system":  # pyroute2 sends this attribute's bytes as they are
            mac = str(value).replace("-", ":").split(":")
            if len(mac) != 6 or not all(len(part) == 2 for part in mac):
                raise IfacerError(f"bond option ad_actor_system={value!r} is not a MAC address")
            try:
                attrs[_BOND_ATTR[key]] = bytes.fromhex("".join(mac))
            except ValueError:
                raise IfacerError(f"bond option ad_actor_system={value!r} is not a MAC address") from None
        elif isinstance(value, int):
            attrs[_BOND_ATTR[key]] = value
        elif isinstance(value, str) and value in _BOND_ENUMS.get(key, {}):
            attrs[_BOND_ATTR[key]] = _BOND_ENUMS[key][value]
        else:
            raise IfacerError(f"bond option {key}={value!r} is not a number or a known name")
    return attrs


# --- planning (pure) -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkInfo:
    """What planning needs to know about an existing link."""

    name: str
    kind: str = ""
    up: bool = False
    vlan_id: int | None = None
    parent: str | None = None
    master: str | None = None


@dataclass(frozen=True)
class SetUp:
    """``ip link set <name> up``."""

    name: str


@dataclass(frozen=True)
class SetDown:
    """``ip link set <name> down`` (a NIC must be down to be enslaved)."""

    name: str


@dataclass(frozen=True)
class CreateVlan:
    """``ip link add link <parent> name <name> type vlan id <vlan_id>``."""

    name: str
    parent: str
    vlan_id: int


@dataclass(frozen=True)
class CreateBond:
    """``ip link add <name> type bond mode <mode> <options>``; options as ``(key, value)`` pairs."""

    name: str
    mode: int
    options: tuple[tuple[str, int | str | tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Enslave:
    """``ip link set <slave> master <master>``."""

    slave: str
    master: str


@dataclass(frozen=True)
class SetBondOptions:
    """Options that only make sense once slaves are enslaved (``active_slave``)."""

    name: str
    options: tuple[tuple[str, int | str | tuple[str, ...]], ...]


Step = SetUp | SetDown | CreateVlan | CreateBond | Enslave | SetBondOptions


def _freeze(options: dict) -> tuple:
    return tuple((key, tuple(value) if isinstance(value, list) else value) for key, value in options.items())


def _plan_vlan(parent: str, parent_up: bool, vlan_id: int, links: dict[str, LinkInfo], steps: list[Step]) -> None:
    name = f"{parent}.{vlan_id}"
    if len(name) > IFNAMSIZ:
        raise IfacerError(f"VLAN interface name {name} is longer than {IFNAMSIZ} characters")
    if not parent_up:
        steps.append(SetUp(parent))
    existing = links.get(name)
    if existing is not None:
        if existing.kind != "vlan" or existing.vlan_id != vlan_id or existing.parent != parent:
            raise IfacerError(f"{name} exists but is not VLAN {vlan_id} on {parent}",
                              details={"interface": name, "kind": existing.kind, "vlanID": existing.vlan_id})
        if not existing.up:
            steps.append(SetUp(name))
        return
    others = sorted(link.name for link in links.values() if link.kind == "vlan" and link.vlan_id == vlan_id)
    if others:
        raise IfacerError(
            f"cannot have multiple different vlan interfaces with the same vlanId {vlan_id}: {', '.join(others)} "
            f"already exists", details={"vlanID": vlan_id, "existing": others})
    steps.append(CreateVlan(name=name, parent=parent, vlan_id=vlan_id))
    steps.append(SetUp(name))


def plan_ifacer(config: IfacerConfig, links: Iterable[LinkInfo]) -> list[Step]:
    """Spec §9 as a list of steps for the node's current ``links``; raise ``IfacerError`` when it must refuse.

    >>> plan_ifacer(IfacerConfig(("ens1",), 100), [LinkInfo("ens1", "veth", up=False)])
    [SetUp(name='ens1'), CreateVlan(name='ens1.100', parent='ens1', vlan_id=100), SetUp(name='ens1.100')]
    """
    by_name = {link.name: link for link in links}
    steps: list[Step] = []
    if len(config.interfaces) == 1:
        if config.vlan_id == 0:
            return steps
        parent = by_name.get(config.interfaces[0])
        if parent is None:
            raise IfacerError(f"parent interface {config.interfaces[0]} does not exist",
                              details={"interface": config.interfaces[0]})
        _plan_vlan(parent.name, parent.up, config.vlan_id, by_name, steps)
        return steps

    bond = config.bond
    if bond is None:
        return steps
    existing = by_name.get(bond.name)
    if existing is not None:
        if existing.kind != "bond":
            raise IfacerError(f"{bond.name} exists but is a {existing.kind or 'plain'} device, not a bond",
                              details={"interface": bond.name, "kind": existing.kind})
        if not existing.up:
            steps.append(SetUp(bond.name))
    else:
        missing = [name for name in config.interfaces if name not in by_name]
        if missing:
            raise IfacerError(f"bond slaves {missing} do not exist", details={"missing": missing})
        options = parse_bond_options(bond.options)
        late = {key: options.pop(key) for key in list(options) if key == "active_slave"}
        steps.append(CreateBond(name=bond.name, mode=bond.mode, options=_freeze(options)))
        for slave in config.interfaces:
            steps += [SetDown(slave), Enslave(slave=slave, master=bond.name), SetUp(slave)]
        steps.append(SetUp(bond.name))
        if late:
            steps.append(SetBondOptions(name=bond.name, options=_freeze(late)))
    if config.vlan_id > 0:
        _plan_vlan(bond.name, True, config.vlan_id, by_name, steps)
    return steps


# --- execution -------------------------------------------------------------------------------------------


_MISSING = {errno.ENOENT, errno.ESRCH, errno.ENODEV}


def _iproute(netns_path: str | None) -> IPRoute:
    """pyroute2's ``IPRoute`` in ``netns_path`` (``None``: the agent's own), its socket opened by a thread that entered
    the namespace (pyroute2's own ``netns=`` forks a process per socket). Bond and VLAN creation take many options
    that pyroute2 encodes well, and run once per NIC setup, not per pod, so they stay on pyroute2."""
    if netns_path is None:
        return IPRoute()
    sock = run_in_netns(netns_path, socket.socket, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
    return IPRoute(fileno=sock.detach())


def _ignore_missing(func: Callable[..., object], *args: object, **kwargs: object) -> None:
    try:
        func(*args, **kwargs)
    except PyNetlinkError as exc:
        if exc.code not in _MISSING:
            raise


def node_links(ipr: IPRoute) -> list[LinkInfo]:
    """The links of the namespace behind ``ipr`` as planning sees them (kind, state, VLAN id, parent, master)."""
    messages = list(ipr.get_links())
    names = {msg["index"]: msg.get_attr("IFLA_IFNAME") for msg in messages}
    infos = []
    for msg in messages:
        info = msg.get_attr("IFLA_LINKINFO")
        kind = (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or ""
        data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
        vlan_id = data.get_attr("IFLA_VLAN_ID") if kind == "vlan" and data is not None else None
        infos.append(LinkInfo(
            name=msg.get_attr("IFLA_IFNAME"), kind=kind, up=bool(msg["flags"] & 1), vlan_id=vlan_id,
            parent=names.get(msg.get_attr("IFLA_LINK") or 0), master=names.get(msg.get_attr("IFLA_MASTER") or 0)))
    return infos


def _index(ipr: IPRoute, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise IfacerError(f"interface {name} does not exist", details={"interface": name})
    return found[0]


def step_request(step: Step, index_of: Callable[[str], int]) -> tuple[str, dict]:
    """The ``IPRoute.link()`` call carrying out ``step``: ``(command, keyword arguments)``.

    Names are resolved with ``index_of`` at execution time, so a step may refer to a device made by an earlier one.

    >>> step_request(CreateVlan("ens1.100", "ens1", 100), {"ens1": 2}.__getitem__)
    ('add', {'ifname': 'ens1.100', 'kind': 'vlan', 'link': 2, 'vlan_id': 100})
    """
    if isinstance(step, SetUp | SetDown):
        return "set", {"index": index_of(step.name), "state": "up" if isinstance(step, SetUp) else "down"}
    if isinstance(step, CreateVlan):
        return "add", {"ifname": step.name, "kind": "vlan", "link": index_of(step.parent), "vlan_id": step.vlan_id}
    if isinstance(step, CreateBond):
        return "add", {"ifname": step.name, "kind": "bond", "bond_mode": step.mode,
                       **bond_link_attrs(dict(step.options), index_of)}
    if isinstance(step, Enslave):
        return "set", {"index": index_of(step.slave), "master": index_of(step.master)}
    return "set", {"index": index_of(step.name), "kind": "bond", **bond_link_attrs(dict(step.options), index_of)}


def step_undo(step: Step, index_of: Callable[[str], int]) -> tuple[str, dict] | None:
    """The ``IPRoute.link()`` call reverting ``step`` after a later failure (``None``: nothing to revert).

    Bringing a device up is not reverted (ifacer's job is to have parents up); created devices are deleted,
    enslaved NICs released and NICs taken down for enslaving brought back up.
    """
    if isinstance(step, SetDown):
        return "set", {"index": index_of(step.name), "state": "up"}
    if isinstance(step, CreateVlan | CreateBond):
        return "del", {"ifname": step.name}
    if isinstance(step, Enslave):
        return "set", {"index": index_of(step.slave), "master": 0}
    return None


def _execute(ipr: IPRoute, step: Step, undo: ExitStack) -> None:
    def index_of(name: str) -> int:
        return _index(ipr, name)

    command, kwargs = step_request(step, index_of)
    ipr.link(command, **kwargs)
    revert = step_undo(step, index_of)
    if revert is not None:
        undo.callback(_ignore_missing, ipr.link, revert[0], **revert[1])


def ifacer_add(*, config: dict | IfacerConfig, netns_path: str | None = None) -> dict:
    """Create/reuse the VLAN and bond devices the config asks for in ``netns_path`` (``None`` = the node).

    Returns the (empty) CNI result ifacer prints, carrying only ``cniVersion`` when the config has one. Raises
    ``ValueError`` for a bad config and :class:`IfacerError` when it must refuse or the kernel fails (after
    undoing what this call created).
    """
    cni_version = config.get("cniVersion") if isinstance(config, dict) else None
    parsed = config if isinstance(config, IfacerConfig) else parse_ifacer_config(config)
    step = None
    try:
        with _iproute(netns_path) as ipr, ExitStack() as undo:
            for step in plan_ifacer(parsed, node_links(ipr)):
                _execute(ipr, step, undo)
            undo.pop_all()
    except PyNetlinkError as exc:
        raise IfacerError(f"ifacer failed to {step_text(step)}: {_errno_text(exc)}",
                          details={"errno": exc.code}) from exc
    return {"cniVersion": cni_version} if cni_version else {}


def step_text(step: Step | None) -> str:
    """What a step does, for an error a person reads in the pod's events.

    >>> step_text(CreateVlan(name="eth2.100", parent="eth2", vlan_id=100))
    'create VLAN eth2.100 (id 100) on eth2'
    """
    if isinstance(step, CreateVlan):
        return f"create VLAN {step.name} (id {step.vlan_id}) on {step.parent}"
    if isinstance(step, CreateBond):
        return f"create bond {step.name} (mode {step.mode})"
    if isinstance(step, Enslave):
        return f"enslave {step.slave} to {step.master}"
    if isinstance(step, SetUp):
        return f"set {step.name} up"
    if isinstance(step, SetDown):
        return f"set {step.name} down"
    return "read the node's links"


def _errno_text(exc: PyNetlinkError) -> str:
    """The kernel's answer, with the likely cause of the common one: a device type the kernel was built without."""
    text = os.strerror(exc.code) if exc.code else str(exc)
    if exc.code == errno.EOPNOTSUPP:
        text += " (the node's kernel lacks the 8021q or bonding module?)"
    return text
