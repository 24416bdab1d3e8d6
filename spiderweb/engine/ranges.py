"""IP addresses, CIDRs and sets of IP ranges, handled as integers.

Spiderpool pools can be as large as a /64 (2**64 addresses), so nothing here ever expands a range into a list:
a :class:`RangeSet` is a sorted tuple of inclusive ``(start, end)`` integer pairs and every operation works on
those pairs. An address is an ``int`` plus an IP version (4 or 6).
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable, Iterator

from spiderweb.engine.errors import Exhausted, InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAX_ADDRESS = {4: 2**32 - 1, 6: 2**128 - 1}
_KEY_WIDTH = {4: 8, 6: 32}
_ADDRESS_CLASS = {4: ipaddress.IPv4Address, 6: ipaddress.IPv6Address}
_NETWORK_CLASS = {4: ipaddress.IPv4Network, 6: ipaddress.IPv6Network}


def _check_version(version: object) -> int:
    """Return ``version`` if it is 4 or 6; anything else is a caller mistake worth a clear message."""
    if version not in (4, 6) or isinstance(version, bool):
        raise InvalidInput(f"IP version must be 4 or 6, got {version!r}")
    return version  # type: ignore[return-value]


def _check_address_int(n: object, version: int) -> int:
    """Return ``n`` if it is an integer address of ``version``; reject bools, floats and out-of-range values."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise InvalidInput(f"an address must be an int, got {n!r}")
    if not 0 <= n <= _MAX_ADDRESS[version]:
        raise InvalidInput(f"{n} is not an IPv{version} address (expected 0..{_MAX_ADDRESS[version]})")
    return n


def parse_ip(text: str, version: int | None = None) -> IPAddress:
    """Parse one IP address, optionally insisting on a family.

    Zone suffixes (``fe80::1%eth0``) are refused: a pool address never carries one.

    >>> parse_ip("10.6.0.1")
    IPv4Address('10.6.0.1')
    >>> parse_ip("FD00:0::1", 6)
    IPv6Address('fd00::1')
    >>> parse_ip("fd00::1", 4)
    Traceback (most recent call last):
    ...
    spiderweb.engine.errors.InvalidInput: 'fd00::1' is an IPv6 address, expected IPv4
    """
    if version is not None:
        _check_version(version)
    if isinstance(text, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        address: IPAddress = text
    else:
        if not isinstance(text, str):
            raise InvalidInput(f"an IP address must be a string, got {text!r}")
        expected = f"IPv{version}" if version else "IP"
        if "%" in text:
            raise InvalidInput(f"{text!r} is not a valid {expected} address: zone suffixes are not allowed")
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise InvalidInput(f"{text!r} is not a valid {expected} address") from None
    if version is not None and address.version != version:
        raise InvalidInput(f"{str(text)!r} is an IPv{address.version} address, expected IPv{version}")
    return address


def parse_cidr(text: str | IPNetwork, version: int | None = None) -> IPNetwork:
    """Parse a CIDR strictly: it must be written exactly in canonical form (a network object passes through).

    Spiderpool rejects a subnet with host bits set or with a non-normalised spelling, and so do we; the error
    names the canonical form so the fix is a copy-paste.

    >>> parse_cidr("10.6.0.0/16")
    IPv4Network('10.6.0.0/16')
    >>> parse_cidr("10.6.1.0/16")
    Traceback (most recent call last):
    ...
    spiderweb.engine.errors.InvalidInput: "10.6.1.0/16" is not canonical, use "10.6.0.0/16"
    >>> parse_cidr("fd00::/64", 4)
    Traceback (most recent call last):
    ...
    spiderweb.engine.errors.InvalidInput: 'fd00::/64' is an IPv6 CIDR, expected IPv4
    """
    if version is not None:
        _check_version(version)
    expected = f"IPv{version}" if version else "IP"
    if isinstance(text, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        if version is not None and text.version != version:
            raise InvalidInput(f"'{text}' is an IPv{text.version} CIDR, expected IPv{version}")
        return text
    if not isinstance(text, str):
        raise InvalidInput(f"a CIDR must be a string like '10.6.0.0/16', got {text!r}")
    if "/" not in text:
        raise InvalidInput(
            f"{text!r} is not a CIDR: expected an {expected} network with a prefix length, e.g. "
            f"'{'fd00::/64' if version == 6 else '10.6.0.0/16'}'"
        )
    if "%" in text:
        raise InvalidInput(f"{text!r} is not a valid {expected} CIDR: zone suffixes are not allowed")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidInput(f"{text!r} is not a valid {expected} CIDR") from None
    if version is not None and network.version != version:
        raise InvalidInput(f"{text!r} is an IPv{network.version} CIDR, expected IPv{version}")
    if str(network) != text:
        raise InvalidInput(f'"{text}" is not canonical, use "{network}"')
    return network


def cidr_label(network: IPNetwork | str) -> str:
    """Render a CIDR as a Kubernetes label value, the way Spiderpool's ``ipam.spidernet.io/ippool-cidr`` does.

    Label values cannot contain ``.``, ``:`` or ``/``, so each becomes ``-``.

    >>> cidr_label("10.6.0.0/16")
    '10-6-0-0-16'
    >>> cidr_label(ipaddress.ip_network("fd00::/64"))
    'fd00---64'
    """
    text = str(parse_cidr(network))
    return text.replace(".", "-").replace(":", "-").replace("/", "-")


def int_to_ip(n: int, version: int) -> str:
    """Render an integer address as text.

    >>> int_to_ip(167772161, 4)
    '10.0.0.1'
    >>> int_to_ip(1, 6)
    '::1'
    """
    _check_version(version)
    return str(_ADDRESS_CLASS[version](_check_address_int(n, version)))


def ip_to_int(text_or_address: str | IPAddress) -> tuple[int, int]:
    """Turn an address (text or object) into ``(integer, version)``.

    >>> ip_to_int("10.0.0.1")
    (167772161, 4)
    >>> ip_to_int("::1")
    (1, 6)
    """
    address = parse_ip(text_or_address)  # type: ignore[arg-type]
    return int(address), address.version


def address_key(n: int, version: int) -> str:
    """Fixed-width lowercase hex of an address, whose string order equals numeric order.

    Databases sort and index text cheaply but have no 128-bit integer type; this key is the sortable column.

    >>> address_key(167772161, 4)
    '0a000001'
    >>> address_key(1, 6)
    '00000000000000000000000000000001'
    """
    _check_version(version)
    return format(_check_address_int(n, version), f"0{_KEY_WIDTH[version]}x")


def key_to_int(key: str) -> int:
    """Inverse of :func:`address_key`; the family follows from the width (8 or 32 characters).

    >>> key_to_int("0a000001")
    167772161
    """
    if not isinstance(key, str) or len(key) not in (8, 32) or key.strip("0123456789abcdef"):
        raise InvalidInput(f"{key!r} is not an address key: expected 8 (IPv4) or 32 (IPv6) lowercase hex digits")
    return int(key, 16)


def _canonical_pairs(pairs: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sort pairs and join overlapping or adjacent ones; the only way a RangeSet's pairs are ever built."""
    merged: list[list[int]] = []
    for start, end in sorted(pairs):
        if merged and start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((start, end) for start, end in merged)


class RangeSet:
    """An immutable, canonical set of IP addresses of one family, stored as inclusive integer ranges.

    Canonical means sorted, non-overlapping and non-adjacent, so two sets with the same members are equal and hash
    alike whatever order their ranges were written in. ``len()`` is deliberately missing: a /64 has more members
    than ``sys.maxsize``; use :meth:`count`.

    >>> rs = RangeSet.parse(["10.0.0.5", "10.0.0.1-10.0.0.4", "10.0.0.9"])
    >>> rs.to_strings()
    ['10.0.0.1-10.0.0.5', '10.0.0.9']
    >>> rs.count(), rs.version, "10.0.0.3" in rs
    (6, 4, True)
    """

    __slots__ = ("_pairs", "_starts", "_version")

    def __init__(self, pairs: Iterable[tuple[int, int]], version: int) -> None:
        """Build from ``(start, end)`` pairs; prefer :meth:`from_pairs`, which is the documented spelling."""
        _check_version(version)
        checked = []
        for pair in pairs:
            try:
                start, end = pair
            except (TypeError, ValueError):
                raise InvalidInput(f"a range must be a (start, end) pair of ints, got {pair!r}") from None
            _check_address_int(start, version)
            _check_address_int(end, version)
            if start > end:
                raise InvalidInput(f"range ({start}, {end}) starts after it ends")
            checked.append((start, end))
        canonical = _canonical_pairs(checked)
        object.__setattr__(self, "_version", version)
        object.__setattr__(self, "_pairs", canonical)
        object.__setattr__(self, "_starts", tuple(start for start, _ in canonical))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("RangeSet is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("RangeSet is immutable")

    # -- construction ---------------------------------------------------------------------------------------------

    @classmethod
    def parse(cls, items: Iterable[str], version: int | None = None) -> RangeSet:
        """Parse Spiderpool range strings (``"10.0.0.5"`` or ``"10.0.0.1-10.0.0.10"``).

        No spaces, start ≤ end, one family; CIDR notation is refused (Spiderpool refuses it in ``ips`` and
        ``excludeIPs``) with the equivalent range in the message. Overlapping or repeated items merge. With
        ``version=None`` the family is taken from the first item.

        >>> RangeSet.parse(["10.0.0.1-10.0.0.3", "10.0.0.2-10.0.0.8"]).to_strings()
        ['10.0.0.1-10.0.0.8']
        >>> RangeSet.parse(["fd00::1-fd00::ff"]).count()
        255
        >>> RangeSet.parse(["10.0.0.0/24"])
        Traceback (most recent call last):
        ...
        spiderweb.engine.errors.InvalidInput: '10.0.0.0/24' is CIDR notation, which IP ranges do not accept; \
write '10.0.0.0-10.0.0.255'
        """
        if isinstance(items, (str, bytes)):
            raise InvalidInput(f"expected a list of IP range strings, got the single string {items!r}")
        if version is not None:
            _check_version(version)
        pairs = []
        first_item = None
        for item in items:
            start, end, item_version = _parse_range_item(item)
            if version is None:
                version, first_item = item_version, item
            elif item_version != version and first_item is not None:
                raise InvalidInput(
                    f"{item!r} is IPv{item_version} but the list started with IPv{version} "
                    f"({first_item!r}); a range list holds one family"
                )
            elif item_version != version:
                raise InvalidInput(f"{item!r} is IPv{item_version}, expected IPv{version}")
            pairs.append((start, end))
        if version is None:
            raise InvalidInput("cannot tell the IP version of an empty range list; pass version=4 or version=6")
        return cls(pairs, version)

    @classmethod
    def from_network(cls, network: IPNetwork | str, *, hosts_only: bool = False) -> RangeSet:
        """All addresses of a network, or with ``hosts_only`` the ones :meth:`ipaddress.IPv4Network.hosts` yields.

        For IPv4 ``hosts_only`` drops the network and broadcast addresses (except in /31 and /32); for IPv6 it
        drops the Subnet-Router anycast address (except in /127 and /128), matching the standard library.

        >>> RangeSet.from_network("10.0.0.0/30", hosts_only=True).to_strings()
        ['10.0.0.1-10.0.0.2']
        >>> RangeSet.from_network("fd00::/64").count() == 2**64
        True
        """
        net = parse_cidr(network)
        start, end = int(net.network_address), int(net.broadcast_address)
        if hosts_only:
            if net.version == 4 and net.prefixlen < 31:
                start, end = start + 1, end - 1
            elif net.version == 6 and net.prefixlen < 127:
                start += 1
        return cls([(start, end)], net.version)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, int]], version: int) -> RangeSet:
        """Build from inclusive ``(start, end)`` integer pairs in any order; overlaps and neighbours merge.

        >>> RangeSet.from_pairs([(5, 9), (1, 4)], 4).to_strings()
        ['0.0.0.1-0.0.0.9']
        """
        return cls(pairs, version)

    @classmethod
    def from_keys(cls, keys: Iterable[str], version: int) -> RangeSet:
        """Build from address keys (:func:`address_key`, the allocation table's sortable column), in any order.

        Runs of consecutive addresses are joined while reading, so a pool of 60,000 allocations becomes a few
        ranges after one sort instead of 60,000 validated pairs.

        >>> RangeSet.from_keys(["0a000003", "0a000001", "0a000002", "0a000009"], 4).to_strings()
        ['10.0.0.1-10.0.0.3', '10.0.0.9']
        >>> RangeSet.from_keys(["0a00001"], 4)
        Traceback (most recent call last):
        ...
        spiderweb.engine.errors.InvalidInput: '0a00001' is not an IPv4 address key: expected 8 lowercase hex digits
        """
        _check_version(version)
        width = _KEY_WIDTH[version]
        keys = list(keys)
        if not all(isinstance(key, str) for key in keys) or (
                len(joined := "".join(keys)) != width * len(keys) or joined.strip("0123456789abcdef")):
            # one pass over the joined text checks them all; only a bad batch is searched for its culprit
            for key in keys:
                if not isinstance(key, str) or len(key) != width or key.strip("0123456789abcdef"):
                    raise InvalidInput(f"{key!r} is not an IPv{version} address key: expected {width} lowercase hex "
                                       f"digits")
        numbers = [int(key, 16) for key in keys]
        numbers.sort()
        pairs: list[list[int]] = []
        for n in numbers:
            if pairs and n <= pairs[-1][1] + 1:
                pairs[-1][1] = n
            else:
                pairs.append([n, n])
        return cls(((start, end) for start, end in pairs), version)

    @classmethod
    def empty(cls, version: int) -> RangeSet:
        """The empty set of a family (an empty set still knows its family, so it combines safely).

        >>> bool(RangeSet.empty(6)), RangeSet.empty(6).version
        (False, 6)
        """
        return cls((), version)

    # -- basic protocol -------------------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """The IP version, 4 or 6."""
        return self._version

    def to_strings(self) -> list[str]:
        """Canonical Spiderpool strings: ``"a"`` for a single address, ``"a-b"`` otherwise.

        >>> RangeSet.parse(["10.0.0.7", "10.0.0.1-10.0.0.2"]).to_strings()
        ['10.0.0.1-10.0.0.2', '10.0.0.7']
        """
        out = []
        for start, end in self._pairs:
            first = int_to_ip(start, self._version)
            out.append(first if start == end else f"{first}-{int_to_ip(end, self._version)}")
        return out

    def count(self) -> int:
        """Number of addresses (a Python int, so a /64 or ``::/0`` is fine).

        >>> RangeSet.parse(["10.0.0.1-10.0.0.10", "10.0.0.20"]).count()
        11
        """
        return sum(end - start + 1 for start, end in self._pairs)

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """Iterate over the ``(start, end)`` pairs, never over single addresses (see :meth:`iter_addresses`)."""
        return iter(self._pairs)

    def __contains__(self, item: object) -> bool:
        """Membership of an int, an address text or an address object; another family is simply not a member.

        >>> rs = RangeSet.parse(["10.0.0.1-10.0.0.3"])
        >>> (167772162 in rs, "10.0.0.4" in rs, "fd00::1" in rs)
        (True, False, False)
        """
        if isinstance(item, bool):
            raise TypeError("a bool is not an IP address")
        if isinstance(item, int):
            n = item
        elif isinstance(item, (str, ipaddress.IPv4Address, ipaddress.IPv6Address)):
            address = parse_ip(item)  # type: ignore[arg-type]
            if address.version != self._version:
                return False
            n = int(address)
        else:
            raise TypeError(f"cannot test {type(item).__name__} membership in a RangeSet")
        index = bisect.bisect_right(self._starts, n) - 1
        return index >= 0 and self._pairs[index][1] >= n

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeSet):
            return NotImplemented
        return self._version == other._version and self._pairs == other._pairs

    def __hash__(self) -> int:
        return hash((self._version, self._pairs))

    def __repr__(self) -> str:
        return f"RangeSet.parse({self.to_strings()!r}, version={self._version})"

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        """Pickle and copy through the constructor, since the slots refuse assignment after construction."""
        return (RangeSet, (self._pairs, self._version))

    # -- set algebra ----------------------------------------------------------------------------------------------

    def _same_family(self, other: RangeSet) -> None:
        if not isinstance(other, RangeSet):
            raise InvalidInput(f"expected a RangeSet, got {type(other).__name__}")
        if other._version != self._version:
            raise InvalidInput(f"cannot combine IPv{self._version} ranges with IPv{other._version} ranges")

    def union(self, other: RangeSet) -> RangeSet:
        """Members of either set.

        >>> RangeSet.parse(["10.0.0.1-10.0.0.3"]).union(RangeSet.parse(["10.0.0.4"])).to_strings()
        ['10.0.0.1-10.0.0.4']
        """
        self._same_family(other)
        return RangeSet(self._pairs + other._pairs, self._version)

    def subtract(self, other: RangeSet) -> RangeSet:
        """Members of this set that are not in ``other`` (a linear merge over both pair lists).

        >>> RangeSet.parse(["10.0.0.1-10.0.0.10"]).subtract(RangeSet.parse(["10.0.0.3-10.0.0.4"])).to_strings()
        ['10.0.0.1-10.0.0.2', '10.0.0.5-10.0.0.10']
        """
        self._same_family(other)
        out = []
        cut = other._pairs
        j = 0
        for start, end in self._pairs:
            while j < len(cut) and cut[j][1] < start:
                j += 1
            current = start
            k = j
            while k < len(cut) and cut[k][0] <= end and current <= end:
                cut_start, cut_end = cut[k]
                if cut_start > current:
                    out.append((current, cut_start - 1))
                current = max(current, cut_end + 1)
                k += 1
            if current <= end:
                out.append((current, end))
        return RangeSet(out, self._version)

    def intersect(self, other: RangeSet) -> RangeSet:
        """Members of both sets.

        >>> RangeSet.parse(["10.0.0.1-10.0.0.10"]).intersect(RangeSet.parse(["10.0.0.8-10.0.0.20"])).to_strings()
        ['10.0.0.8-10.0.0.10']
        """
        self._same_family(other)
        out = []
        a, b = self._pairs, other._pairs
        i = j = 0
        while i < len(a) and j < len(b):
            low = max(a[i][0], b[j][0])
            high = min(a[i][1], b[j][1])
            if low <= high:
                out.append((low, high))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return RangeSet(out, self._version)

    def overlaps(self, other: RangeSet) -> bool:
        """True when the sets share at least one address.

        >>> RangeSet.parse(["10.0.0.1-10.0.0.5"]).overlaps(RangeSet.parse(["10.0.0.5-10.0.0.9"]))
        True
        """
        return bool(self.intersect(other))

    def issubset(self, other: RangeSet) -> bool:
        """True when every member of this set is in ``other`` (the empty set is a subset of anything).

        >>> RangeSet.parse(["10.0.0.2"]).issubset(RangeSet.from_network("10.0.0.0/30"))
        True
        """
        return not self.subtract(other)

    # -- lookups --------------------------------------------------------------------------------------------------

    def first(self) -> int | None:
        """Lowest member, or None for the empty set.

        >>> RangeSet.parse(["10.0.0.9", "10.0.0.2"]).first()
        167772162
        """
        return self._pairs[0][0] if self._pairs else None

    def last(self) -> int | None:
        """Highest member, or None for the empty set.

        >>> RangeSet.parse(["10.0.0.9", "10.0.0.2"]).last()
        167772169
        """
        return self._pairs[-1][1] if self._pairs else None

    def first_at_or_after(self, n: int) -> int | None:
        """Lowest member ≥ ``n`` by binary search over the ranges (O(log ranges)), or None.

        >>> rs = RangeSet.from_pairs([(10, 20), (30, 40)], 4)
        >>> rs.first_at_or_after(15), rs.first_at_or_after(21), rs.first_at_or_after(41)
        (15, 30, None)
        """
        if not isinstance(n, int) or isinstance(n, bool):
            raise InvalidInput(f"an address must be an int, got {n!r}")
        index = bisect.bisect_right(self._starts, n) - 1
        if index >= 0 and self._pairs[index][1] >= n:
            return n
        if index + 1 < len(self._pairs):
            return self._pairs[index + 1][0]
        return None

    def iter_addresses(self, start: int | None = None) -> Iterator[int]:
        """Lazily yield member addresses in ascending order, from ``start`` if given.

        >>> list(RangeSet.from_pairs([(1, 2), (5, 6)], 4).iter_addresses(2))
        [2, 5, 6]
        """
        index = 0
        if start is not None:
            first = self.first_at_or_after(start)
            if first is None:
                return
            index = bisect.bisect_right(self._starts, first) - 1
        for range_start, range_end in self._pairs[index:]:
            low = range_start if start is None else max(range_start, start)
            yield from range(low, range_end + 1)

    def take(self, n: int, *, skip: RangeSet | None = None) -> RangeSet:
        """The lowest ``n`` members that are not in ``skip``; raises Exhausted when fewer exist.

        Used to cut auto pools out of a subnet: the result stays a handful of ranges however large ``n`` is.

        >>> subnet = RangeSet.parse(["10.0.0.1-10.0.0.10"])
        >>> subnet.take(3, skip=RangeSet.parse(["10.0.0.2"])).to_strings()
        ['10.0.0.1', '10.0.0.3-10.0.0.4']
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise InvalidInput(f"the number of addresses to take must be an integer ≥ 0, got {n!r}")
        free = self if skip is None else self.subtract(skip)
        out = []
        missing = n
        for start, end in free._pairs:
            if missing == 0:
                break
            size = end - start + 1
            if size >= missing:
                out.append((start, start + missing - 1))
                missing = 0
            else:
                out.append((start, end))
                missing -= size
        if missing:
            available = n - missing
            raise Exhausted(
                f"need {n} free IPv{self._version} addresses but only {available} are free",
                details={"requested": n, "available": available},
            )
        return RangeSet(out, self._version)


def _parse_range_item(item: object) -> tuple[int, int, int]:
    """Parse one ``"a"`` or ``"a-b"`` string into ``(start, end, version)``."""
    if not isinstance(item, str):
        raise InvalidInput(f"an IP range must be a string like '10.0.0.1-10.0.0.10', got {item!r}")
    if item != item.strip() or " " in item:
        raise InvalidInput(f"{item!r} contains spaces; write an IP range as 'start-end' without spaces")
    if "/" in item:
        hint = ""
        try:
            net = ipaddress.ip_network(item, strict=False)
            hint = f"; write '{net.network_address}-{net.broadcast_address}'"
        except ValueError:
            pass
        raise InvalidInput(f"{item!r} is CIDR notation, which IP ranges do not accept{hint}")
    parts = item.split("-")
    if len(parts) > 2:
        raise InvalidInput(f"{item!r} is not an IP range: expected 'start-end' with a single '-'")
    if len(parts) == 1:
        address = parse_ip(item)
        return int(address), int(address), address.version
    start_text, end_text = parts
    try:
        start = parse_ip(start_text)
        end = parse_ip(end_text)
    except InvalidInput as exc:
        raise InvalidInput(f"{item!r} is not a valid IP range: {exc.message}") from None
    if start.version != end.version:
        raise InvalidInput(f"{item!r} mixes IPv{start.version} and IPv{end.version}; both ends must be one family")
    if int(start) > int(end):
        raise InvalidInput(f"{item!r} starts after it ends; write it as '{end}-{start}'")
    return int(start), int(end), start.version


def next_free(total: RangeSet, blocked: RangeSet, start: int | None = None) -> int | None:
    """The lowest address ≥ ``start`` in ``total − blocked``, or None.

    Walks the ranges instead of subtracting whole sets, so it costs O(blocked ranges skipped · log) even when
    ``total`` is a /64. ``start`` lets the allocator resume after the last address it handed out.

    >>> total = RangeSet.parse(["10.0.0.1-10.0.0.10"])
    >>> int_to_ip(next_free(total, RangeSet.parse(["10.0.0.1-10.0.0.4"])), 4)
    '10.0.0.5'
    >>> next_free(total, total) is None
    True
    """
    total._same_family(blocked)
    candidate = total.first() if start is None else total.first_at_or_after(start)
    blocked_pairs, blocked_starts = blocked._pairs, blocked._starts
    while candidate is not None:
        index = bisect.bisect_right(blocked_starts, candidate) - 1
        if index < 0 or blocked_pairs[index][1] < candidate:
            return candidate
        resume = blocked_pairs[index][1] + 1
        if resume > _MAX_ADDRESS[total.version]:
            return None
        candidate = total.first_at_or_after(resume)
    return None
