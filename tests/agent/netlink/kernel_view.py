"""The kernel's state as pyroute2 decodes it: an independent view of what the agent's own rtnetlink code
(:mod:`agent.netlink.wire`) did, in the agent's dataclasses so tests compare like with like."""

from __future__ import annotations

import ipaddress
import socket

from pyroute2 import IPRoute

from agent.netlink.rtnl import VERSION, Link, Neighbour, Route, Rule

FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}


def _link(msg) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    return Link(index=msg["index"], name=msg.get_attr("IFLA_IFNAME"),
                kind=(info.get_attr("IFLA_INFO_KIND") if info is not None else "") or "", flags=msg["flags"],
                mac=(msg.get_attr("IFLA_ADDRESS") or "").lower(), mtu=msg.get_attr("IFLA_MTU") or 0,
                txqlen=msg.get_attr("IFLA_TXQLEN") or 0, peer_index=msg.get_attr("IFLA_LINK") or 0,
                master=msg.get_attr("IFLA_MASTER") or 0)


def list_links(handle: IPRoute) -> list[Link]:
    return [_link(msg) for msg in handle.get_links()]


def get_link(handle: IPRoute, *, name: str) -> Link | None:
    return next((link for link in list_links(handle) if link.name == name), None)


def list_addresses(handle: IPRoute, version: int) -> set[tuple[int, str]]:
    """``(index, address/prefix)`` of one family."""
    return {(msg["index"], f"{msg.get_attr('IFA_LOCAL') or msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
            for msg in handle.get_addr(family=FAMILY[version])}


def list_routes(handle: IPRoute, version: int, table: int | None = None) -> list[Route]:
    found = []
    for msg in handle.get_routes(family=FAMILY[version]):
        if msg["type"] != 1:
            continue
        dst = msg.get_attr("RTA_DST") or ("0.0.0.0" if version == 4 else "::")
        route = Route(table=msg.get_attr("RTA_TABLE") or msg["table"],
                      dst=ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False), oif=msg.get_attr("RTA_OIF"),
                      gateway=msg.get_attr("RTA_GATEWAY"), prefsrc=msg.get_attr("RTA_PREFSRC"), scope=msg["scope"],
                      priority=msg.get_attr("RTA_PRIORITY"), proto=msg["proto"],
                      multipath=tuple((nh["oif"], nh.get_attr("RTA_GATEWAY"))
                                      for nh in (msg.get_attr("RTA_MULTIPATH") or ())))
        if table is None or route.table == table:
            found.append(route)
    return found


def list_rules(handle: IPRoute, version: int) -> list[Rule]:
    found = []
    for msg in handle.get_rules(family=FAMILY[version]):
        src, dst = msg.get_attr("FRA_SRC"), msg.get_attr("FRA_DST")
        found.append(Rule(version=VERSION[msg["family"]], table=msg.get_attr("FRA_TABLE") or msg["table"],
                          priority=msg.get_attr("FRA_PRIORITY") or 0,
                          src=ipaddress.ip_network(f"{src}/{msg['src_len']}") if src else None,
                          dst=ipaddress.ip_network(f"{dst}/{msg['dst_len']}") if dst else None,
                          fwmark=msg.get_attr("FRA_FWMARK")))
    return found


def list_neighbours(handle: IPRoute, version: int) -> list[Neighbour]:
    return [Neighbour(ifindex=msg["ifindex"], dst=ipaddress.ip_address(msg.get_attr("NDA_DST")),
                      lladdr=(msg.get_attr("NDA_LLADDR") or "").lower(), state=msg["state"])
            for msg in handle.get_neighbours(family=FAMILY[version]) if msg.get_attr("NDA_DST")]
