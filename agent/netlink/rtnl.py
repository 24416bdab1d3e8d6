"""Small, typed helpers over pyroute2's rtnetlink API shared by the coordinator, ifacer and detection.

Why a layer at all: pyroute2 hands back raw netlink messages whose shape differs between IPv4 and IPv6 and
between plain and multipath routes, and its defaults are not always ours (it silently gives every rule priority
32000). Converting dumps into frozen dataclasses once makes "is the route already there?" a plain equality
test, which is what idempotent ADD needs. ``ensure_*`` helpers make a change only when it is missing and then
register its undo on the caller's ``ExitStack``, so a failed ADD unwinds exactly what it changed and a repeated
ADD changes (and would undo) nothing.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError as PyNetlinkError

from agent.netlink.netns_thread import run_in_netns

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
NETLINK_ROUTE = 0
_MISSING = {errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL}


def iproute(netns_path: str | None) -> IPRoute:
    """An ``IPRoute`` bound to ``netns_path`` (``None`` = the agent's own namespace); use it as a context manager.

    The netlink socket is created by a short-lived thread that entered the namespace (a socket belongs to the
    namespace of the task that created it), then handed to pyroute2 by file descriptor. pyroute2's own
    ``netns=`` forks a child process per socket, which cost tens of milliseconds per pod ADD. A missing
    namespace raises ``FileNotFoundError`` (it is never created as a side effect).
    """
    if netns_path is None:
        return IPRoute()
    sock = run_in_netns(netns_path, socket.socket, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
    return IPRoute(fileno=sock.detach())


def is_missing(exc: BaseException) -> bool:
    """True for the kernel's "no such route/rule/neighbour/device" answers, which DEL and undo tolerate."""
    return isinstance(exc, PyNetlinkError) and exc.code in _MISSING


def ignore_missing(func: Callable[..., object], *args: object, **kwargs: object) -> None:
    """Call ``func`` and swallow "already gone" errors: deleting something absent is success."""
    try:
        func(*args, **kwargs)
    except PyNetlinkError as exc:
        if not is_missing(exc):
            raise


def max_prefix(ip: IPAddress) -> IPNetwork:
    """The host route network of an address: /32 or /128.

    >>> str(max_prefix(ipaddress.ip_address("10.0.0.1"))), str(max_prefix(ipaddress.ip_address("fd00::1")))
    ('10.0.0.1/32', 'fd00::1/128')
    """
    return ipaddress.ip_network(ip)


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


def _link(msg) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else ""
    return Link(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME"),
        kind=kind or "",
        flags=msg["flags"],
        mac=(msg.get_attr("IFLA_ADDRESS") or "").lower(),
        mtu=msg.get_attr("IFLA_MTU") or 0,
        txqlen=msg.get_attr("IFLA_TXQLEN") or 0,
        peer_index=msg.get_attr("IFLA_LINK") or 0,
        master=msg.get_attr("IFLA_MASTER") or 0,
    )


def list_links(ipr: IPRoute) -> list[Link]:
    """All links of the namespace."""
    return [_link(msg) for msg in ipr.get_links()]


def get_link(ipr: IPRoute, *, name: str | None = None, index: int | None = None) -> Link | None:
    """One link by index (preferred) or name, ``None`` when it does not exist.

    One RTM_GETLINK request, not a dump: a node holds a host veth per pod, so dumping every link on every call
    would make each pod's ADD slower than the last.
    """
    try:
        messages = ipr.link("get", index=index) if index is not None else ipr.link("get", ifname=name)
    except PyNetlinkError as exc:
        if is_missing(exc) or exc.code == errno.EINVAL:
            return None
        raise
    return _link(messages[0]) if messages else None


@dataclass(frozen=True)
class Address:
    """An address configured on a link."""

    index: int
    interface: ipaddress.IPv4Interface | ipaddress.IPv6Interface

    @property
    def ip(self) -> IPAddress:
        """The address without its prefix length."""
        return self.interface.ip


def list_addresses(ipr: IPRoute, index: int | None = None, *, family: int | None = None) -> list[Address]:
    """Addresses of one link (or all), in kernel order; of one address family when ``family`` is given (the
    kernel then dumps only that family)."""
    found = []
    for msg in ipr.get_addr(family=family) if family is not None else ipr.get_addr():
        if index is not None and msg["index"] != index:
            continue
        value = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")  # IFA_ADDRESS is the peer on ptp links
        found.append(Address(index=msg["index"], interface=ipaddress.ip_interface(f"{value}/{msg['prefixlen']}")))
    return found


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
    proto: int = 3  # RTPROT_BOOT, what iproute2 uses for "ip route add"
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

    def spec(self) -> dict:
        """Keyword arguments for ``IPRoute.route()`` that (re)create this route."""
        spec: dict = {"family": FAMILY[self.version], "dst": str(self.dst), "table": self.table, "proto": self.proto}
        if self.version == 4:
            spec["scope"] = self.scope
        if self.priority is not None:
            spec["priority"] = self.priority
        if self.prefsrc:
            spec["prefsrc"] = self.prefsrc
        if self.multipath:
            spec["multipath"] = [
                {"oif": oif, **({"gateway": gw} if gw else {})} for oif, gw in self.multipath
            ]
            return spec
        if self.oif is not None:
            spec["oif"] = self.oif
        if self.gateway:
            spec["gateway"] = self.gateway
        return spec

    def same_as(self, other: Route) -> bool:
        """Equal for idempotency purposes (the kernel's metric/protocol only compared when we set them)."""
        mine = (self.table, self.dst, self.oif, self.gateway, self.prefsrc, self.multipath)
        theirs = (other.table, other.dst, other.oif, other.gateway, other.prefsrc, other.multipath)
        if mine != theirs:
            return False
        if self.version == 4 and self.scope != other.scope:
            return False
        return self.priority is None or other.priority is None or self.priority == other.priority


def _route(msg) -> Route:
    family = msg["family"]
    dst_value = msg.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
    multipath = tuple(
        (nh["oif"], nh.get_attr("RTA_GATEWAY"))
        for nh in (msg.get_attr("RTA_MULTIPATH") or ())
    )
    return Route(
        table=msg.get_attr("RTA_TABLE") or msg["table"],
        dst=ipaddress.ip_network(f"{dst_value}/{msg['dst_len']}", strict=False),
        oif=msg.get_attr("RTA_OIF"),
        gateway=msg.get_attr("RTA_GATEWAY"),
        prefsrc=msg.get_attr("RTA_PREFSRC"),
        scope=msg["scope"],
        priority=msg.get_attr("RTA_PRIORITY"),
        proto=msg["proto"],
        multipath=multipath,
    )


def list_routes(ipr: IPRoute, version: int, table: int | None = None) -> list[Route]:
    """Unicast routes of one family, optionally of one table (local/broadcast/multicast entries are skipped)."""
    routes = []
    for msg in ipr.get_routes(family=FAMILY[version]):
        if msg["type"] != 1:  # RTN_UNICAST only
            continue
        route = _route(msg)
        if table is None or route.table == table:
            routes.append(route)
    return routes


def add_route(ipr: IPRoute, route: Route, *, append: bool = False) -> None:
    """Create (``replace``) a route; ``append`` adds a nexthop next to an existing same-metric route."""
    ipr.route("append" if append else "replace", **route.spec())


def delete_route(ipr: IPRoute, route: Route) -> None:
    """Delete one route (or, for IPv6, one nexthop when ``oif``/``gateway`` are given); absent is fine."""
    ignore_missing(ipr.route, "del", **route.spec())


def replace_route(ipr: IPRoute, undo: ExitStack, route: Route) -> None:
    """Install ``route`` with ``replace`` (it takes over a stale route of the same destination), undone on failure.

    No dump: used for the node's per-pod ``hostRuleTable`` routes, whose table grows with the pods.
    """
    ipr.route("replace", **route.spec())
    undo.callback(delete_route, ipr, route)


def ensure_route(ipr: IPRoute, undo: ExitStack, route: Route, known: list[Route] | None = None) -> bool:
    """Install ``route`` unless an identical one exists; register its removal on ``undo``. True if added.

    ``known``: the namespace's routes of the family, dumped earlier by the caller and kept current by passing the
    same list to every call (a route added here is appended), so one dump serves a whole pod ADD.
    """
    existing = list_routes(ipr, route.version, route.table) if known is None else known
    if any(route.same_as(current) for current in existing):
        return False
    add_route(ipr, route)
    undo.callback(delete_route, ipr, route)
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

    def spec(self) -> dict:
        """Keyword arguments for ``IPRoute.rule()``."""
        spec: dict = {"family": FAMILY[self.version], "table": self.table, "action": "to_tbl"}
        if self.priority is not None:
            spec["priority"] = self.priority
        if self.src is not None:
            spec.update(src=str(self.src.network_address), src_len=self.src.prefixlen)
        if self.dst is not None:
            spec.update(dst=str(self.dst.network_address), dst_len=self.dst.prefixlen)
        if self.fwmark is not None:
            spec["fwmark"] = self.fwmark
        return spec

    def selects_like(self, other: Rule) -> bool:
        """Same selectors and table; priority compared only when this rule names one."""
        mine = (self.version, self.table, self.src, self.dst, self.fwmark)
        theirs = (other.version, other.table, other.src, other.dst, other.fwmark)
        return mine == theirs and (self.priority is None or self.priority == other.priority)


def _rule(msg) -> Rule:
    version = VERSION[msg["family"]]
    src = msg.get_attr("FRA_SRC")
    dst = msg.get_attr("FRA_DST")
    return Rule(
        version=version,
        table=msg.get_attr("FRA_TABLE") or msg["table"],
        priority=msg.get_attr("FRA_PRIORITY") or 0,
        src=ipaddress.ip_network(f"{src}/{msg['src_len']}") if src else None,
        dst=ipaddress.ip_network(f"{dst}/{msg['dst_len']}") if dst else None,
        fwmark=msg.get_attr("FRA_FWMARK"),
    )


def list_rules(ipr: IPRoute, version: int) -> list[Rule]:
    """All rules of one family."""
    return [_rule(msg) for msg in ipr.get_rules(family=FAMILY[version])]


def kernel_default_priority(rules: list[Rule]) -> int:
    """The priority the kernel gives a rule added without one: just below the first rule after ``local``.

    pyroute2 would send 32000 instead, so the coordinator computes the kernel's choice itself (spec §8.3 step 15:
    "typically 999", below the ``fwmark 0x1`` rule at 1000).

    >>> kernel_default_priority([Rule(4, 255, 0), Rule(4, 100, 1000, fwmark=1), Rule(4, 254, 32766)])
    999
    >>> kernel_default_priority([Rule(4, 255, 0), Rule(4, 254, 32766), Rule(4, 253, 32767)])
    32765
    """
    prefs = sorted(rule.priority or 0 for rule in rules)
    after_local = prefs[1:] if prefs and prefs[0] == 0 else prefs
    return max((after_local[0] if after_local else 32766) - 1, 1)


def delete_rule(ipr: IPRoute, rule: Rule) -> None:
    """Delete one rule; absent is fine."""
    ignore_missing(ipr.rule, "del", **rule.spec())


def ensure_rule(ipr: IPRoute, undo: ExitStack | None, rule: Rule) -> Rule:
    """Add ``rule`` unless one with the same selectors exists; return the rule as installed.

    A rule without priority gets the kernel's default choice (see :func:`kernel_default_priority`). The removal is
    registered on ``undo`` unless ``undo`` is ``None`` (node-wide rules shared by every pod are never undone).
    """
    existing = list_rules(ipr, rule.version)
    for current in existing:
        if rule.selects_like(current):
            return current
    if rule.priority is None:
        rule = Rule(rule.version, rule.table, kernel_default_priority(existing), rule.src, rule.dst, rule.fwmark)
    try:
        ipr.rule("add", **rule.spec())
    except PyNetlinkError as exc:
        if exc.code != errno.EEXIST:  # a concurrent ADD created it between our dump and our add
            raise
        return rule
    if undo is not None:
        undo.callback(delete_rule, ipr, rule)
    return rule


# --- neighbours ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Neighbour:
    """A neighbour table entry."""

    ifindex: int
    dst: IPAddress
    lladdr: str
    state: int


def list_neighbours(ipr: IPRoute, version: int) -> list[Neighbour]:
    """Neighbour entries of one family (entries without a link-layer address are reported with ``""``)."""
    return [
        Neighbour(
            ifindex=msg["ifindex"],
            dst=ipaddress.ip_address(msg.get_attr("NDA_DST")),
            lladdr=(msg.get_attr("NDA_LLADDR") or "").lower(),
            state=msg["state"],
        )
        for msg in ipr.get_neighbours(family=FAMILY[version])
        if msg.get_attr("NDA_DST")
    ]


def delete_neighbour(ipr: IPRoute, ifindex: int, dst: IPAddress) -> None:
    """Delete one neighbour entry; absent is fine."""
    ignore_missing(ipr.neigh, "del", family=FAMILY[dst.version], ifindex=ifindex, dst=str(dst))


def replace_permanent_neighbour(ipr: IPRoute, undo: ExitStack, *, ifindex: int, dst: IPAddress, lladdr: str) -> None:
    """``neigh replace`` without a dump first (the node's neighbour table grows with the pods); undone on failure."""
    ipr.neigh("replace", family=FAMILY[dst.version], ifindex=ifindex, dst=str(dst), lladdr=lladdr,
              state=NUD_PERMANENT)
    undo.callback(delete_neighbour, ipr, ifindex, dst)


def ensure_permanent_neighbour(ipr: IPRoute, undo: ExitStack, *, ifindex: int, dst: IPAddress, lladdr: str,
                               known: list[Neighbour] | None = None) -> None:
    """Make ``dst`` a permanent neighbour at ``lladdr`` on ``ifindex`` (``replace``), undone unless unchanged.

    ``known``: the family's neighbour entries dumped earlier by the caller (see ``ensure_route``).
    """
    for neigh in list_neighbours(ipr, dst.version) if known is None else known:
        if (neigh.ifindex, neigh.dst, neigh.lladdr, neigh.state) == (ifindex, dst, lladdr.lower(), NUD_PERMANENT):
            return
    ipr.neigh("replace", family=FAMILY[dst.version], ifindex=ifindex, dst=str(dst), lladdr=lladdr,
              state=NUD_PERMANENT)
    undo.callback(delete_neighbour, ipr, ifindex, dst)
