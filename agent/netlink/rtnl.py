"""Small, typed helpers over rtnetlink shared by the coordinator and detection.

Why a layer at all: netlink answers differ in shape between IPv4 and IPv6 and between plain and multipath routes,
and the kernel's defaults are not always ours. Converting answers into frozen dataclasses once makes "is the route
already there?" a plain equality test, which is what idempotent ADD needs. ``ensure_*`` helpers make a change only
when it is missing and then register its undo on the caller's ``ExitStack``, so a failed ADD unwinds exactly what it
changed and a repeated ADD changes (and would undo) nothing. The messages go over :mod:`agent.netlink.wire`.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from agent.netlink import wire
from agent.netlink.netns_thread import run_in_netns
from agent.netlink.wire import NetlinkError, Rtnl, is_missing

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAIN_TABLE = 254
SCOPE_UNIVERSE = 0
SCOPE_LINK = 253
NUD_PERMANENT = 0x80
IFF_UP = 0x1
IFF_BROADCAST = 0x2
FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}
VERSION = {socket.AF_INET: 4, socket.AF_INET6: 6}
RTN_UNICAST = 1
RTPROT_BOOT = 3
FR_ACT_TO_TBL = 1
RT_TABLE_UNSPEC = 0

__all__ = ["NetlinkError", "Rtnl", "is_missing"]


def iproute(netns_path: str | None) -> Rtnl:
    """An rtnetlink socket bound to ``netns_path`` (``None`` = the agent's own namespace); a context manager.

    The socket is created by a short-lived thread that entered the namespace (a socket belongs to the namespace of
    the task that created it, for life). A missing namespace raises ``FileNotFoundError`` (it is never created as
    a side effect).
    """
    return Rtnl(run_in_netns(netns_path, socket.socket, socket.AF_NETLINK, socket.SOCK_DGRAM, wire.NETLINK_ROUTE))


def ignore_missing(func: Callable[..., object], *args: object, **kwargs: object) -> None:
    """Call ``func`` and swallow "already gone" errors: deleting something absent is success."""
    try:
        func(*args, **kwargs)
    except NetlinkError as exc:
        if not is_missing(exc):
            raise


def max_prefix(ip: IPAddress) -> IPNetwork:
    """The host route network of an address: /32 or /128.

    >>> str(max_prefix(ipaddress.ip_address("10.0.0.1"))), str(max_prefix(ipaddress.ip_address("fd00::1")))
    ('10.0.0.1/32', 'fd00::1/128')
    """
    return ipaddress.ip_network(ip)


def _header_table(table: int) -> int:
    """The 8-bit table field of rtmsg/fib_rule_hdr: the table itself when it fits, else UNSPEC (RTA_TABLE says)."""
    return table if table < 256 else RT_TABLE_UNSPEC


# --- links and addresses ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """What the coordinator needs to know about one interface."""

    index: int
    name: str
    kind: str
    flags: int
    mac: str
    mtu: int
    txqlen: int
    peer_index: int  # IFLA_LINK: veth peer / macvlan parent index (0 if none)
    master: int

    @property
    def up(self) -> bool:
        """Administratively up."""
        return bool(self.flags & IFF_UP)


def _link(msg: wire.Message) -> Link:
    _, _, index, flags, _ = msg.header
    info = msg.attrs.get(wire.IFLA_LINKINFO)
    kind = wire.parse_attrs(info).get(wire.IFLA_INFO_KIND, b"").split(b"\0", 1)[0].decode() if info else ""
    return Link(
        index=index,
        name=msg.text(wire.IFLA_IFNAME) or "",
        kind=kind,
        flags=flags,
        mac=wire.mac_text(msg.attrs.get(wire.IFLA_ADDRESS)),
        mtu=msg.u32(wire.IFLA_MTU, 0),
        txqlen=msg.u32(wire.IFLA_TXQLEN, 0),
        peer_index=msg.u32(wire.IFLA_LINK, 0),
        master=msg.u32(wire.IFLA_MASTER, 0),
    )


_SKIP_STATS = wire.attr_u32(wire.IFLA_EXT_MASK, wire.RTEXT_FILTER_SKIP_STATS)


def list_links(nl: Rtnl) -> list[Link]:
    """All links of the namespace."""
    return [_link(msg) for msg in nl.request(wire.RTM_GETLINK, wire.NLM_F_DUMP, wire.IFINFOMSG.pack(0, 0, 0, 0, 0),
                                             _SKIP_STATS, answer=wire.IFINFOMSG, what="dump links")]


def get_link(nl: Rtnl, *, name: str | None = None, index: int | None = None) -> Link | None:
    """One link by index (preferred) or name, ``None`` when it does not exist.

    One RTM_GETLINK request, not a dump: a node holds a host veth per pod, so dumping every link on every call
    would make each pod's ADD slower than the last.
    """
    attrs = _SKIP_STATS + (wire.attr_text(wire.IFLA_IFNAME, name) if index is None else b"")
    try:
        messages = nl.request(wire.RTM_GETLINK, 0, wire.IFINFOMSG.pack(0, 0, index or 0, 0, 0), attrs,
                              answer=wire.IFINFOMSG, what=f"get link {name or index}")
    except NetlinkError as exc:
        if is_missing(exc) or exc.code == errno.EINVAL:
            return None
        raise
    return _link(messages[0]) if messages else None


def set_link(nl: Rtnl, index: int, *, up: bool | None = None, mtu: int | None = None, mac: str | None = None,
             txqlen: int | None = None) -> None:
    """``ip link set``: state, MTU, MAC and queue length, only those given."""
    change = IFF_UP if up is not None else 0
    attrs = b""
    if mtu is not None:
        attrs += wire.attr_u32(wire.IFLA_MTU, mtu)
    if mac:
        attrs += wire.attr(wire.IFLA_ADDRESS, wire.mac_bytes(mac))
    if txqlen is not None:
        attrs += wire.attr_u32(wire.IFLA_TXQLEN, txqlen)
    nl.change(wire.RTM_NEWLINK, 0, wire.IFINFOMSG.pack(0, 0, index, IFF_UP if up else 0, change), attrs,
              what=f"set link {index}")


def delete_link(nl: Rtnl, *, index: int | None = None, name: str | None = None) -> None:
    """``ip link del`` by index or name; absent is fine."""
    attrs = wire.attr_text(wire.IFLA_IFNAME, name) if index is None and name else b""
    ignore_missing(nl.change, wire.RTM_DELLINK, 0, wire.IFINFOMSG.pack(0, 0, index or 0, 0, 0), attrs,
                   what=f"delete link {name or index}")


def add_veth(nl: Rtnl, *, name: str, mac: str, mtu: int, peer_name: str, peer_mac: str, peer_netns_fd: int) -> None:
    """Create a veth pair: ``name`` here, ``peer_name`` in the namespace open at ``peer_netns_fd``."""
    peer = (wire.IFINFOMSG.pack(0, 0, 0, 0, 0) + wire.attr_text(wire.IFLA_IFNAME, peer_name)
            + wire.attr(wire.IFLA_ADDRESS, wire.mac_bytes(peer_mac)) + wire.attr_u32(wire.IFLA_MTU, mtu)
            + wire.attr_u32(wire.IFLA_NET_NS_FD, peer_netns_fd))
    info = wire.attr_text(wire.IFLA_INFO_KIND, "veth") + wire.attr(wire.IFLA_INFO_DATA,
                                                                   wire.attr(wire.VETH_INFO_PEER, peer))
    attrs = (wire.attr_text(wire.IFLA_IFNAME, name) + wire.attr(wire.IFLA_ADDRESS, wire.mac_bytes(mac))
             + wire.attr_u32(wire.IFLA_MTU, mtu) + wire.attr(wire.IFLA_LINKINFO, info))
    nl.change(wire.RTM_NEWLINK, wire.NLM_F_CREATE | wire.NLM_F_EXCL, wire.IFINFOMSG.pack(0, 0, 0, 0, 0), attrs,
              what=f"add veth {name}/{peer_name}")


@dataclass(frozen=True)
class Address:
    """An address configured on a link."""

    index: int
    interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface

    @property
    def ip(self) -> IPAddress:
        """The address without its prefix length."""
        return self.interface.ip


def list_addresses(nl: Rtnl, index: int | None = None, *, family: int | None = None) -> list[Address]:
    """Addresses of one link (or all), in kernel order; of one address family when ``family`` is given (the
    kernel then dumps only that family)."""
    found = []
    for msg in nl.request(wire.RTM_GETADDR, wire.NLM_F_DUMP, wire.IFADDRMSG.pack(family or 0, 0, 0, 0, 0),
                          answer=wire.IFADDRMSG, what="dump addresses"):
        _, prefixlen, _, _, msg_index = msg.header
        if index is not None and msg_index != index:
            continue
        value = msg.ip(wire.IFA_LOCAL) or msg.ip(wire.IFA_ADDRESS)  # IFA_ADDRESS is the peer on ptp links
        if value:
            found.append(Address(index=msg_index, interface=ipaddress.ip_interface(f"{value}/{prefixlen}")))
    return found


def _address_request(index: int, address: str, prefixlen: int) -> tuple[bytes, bytes]:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return (wire.IFADDRMSG.pack(family, prefixlen, 0, SCOPE_UNIVERSE, index),
            wire.attr_ip(wire.IFA_LOCAL, address) + wire.attr_ip(wire.IFA_ADDRESS, address))


def add_address(nl: Rtnl, index: int, address: str, prefixlen: int) -> None:
    """``ip addr add``."""
    header, attrs = _address_request(index, address, prefixlen)
    nl.change(wire.RTM_NEWADDR, wire.NLM_F_CREATE | wire.NLM_F_EXCL, header, attrs, what=f"add address {address}")


def delete_address(nl: Rtnl, index: int, address: str, prefixlen: int) -> None:
    """``ip addr del``; absent is fine."""
    header, attrs = _address_request(index, address, prefixlen)
    ignore_missing(nl.change, wire.RTM_DELADDR, 0, header, attrs, what=f"delete address {address}")


def is_usable(ip: IPAddress) -> bool:
    """Addresses worth routing to: not loopback, not IPv6 link-local (every IPv6 link has one)."""
    return not ip.is_loopback and not (ip.version == 6 and ip.is_link_local)


# --- routes ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A route as the kernel reports it; ``multipath`` holds ``(oif, gateway)`` of each nexthop."""

    table: int
    dst: IPNetwork
    oif: int | None = None
    gateway: str | None = None
    prefsrc: str | None = None
    scope: int = SCOPE_UNIVERSE
    priority: int | None = None
    proto: int = RTPROT_BOOT  # what iproute2 uses for "ip route add"
    multipath: tuple[tuple[int, str | None], ...] = ()

    @property
    def version(self) -> int:
        """4 or 6."""
        return self.dst.version

    @property
    def is_default(self) -> bool:
        """A default route (0.0.0.0/0 or ::/0)."""
        return self.dst.prefixlen == 0

    def uses(self, index: int) -> bool:
        """True when the route (or one of its nexthops) leaves through interface ``index``."""
        return self.oif == index or any(oif == index for oif, _ in self.multipath)

    def message(self) -> tuple[bytes, bytes]:
        """The rtmsg header and attributes that (re)create or delete this route. IPv6 routes carry no scope (the
        kernel ignores it), like iproute2's."""
        scope = self.scope if self.version == 4 else SCOPE_UNIVERSE
        header = wire.RTMSG.pack(FAMILY[self.version], self.dst.prefixlen, 0, 0, _header_table(self.table),
                                 self.proto, scope, RTN_UNICAST, 0)
        attrs = wire.attr_u32(wire.RTA_TABLE, self.table)
        if self.dst.prefixlen:
            attrs += wire.attr_ip(wire.RTA_DST, str(self.dst.network_address))
        if self.priority is not None:
            attrs += wire.attr_u32(wire.RTA_PRIORITY, self.priority)
        if self.prefsrc:
            attrs += wire.attr_ip(wire.RTA_PREFSRC, self.prefsrc)
        if self.multipath:
            hops = b""
            for oif, gateway in self.multipath:
                gw = wire.attr_ip(wire.RTA_GATEWAY, gateway) if gateway else b""
                hops += wire.RTNEXTHOP.pack(wire.RTNEXTHOP.size + len(gw), 0, 0, oif) + gw
            return header, attrs + wire.attr(wire.RTA_MULTIPATH, hops)
        if self.oif is not None:
            attrs += wire.attr_u32(wire.RTA_OIF, self.oif)
        if self.gateway:
            attrs += wire.attr_ip(wire.RTA_GATEWAY, self.gateway)
        return header, attrs

    def same_as(self, other: Route) -> bool:
        """Equal for idempotency purposes (the kernel's metric/protocol only compared when we set them)."""
        mine = (self.table, self.dst, self.oif, self.gateway, self.prefsrc, self.multipath)
        theirs = (other.table, other.dst, other.oif, other.gateway, other.prefsrc, other.multipath)
        if mine != theirs:
            return False
        if self.version == 4 and self.scope != other.scope:
            return False
        return self.priority is None or other.priority is None or self.priority == other.priority


def decode_multipath(value: bytes | None) -> tuple[tuple[int, str | None], ...]:
    """The ``(oif, gateway)`` of each nexthop in an RTA_MULTIPATH payload."""
    hops: list[tuple[int, str | None]] = []
    offset = 0
    while value and offset + wire.RTNEXTHOP.size <= len(value):
        length, _, _, oif = wire.RTNEXTHOP.unpack_from(value, offset)
        if length < wire.RTNEXTHOP.size or offset + length > len(value):
            break
        gateway = wire.parse_attrs(value, offset + wire.RTNEXTHOP.size, offset + length).get(wire.RTA_GATEWAY)
        hops.append((oif, wire.ip_text(gateway) if gateway else None))
        offset += wire.align(length)
    return tuple(hops)


def _route(msg: wire.Message) -> Route:
    family, dst_len, _, _, table, proto, scope, _, _ = msg.header
    dst_value = msg.ip(wire.RTA_DST) or ("0.0.0.0" if family == socket.AF_INET else "::")
    return Route(
        table=msg.u32(wire.RTA_TABLE) or table,
        dst=ipaddress.ip_network(f"{dst_value}/{dst_len}", strict=False),
        oif=msg.u32(wire.RTA_OIF),
        gateway=msg.ip(wire.RTA_GATEWAY),
        prefsrc=msg.ip(wire.RTA_PREFSRC),
        scope=scope,
        priority=msg.u32(wire.RTA_PRIORITY),
        proto=proto,
        multipath=decode_multipath(msg.attrs.get(wire.RTA_MULTIPATH)),
    )


def list_routes(nl: Rtnl, version: int, table: int | None = None) -> list[Route]:
    """Unicast routes of one family, optionally of one table (local/broadcast/multicast entries are skipped)."""
    routes = []
    for msg in nl.request(wire.RTM_GETROUTE, wire.NLM_F_DUMP, wire.RTMSG.pack(FAMILY[version], 0, 0, 0, 0, 0, 0, 0, 0),
                          answer=wire.RTMSG, what=f"dump IPv{version} routes"):
        if msg.header[7] != RTN_UNICAST:
            continue
        route = _route(msg)
        if table is None or route.table == table:
            routes.append(route)
    return routes


def route_source(nl: Rtnl, ip: IPAddress) -> str | None:
    """``ip route get <ip>``: the source address the namespace would use to reach ``ip`` (``None``: no route or
    no preferred source)."""
    header = wire.RTMSG.pack(FAMILY[ip.version], ip.max_prefixlen, 0, 0, 0, 0, 0, 0, 0)
    try:
        answers = nl.request(wire.RTM_GETROUTE, 0, header, wire.attr_ip(wire.RTA_DST, str(ip)), answer=wire.RTMSG,
                             what=f"route get {ip}")
    except NetlinkError:
        return None
    return answers[0].ip(wire.RTA_PREFSRC) if answers else None


def add_route(nl: Rtnl, route: Route, *, append: bool = False) -> None:
    """Create (``replace``) a route; ``append`` adds a nexthop next to an existing same-metric route."""
    flags = wire.NLM_F_CREATE | (wire.NLM_F_APPEND if append else wire.NLM_F_REPLACE)
    nl.change(wire.RTM_NEWROUTE, flags, *route.message(), what=f"add route {route.dst} table {route.table}")


def delete_route(nl: Rtnl, route: Route) -> None:
    """Delete one route (or, for IPv6, one nexthop when ``oif``/``gateway`` are given); absent is fine."""
    ignore_missing(nl.change, wire.RTM_DELROUTE, 0, *route.message(),
                   what=f"delete route {route.dst} table {route.table}")


def replace_route(nl: Rtnl, undo: ExitStack, route: Route) -> None:
    """Install ``route`` with ``replace`` (it takes over a stale route of the same destination), undone on failure.

    No dump: used for the node's per-pod ``hostRuleTable`` routes, whose table grows with the pods.
    """
    add_route(nl, route)
    undo.callback(delete_route, nl, route)


def ensure_route(nl: Rtnl, undo: ExitStack, route: Route, known: list[Route] | None = None) -> bool:
    """Install ``route`` unless an identical one exists; register its removal on ``undo``. True if added.

    ``known``: the namespace's routes of the family, dumped earlier by the caller and kept current by passing the
    same list to every call (a route added here is appended), so one dump serves a whole pod ADD.
    """
    existing = list_routes(nl, route.version, route.table) if known is None else known
    if any(route.same_as(current) for current in existing):
        return False
    add_route(nl, route)
    undo.callback(delete_route, nl, route)
    if known is not None:
        known.append(route)
    return True


# --- rules -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A policy routing rule (only the selectors the coordinator uses)."""

    version: int
    table: int
    priority: int | None = None
    src: IPNetwork | None = None
    dst: IPNetwork | None = None
    fwmark: int | None = None

    def message(self) -> tuple[bytes, bytes]:
        """The fib_rule_hdr and attributes of ``ip rule add/del ... lookup <table>``."""
        header = wire.FIB_RULE_HDR.pack(FAMILY[self.version], self.dst.prefixlen if self.dst else 0,
                                        self.src.prefixlen if self.src else 0, 0, _header_table(self.table), 0, 0,
                                        FR_ACT_TO_TBL, 0)
        attrs = wire.attr_u32(wire.FRA_TABLE, self.table)
        if self.priority is not None:
            attrs += wire.attr_u32(wire.FRA_PRIORITY, self.priority)
        if self.src is not None:
            attrs += wire.attr_ip(wire.FRA_SRC, str(self.src.network_address))
        if self.dst is not None:
            attrs += wire.attr_ip(wire.FRA_DST, str(self.dst.network_address))
        if self.fwmark is not None:
            attrs += wire.attr_u32(wire.FRA_FWMARK, self.fwmark)
        return header, attrs

    def selects_like(self, other: Rule) -> bool:
        """Same selectors and table; priority compared only when this rule names one."""
        mine = (self.version, self.table, self.src, self.dst, self.fwmark)
        theirs = (other.version, other.table, other.src, other.dst, other.fwmark)
        return mine == theirs and (self.priority is None or self.priority == other.priority)


def _rule(msg: wire.Message) -> Rule:
    family, dst_len, src_len, _, table, _, _, _, _ = msg.header
    src, dst = msg.ip(wire.FRA_SRC), msg.ip(wire.FRA_DST)
    return Rule(
        version=VERSION[family],
        table=msg.u32(wire.FRA_TABLE) or table,
        priority=msg.u32(wire.FRA_PRIORITY, 0),
        src=ipaddress.ip_network(f"{src}/{src_len}") if src else None,
        dst=ipaddress.ip_network(f"{dst}/{dst_len}") if dst else None,
        fwmark=msg.u32(wire.FRA_FWMARK),
    )


def list_rules(nl: Rtnl, version: int) -> list[Rule]:
    """All rules of one family."""
    header = wire.FIB_RULE_HDR.pack(FAMILY[version], 0, 0, 0, 0, 0, 0, 0, 0)
    return [_rule(msg) for msg in nl.request(wire.RTM_GETRULE, wire.NLM_F_DUMP, header, answer=wire.FIB_RULE_HDR,
                                             what=f"dump IPv{version} rules")]


def kernel_default_priority(rules: list[Rule]) -> int:
    """The priority the kernel gives a rule added without one: just below the first rule after ``local``.

    Computed here rather than left to the kernel so that the rule as installed is known (and can be undone) without
    a second dump (spec §8.3 step 15: "typically 999", below the ``fwmark 0x1`` rule at 1000).

    >>> kernel_default_priority([Rule(4, 255, 0), Rule(4, 100, 1000, fwmark=1), Rule(4, 254, 32766)])
    999
    >>> kernel_default_priority([Rule(4, 255, 0), Rule(4, 254, 32766), Rule(4, 253, 32767)])
    32765
    """
    prefs = sorted(rule.priority or 0 for rule in rules)
    after_local = prefs[1:] if prefs and prefs[0] == 0 else prefs
    return max((after_local[0] if after_local else 32766) - 1, 1)


def delete_rule(nl: Rtnl, rule: Rule) -> None:
    """Delete one rule; absent is fine."""
    ignore_missing(nl.change, wire.RTM_DELRULE, 0, *rule.message(), what=f"delete rule to table {rule.table}")


def ensure_rule(nl: Rtnl, undo: ExitStack | None, rule: Rule) -> Rule:
    """Add ``rule`` unless one with the same selectors exists; return the rule as installed.

    A rule without priority gets the kernel's default choice (see :func:`kernel_default_priority`). The removal is
    registered on ``undo`` unless ``undo`` is ``None`` (node-wide rules shared by every pod are never undone).
    """
    existing = list_rules(nl, rule.version)
    for current in existing:
        if rule.selects_like(current):
            return current
    if rule.priority is None:
        rule = Rule(rule.version, rule.table, kernel_default_priority(existing), rule.src, rule.dst, rule.fwmark)
    try:
        nl.change(wire.RTM_NEWRULE, wire.NLM_F_CREATE | wire.NLM_F_EXCL, *rule.message(),
                  what=f"add rule to table {rule.table}")
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:  # a concurrent ADD created it between our dump and our add
            raise
        return rule
    if undo is not None:
        undo.callback(delete_rule, nl, rule)
    return rule


# --- neighbours ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Neighbour:
    """A neighbour table entry."""

    ifindex: int
    dst: IPAddress
    lladdr: str
    state: int


def list_neighbours(nl: Rtnl, version: int) -> list[Neighbour]:
    """Neighbour entries of one family (entries without a link-layer address are reported with ``""``)."""
    found = []
    for msg in nl.request(wire.RTM_GETNEIGH, wire.NLM_F_DUMP, wire.NDMSG.pack(FAMILY[version], 0, 0, 0, 0),
                          answer=wire.NDMSG, what=f"dump IPv{version} neighbours"):
        dst = msg.ip(wire.NDA_DST)
        if dst:
            _, ifindex, state, _, _ = msg.header
            found.append(Neighbour(ifindex=ifindex, dst=ipaddress.ip_address(dst),
                                   lladdr=wire.mac_text(msg.attrs.get(wire.NDA_LLADDR)), state=state))
    return found


def delete_neighbour(nl: Rtnl, ifindex: int, dst: IPAddress) -> None:
    """Delete one neighbour entry; absent is fine."""
    ignore_missing(nl.change, wire.RTM_DELNEIGH, 0, wire.NDMSG.pack(FAMILY[dst.version], ifindex, 0, 0, 0),
                   wire.attr_ip(wire.NDA_DST, str(dst)), what=f"delete neighbour {dst}")


def _replace_neighbour(nl: Rtnl, ifindex: int, dst: IPAddress, lladdr: str) -> None:
    nl.change(wire.RTM_NEWNEIGH, wire.NLM_F_CREATE | wire.NLM_F_REPLACE,
              wire.NDMSG.pack(FAMILY[dst.version], ifindex, NUD_PERMANENT, 0, 0),
              wire.attr_ip(wire.NDA_DST, str(dst)) + wire.attr(wire.NDA_LLADDR, wire.mac_bytes(lladdr)),
              what=f"replace neighbour {dst}")


def replace_permanent_neighbour(nl: Rtnl, undo: ExitStack, *, ifindex: int, dst: IPAddress, lladdr: str) -> None:
    """``neigh replace`` without a dump first (the node's neighbour table grows with the pods); undone on failure."""
    _replace_neighbour(nl, ifindex, dst, lladdr)
    undo.callback(delete_neighbour, nl, ifindex, dst)


def ensure_permanent_neighbour(nl: Rtnl, undo: ExitStack, *, ifindex: int, dst: IPAddress, lladdr: str,
                               known: list[Neighbour] | None = None) -> None:
    """Make ``dst`` a permanent neighbour at ``lladdr`` on ``ifindex`` (``replace``), undone unless unchanged.

    ``known``: the family's neighbour entries dumped earlier by the caller (see ``ensure_route``).
    """
    for neigh in list_neighbours(nl, dst.version) if known is None else known:
        if (neigh.ifindex, neigh.dst, neigh.lladdr, neigh.state) == (ifindex, dst, lladdr.lower(), NUD_PERMANENT):
            return
    _replace_neighbour(nl, ifindex, dst, lladdr)
    undo.callback(delete_neighbour, nl, ifindex, dst)
