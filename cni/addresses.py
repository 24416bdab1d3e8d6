"""Checking and normalising IP addresses and CIDRs with the C library's parser instead of ``ipaddress``.

``ipaddress`` is a large module (a few milliseconds of every executable's start-up); the plugins only need to know
whether a string is an IPv4 or IPv6 address or CIDR, and a route's network address. ``inet_pton(3)`` answers the
first (it refuses IPv4 octets with leading zeros, as ``ipaddress`` does) and ``inet_ntop(3)`` prints the second.

>>> ip_version("10.6.0.1"), ip_version("fd00::1"), cidr_version("10.6.0.9/16")
(4, 6, 4)
>>> network("10.96.0.1/12"), network("fd00:6::21/64")
('10.96.0.0/12', 'fd00:6::/64')
"""

from __future__ import annotations

from _socket import AF_INET, AF_INET6, inet_ntop, inet_pton

_FAMILIES = ((4, AF_INET, 32), (6, AF_INET6, 128))


def _parse(text: object) -> tuple[int, int, bytes, int]:
    """``(version, family, packed, max prefix)`` of an address; ``ValueError`` when it is none."""
    if isinstance(text, str) and text.isascii():
        for version, family, bits in _FAMILIES:
            try:
                return version, family, inet_pton(family, text), bits
            except OSError:
                continue
    raise ValueError(f"{text!r} is not an IPv4 or IPv6 address")


def ip_version(text: object) -> int:
    """4 or 6 for an address such as ``10.6.0.1`` or ``fd00::1``; ``ValueError`` otherwise."""
    return _parse(text)[0]


def _split_cidr(text: object) -> tuple[int, int, bytes, int]:
    if not isinstance(text, str) or text.count("/") != 1:
        raise ValueError(f"{text!r} is not in CIDR form (address/prefix)")
    address, prefix = text.split("/")
    version, family, packed, bits = _parse(address)
    if not (prefix.isascii() and prefix.isdigit() and len(prefix) <= 3 and int(prefix) <= bits):
        raise ValueError(f"{text!r} has no valid prefix length (0..{bits})")
    return version, family, packed, int(prefix)


def cidr_version(text: object) -> int:
    """4 or 6 for an address or network in CIDR form (``10.6.0.9/16``); ``ValueError`` otherwise."""
    return _split_cidr(text)[0]


def network(text: object) -> str:
    """The network of a CIDR with the host bits cleared, printed as ``ipaddress`` does (IPv4-mapped IPv6 excepted:
    ``inet_ntop`` prints ``::ffff:1.2.3.4``, as Go does)."""
    _, family, packed, prefix = _split_cidr(text)
    bits = len(packed) * 8
    value = int.from_bytes(packed, "big") >> (bits - prefix) << (bits - prefix) if prefix else 0
    return f"{inet_ntop(family, value.to_bytes(len(packed), 'big'))}/{prefix}"
