"""Gateways and routes of pools, subnets and the ``ipam.spidernet.io/routes`` pod annotation (spec §1.1, §1.2).

Validation lives here so the webhook-style checks of the portal and the agent's annotation parsing agree.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from spiderweb.engine.errors import InvalidInput
from spiderweb.engine.keys import ANNO_ROUTES
from spiderweb.engine.ranges import IPAddress, IPNetwork, RangeSet, parse_cidr, parse_ip


@dataclass(frozen=True)
class Route:
    """One route: destination CIDR and next hop, both canonical text of one family."""

    dst: str
    gw: str

    def to_dict(self) -> dict[str, str]:
        """The Spiderpool JSON shape.

        >>> Route("10.0.0.0/16", "192.168.1.1").to_dict()
        {'dst': '10.0.0.0/16', 'gw': '192.168.1.1'}
        """
        return {"dst": self.dst, "gw": self.gw}


def default_route(version: int) -> str:
    """The default-route destination of a family.

    >>> default_route(4), default_route(6)
    ('0.0.0.0/0', '::/0')
    """
    if version == 4:
        return "0.0.0.0/0"
    if version == 6:
        return "::/0"
    raise InvalidInput(f"IP version must be 4 or 6, got {version!r}")


def validate_gateway(gateway: str | None, subnet: IPNetwork | str, total: RangeSet) -> str | None:
    """Check a pool gateway and return it canonical (None when unset).

    The gateway must sit inside ``subnet`` and must not be one of the addresses the pool hands out (``total`` is
    the pool's ips − excludeIPs), or a pod could be given the gateway's address.

    >>> total = RangeSet.parse(["10.6.0.10-10.6.0.20"])
    >>> validate_gateway("10.6.0.1", "10.6.0.0/16", total)
    '10.6.0.1'
    >>> validate_gateway("10.6.0.10", "10.6.0.0/16", total)
    Traceback (most recent call last):
    ...
    spiderweb.engine.errors.InvalidInput: gateway 10.6.0.10 is one of the pool's IPs; remove it from ips or add \
it to excludeIPs
    """
    if gateway is None or gateway == "":
        return None
    network = parse_cidr(subnet)
    if not isinstance(gateway, str):
        raise InvalidInput(f"gateway must be an IP address string, got {gateway!r}")
    address = _ip_of_family(gateway, network.version, f"gateway {gateway!r}", f"subnet {network}")
    if address not in network:
        raise InvalidInput(f"gateway {address} is outside subnet {network}")
    if address.version == total.version and int(address) in total:
        raise InvalidInput(f"gateway {address} is one of the pool's IPs; remove it from ips or add it to excludeIPs")
    return str(address)


def validate_routes(routes: list[dict[str, Any]] | None, subnet: IPNetwork | str) -> list[Route]:
    """Check the ``routes`` of a pool or subnet and return them canonical.

    Each ``dst`` must be a CIDR of the pool family and not the default route (the gateway provides that one);
    ``dst`` values must be unique; each ``gw`` must be inside ``subnet`` (the NIC can only reach such a next hop).
    Host bits in ``dst`` are cleared rather than refused, because Spiderpool accepts them and existing pools must
    still load.

    >>> validate_routes([{"dst": "172.16.0.0/16", "gw": "10.6.0.1"}], "10.6.0.0/16")
    [Route(dst='172.16.0.0/16', gw='10.6.0.1')]
    >>> validate_routes([{"dst": "0.0.0.0/0", "gw": "10.6.0.1"}], "10.6.0.0/16")
    Traceback (most recent call last):
    ...
    spiderweb.engine.errors.InvalidInput: routes[0].dst 0.0.0.0/0 is the default route; set the pool gateway \
instead
    """
    if routes is None:
        return []
    network = parse_cidr(subnet)
    if not isinstance(routes, list):
        raise InvalidInput(f"routes must be a list of {{'dst': ..., 'gw': ...}} objects, got {routes!r}")
    out: list[Route] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(routes):
        where = f"routes[{index}]"
        dst_text, gw_text = _route_fields(item, where)
        dst = _network_of_family(dst_text, network.version, f"{where}.dst {dst_text!r}", f"subnet {network}")
        if dst.prefixlen == 0:
            raise InvalidInput(f"{where}.dst {dst} is the default route; set the pool gateway instead")
        gw = _ip_of_family(gw_text, network.version, f"{where}.gw {gw_text!r}", f"subnet {network}")
        if gw not in network:
            raise InvalidInput(f"{where}.gw {gw} is outside subnet {network}")
        if str(dst) in seen:
            raise InvalidInput(f"{where}.dst {dst} repeats routes[{seen[str(dst)]}].dst; each destination once")
        seen[str(dst)] = index
        out.append(Route(str(dst), str(gw)))
    return out


def parse_route_annotation(text: str) -> list[Route]:
    """Parse the ``ipam.spidernet.io/routes`` pod annotation: a JSON list of ``{"dst", "gw"}`` of one family each.

    Which NIC a route goes to is decided later (the first allocated NIC whose subnet contains ``gw``), so only
    the shape and the family pairing are checked here.

    >>> parse_route_annotation('[{"dst": "10.0.0.0/16", "gw": "192.168.1.1"}]')
    [Route(dst='10.0.0.0/16', gw='192.168.1.1')]
    >>> parse_route_annotation('[{"dst": "fd00::/64", "gw": "192.168.1.1"}]')
    Traceback (most recent call last):
    ...
    spiderweb.engine.errors.InvalidInput: ipam.spidernet.io/routes[0]: dst fd00::/64 is IPv6 but gw 192.168.1.1 \
is IPv4
    """
    key = ANNO_ROUTES
    if not isinstance(text, str):
        raise InvalidInput(f"{key} must be a JSON string, got {text!r}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{key} is not valid JSON ({exc.msg} at position {exc.pos}): {text!r}") from None
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f'{key} must be a JSON list like [{{"dst": "10.0.0.0/16", "gw": "192.168.1.1"}}]')
    out = []
    for index, item in enumerate(value):
        where = f"{key}[{index}]"
        dst_text, gw_text = _route_fields(item, where)
        dst = _network_of_family(dst_text, None, f"{where}: dst {dst_text!r}", "")
        gw = _ip_of_family(gw_text, None, f"{where}: gw {gw_text!r}", "")
        if dst.version != gw.version:
            raise InvalidInput(f"{where}: dst {dst} is IPv{dst.version} but gw {gw} is IPv{gw.version}")
        out.append(Route(str(dst), str(gw)))
    return out


def _route_fields(item: object, where: str) -> tuple[str, str]:
    """Pull ``dst`` and ``gw`` out of one route object, matching keys case-insensitively as Go's JSON decoder does."""
    if not isinstance(item, dict):
        raise InvalidInput(f'{where} must be an object like {{"dst": "10.0.0.0/16", "gw": "10.6.0.1"}}, got {item!r}')
    fields = {str(key).lower(): value for key, value in item.items()}
    for name in ("dst", "gw"):
        if not isinstance(fields.get(name), str) or not fields[name]:
            raise InvalidInput(f"{where}.{name} is required and must be a non-empty string, got {fields.get(name)!r}")
    return fields["dst"], fields["gw"]


def _ip_of_family(text: str, version: int | None, what: str, context: str) -> IPAddress:
    """Parse an address and, when ``version`` is given, explain a family mismatch in terms of ``context``."""
    try:
        address = parse_ip(text)
    except InvalidInput:
        raise InvalidInput(f"{what} is not a valid IP address") from None
    if version is not None and address.version != version:
        raise InvalidInput(f"{what} is IPv{address.version} but {context} is IPv{version}")
    return address


def _network_of_family(text: str, version: int | None, what: str, context: str) -> IPNetwork:
    """Parse a CIDR leniently (host bits cleared) and, when ``version`` is given, insist on it."""
    if "/" not in text or "%" in text:
        raise InvalidInput(f"{what} is not a valid CIDR")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidInput(f"{what} is not a valid CIDR") from None
    if version is not None and network.version != version:
        raise InvalidInput(f"{what} is IPv{network.version} but {context} is IPv{version}")
    return network
