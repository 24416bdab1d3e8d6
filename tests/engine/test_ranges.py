"""Unit tests for spiderweb.engine.ranges: parsing, rendering and RangeSet operations, including huge IPv6 sets."""

import copy
import ipaddress
import pickle

import pytest

from spiderweb.engine.errors import Exhausted, InvalidInput
from spiderweb.engine.ranges import (
    RangeSet,
    address_key,
    cidr_label,
    int_to_ip,
    ip_to_int,
    key_to_int,
    next_free,
    parse_cidr,
    parse_ip,
)

V6_TOP = 2**128 - 1
V4_TOP = 2**32 - 1


def v4(*items):
    return RangeSet.parse(list(items), 4)


def v6(*items):
    return RangeSet.parse(list(items), 6)


# -- parse_ip ---------------------------------------------------------------------------------------------------------


def test_parse_ip_accepts_both_families_and_normalises():
    assert parse_ip("10.6.0.1") == ipaddress.IPv4Address("10.6.0.1")
    assert str(parse_ip("FD00:0:0::1")) == "fd00::1"


def test_parse_ip_passes_address_objects_through():
    address = ipaddress.IPv6Address("fd00::1")
    assert parse_ip(address, 6) is address


@pytest.mark.parametrize(
    ("text", "version", "message"),
    [
        ("10.0.0.300", None, "'10.0.0.300' is not a valid IP address"),
        ("10.0.0.300", 4, "'10.0.0.300' is not a valid IPv4 address"),
        ("fd00::1", 4, "'fd00::1' is an IPv6 address, expected IPv4"),
        ("10.0.0.1", 6, "'10.0.0.1' is an IPv4 address, expected IPv6"),
        ("fe80::1%eth0", None, "zone suffixes are not allowed"),
        (" 10.0.0.1", None, "is not a valid IP address"),
        ("010.0.0.1", None, "is not a valid IP address"),
        (167772161, None, "must be a string"),
    ],
)
def test_parse_ip_rejects_bad_input_with_a_readable_message(text, version, message):
    with pytest.raises(InvalidInput, match=message) as excinfo:
        parse_ip(text, version)
    assert excinfo.value.code == "invalid_input"


def test_parse_ip_rejects_an_unknown_version():
    with pytest.raises(InvalidInput, match="IP version must be 4 or 6, got 5"):
        parse_ip("10.0.0.1", 5)


# -- parse_cidr / cidr_label ------------------------------------------------------------------------------------------


def test_parse_cidr_accepts_canonical_networks():
    assert parse_cidr("10.6.0.0/16") == ipaddress.ip_network("10.6.0.0/16")
    assert parse_cidr("fd00::/64", 6) == ipaddress.ip_network("fd00::/64")


def test_parse_cidr_names_the_canonical_form_when_host_bits_are_set():
    with pytest.raises(InvalidInput) as excinfo:
        parse_cidr("10.6.1.0/16")
    assert excinfo.value.message == '"10.6.1.0/16" is not canonical, use "10.6.0.0/16"'


def test_parse_cidr_refuses_non_normalised_ipv6_spelling():
    with pytest.raises(InvalidInput, match='"FD00:0::/64" is not canonical, use "fd00::/64"'):
        parse_cidr("FD00:0::/64")


@pytest.mark.parametrize(
    ("text", "version", "message"),
    [
        ("10.6.0.0", None, "is not a CIDR: expected an IP network with a prefix length"),
        ("10.6.0.0/33", None, "'10.6.0.0/33' is not a valid IP CIDR"),
        ("fd00::/64", 4, "'fd00::/64' is an IPv6 CIDR, expected IPv4"),
        ("10.6.0.0/255.255.0.0", None, 'use "10.6.0.0/16"'),
        ("fe80::%eth0/64", None, "zone suffixes are not allowed"),
        (None, None, "a CIDR must be a string"),
    ],
)
def test_parse_cidr_rejects_bad_input(text, version, message):
    with pytest.raises(InvalidInput, match=message):
        parse_cidr(text, version)


def test_parse_cidr_checks_the_family_of_network_objects():
    with pytest.raises(InvalidInput, match="is an IPv4 CIDR, expected IPv6"):
        parse_cidr(ipaddress.ip_network("10.0.0.0/8"), 6)


def test_cidr_label_replaces_dots_colons_and_slashes():
    assert cidr_label("10.6.0.0/16") == "10-6-0-0-16"
    assert cidr_label(ipaddress.ip_network("fd00::/64")) == "fd00---64"
    assert cidr_label("fd00:1:2::/48") == "fd00-1-2---48"


# -- integer conversions and keys -------------------------------------------------------------------------------------


def test_int_to_ip_and_ip_to_int_round_trip_at_the_edges_of_both_families():
    for n, version in [(0, 4), (V4_TOP, 4), (0, 6), (V6_TOP, 6), (2**64, 6)]:
        assert ip_to_int(int_to_ip(n, version)) == (n, version)
    assert int_to_ip(V6_TOP, 6) == "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    assert ip_to_int(ipaddress.IPv4Address("10.0.0.1")) == (167772161, 4)


@pytest.mark.parametrize(("n", "version"), [(-1, 4), (2**32, 4), (2**128, 6), (True, 4), (1.0, 4)])
def test_int_to_ip_rejects_values_outside_the_family(n, version):
    with pytest.raises(InvalidInput):
        int_to_ip(n, version)


def test_address_key_is_fixed_width_and_sorts_like_the_number():
    numbers = [0, 1, 255, 256, 2**31, V4_TOP]
    keys = [address_key(n, 4) for n in numbers]
    assert all(len(key) == 8 for key in keys)
    assert sorted(keys) == keys
    six = [0, 15, 16, 2**64, V6_TOP]
    six_keys = [address_key(n, 6) for n in six]
    assert all(len(key) == 32 for key in six_keys)
    assert sorted(six_keys) == six_keys
    assert address_key(V6_TOP, 6) == "f" * 32


def test_key_to_int_reverses_address_key():
    for n, version in [(0, 4), (167772161, 4), (V6_TOP, 6), (2**64 + 5, 6)]:
        assert key_to_int(address_key(n, version)) == n


@pytest.mark.parametrize("key", ["0A000001", "a000001", "0a00000g", "", 5, "0" * 16])
def test_key_to_int_rejects_malformed_keys(key):
    with pytest.raises(InvalidInput, match="not an address key"):
        key_to_int(key)


# -- RangeSet.parse and canonical form --------------------------------------------------------------------------------


def test_parse_merges_overlapping_repeated_and_adjacent_items_into_canonical_ranges():
    # Given ranges out of order, overlapping, repeated and touching
    rs = RangeSet.parse(["10.0.0.20", "10.0.0.5-10.0.0.9", "10.0.0.1-10.0.0.6", "10.0.0.10", "10.0.0.20"])
    # Then they collapse to sorted, disjoint, non-adjacent ranges
    assert list(rs) == [(167772161, 167772170), (167772180, 167772180)]
    assert rs.to_strings() == ["10.0.0.1-10.0.0.10", "10.0.0.20"]
    assert rs.version == 4


def test_parse_infers_ipv6_from_the_first_item():
    rs = RangeSet.parse(["fd00::10-fd00::1f", "fd00::1"])
    assert rs.version == 6
    assert rs.to_strings() == ["fd00::1", "fd00::10-fd00::1f"]


def test_parse_accepts_an_empty_list_when_the_version_is_given():
    assert RangeSet.parse([], 6) == RangeSet.empty(6)


@pytest.mark.parametrize(
    ("items", "version", "message"),
    [
        (["10.0.0.1 - 10.0.0.2"], None, "contains spaces"),
        (["10.0.0.0/24"], None, "is CIDR notation, which IP ranges do not accept; write '10.0.0.0-10.0.0.255'"),
        (["10.0.0.5-10.0.0.1"], None, "starts after it ends; write it as '10.0.0.1-10.0.0.5'"),
        (["10.0.0.1-fd00::1"], None, "mixes IPv4 and IPv6"),
        (["10.0.0.1", "fd00::1"], None, r"'fd00::1' is IPv6 but the list started with IPv4 \('10.0.0.1'\)"),
        (["fd00::1-fd00::2"], 4, "'fd00::1-fd00::2' is IPv6, expected IPv4"),
        (["1.2.3.4-1.2.3.5-1.2.3.6"], None, "single '-'"),
        (["10.0.0.1-10.0.0.x"], None, "'10.0.0.1-10.0.0.x' is not a valid IP range"),
        (["10.0.0.x"], None, "'10.0.0.x' is not a valid IP address"),
        ([42], None, "must be a string"),
        ([], None, "cannot tell the IP version of an empty range list"),
        ("10.0.0.1", None, "got the single string"),
        (["10.0.0.1"], 5, "IP version must be 4 or 6"),
    ],
)
def test_parse_rejects_bad_items_naming_them(items, version, message):
    with pytest.raises(InvalidInput, match=message):
        RangeSet.parse(items, version)


def test_from_pairs_validates_pairs():
    with pytest.raises(InvalidInput, match="starts after it ends"):
        RangeSet.from_pairs([(5, 1)], 4)
    with pytest.raises(InvalidInput, match="is not an IPv4 address"):
        RangeSet.from_pairs([(0, 2**32)], 4)
    with pytest.raises(InvalidInput, match="pair of ints"):
        RangeSet.from_pairs([(1, 2, 3)], 4)
    with pytest.raises(InvalidInput, match="must be an int"):
        RangeSet.from_pairs([("1", 2)], 4)


def test_from_network_covers_all_addresses_or_only_hosts():
    assert RangeSet.from_network("10.0.0.0/30").to_strings() == ["10.0.0.0-10.0.0.3"]
    assert RangeSet.from_network("10.0.0.0/30", hosts_only=True).to_strings() == ["10.0.0.1-10.0.0.2"]
    assert RangeSet.from_network("10.0.0.0/31", hosts_only=True).count() == 2
    assert RangeSet.from_network("10.0.0.7/32", hosts_only=True).to_strings() == ["10.0.0.7"]
    assert RangeSet.from_network("fd00::/126", hosts_only=True).to_strings() == ["fd00::1-fd00::3"]
    assert RangeSet.from_network("fd00::/127", hosts_only=True).count() == 2


def test_from_network_hosts_only_agrees_with_the_standard_library_on_small_networks():
    for text in ["192.168.1.0/29", "192.168.1.0/31", "fd00::/125", "fd00::/127", "fd00::5/128"]:
        network = ipaddress.ip_network(text)
        expected = {int(host) for host in network.hosts()}
        rs = RangeSet.from_network(network, hosts_only=True)
        assert set(rs.iter_addresses()) == expected, text


def test_rangeset_is_immutable_hashable_and_equal_by_members():
    a = RangeSet.parse(["10.0.0.1-10.0.0.5", "10.0.0.6"])
    b = RangeSet.parse(["10.0.0.6", "10.0.0.1-10.0.0.5"])
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    with pytest.raises(AttributeError):
        a._pairs = ()
    with pytest.raises(AttributeError):
        a.version = 6


def test_rangeset_survives_pickle_and_copy():
    rs = v6("fd00::1", "fd00::10-fd00::20")
    assert pickle.loads(pickle.dumps(rs)) == rs
    assert copy.copy(rs) == rs
    assert copy.deepcopy(rs) == rs
    assert pickle.loads(pickle.dumps(RangeSet.empty(4))) == RangeSet.empty(4)


def test_empty_sets_of_different_families_are_different():
    assert RangeSet.empty(4) != RangeSet.empty(6)
    assert RangeSet.empty(4) == RangeSet.parse([], 4)
    assert RangeSet.empty(4) != "nothing"


def test_rangeset_has_no_len_but_counts_huge_sets():
    whole = RangeSet.from_network("::/0")
    assert whole.count() == 2**128
    with pytest.raises(TypeError):
        len(whole)


def test_repr_round_trips_through_eval():
    rs = v6("fd00::1", "fd00::10-fd00::20")
    assert eval(repr(rs), {"RangeSet": RangeSet}) == rs  # noqa: S307 - test of repr only


# -- membership, first/last, iteration --------------------------------------------------------------------------------


def test_contains_accepts_ints_texts_and_address_objects():
    rs = v4("10.0.0.1-10.0.0.3", "10.0.0.9")
    assert 167772161 in rs
    assert "10.0.0.9" in rs
    assert ipaddress.IPv4Address("10.0.0.2") in rs
    assert "10.0.0.4" not in rs
    assert "fd00::1" not in rs
    assert 0 not in rs


def test_contains_rejects_garbage():
    rs = v4("10.0.0.1")
    with pytest.raises(InvalidInput):
        assert "not-an-ip" in rs
    with pytest.raises(TypeError):
        assert 1.5 in rs
    with pytest.raises(TypeError):
        assert True in rs


def test_first_last_and_bool():
    rs = v4("10.0.0.9", "10.0.0.2-10.0.0.3")
    assert int_to_ip(rs.first(), 4) == "10.0.0.2"
    assert int_to_ip(rs.last(), 4) == "10.0.0.9"
    assert bool(rs)
    empty = RangeSet.empty(4)
    assert not empty
    assert empty.first() is None
    assert empty.last() is None


def test_first_at_or_after_uses_the_next_range_when_between_ranges():
    rs = RangeSet.from_pairs([(10, 20), (30, 40)], 4)
    assert rs.first_at_or_after(0) == 10
    assert rs.first_at_or_after(10) == 10
    assert rs.first_at_or_after(20) == 20
    assert rs.first_at_or_after(21) == 30
    assert rs.first_at_or_after(40) == 40
    assert rs.first_at_or_after(41) is None
    assert RangeSet.empty(4).first_at_or_after(0) is None
    with pytest.raises(InvalidInput):
        rs.first_at_or_after("10")


def test_iter_addresses_is_lazy_on_a_whole_slash_64():
    # Given a /64, when only the first three addresses are consumed, then iteration stops without expanding it
    rs = RangeSet.from_network("fd00::/64")
    iterator = rs.iter_addresses()
    base = rs.first()
    assert [next(iterator) for _ in range(3)] == [base, base + 1, base + 2]


def test_iter_addresses_from_a_start_skips_earlier_members():
    rs = RangeSet.from_pairs([(1, 3), (7, 8)], 4)
    assert list(rs.iter_addresses()) == [1, 2, 3, 7, 8]
    assert list(rs.iter_addresses(2)) == [2, 3, 7, 8]
    assert list(rs.iter_addresses(4)) == [7, 8]
    assert list(rs.iter_addresses(9)) == []


# -- set algebra ------------------------------------------------------------------------------------------------------


def test_union_subtract_intersect_on_small_sets():
    a = v4("10.0.0.1-10.0.0.10")
    b = v4("10.0.0.5-10.0.0.15")
    assert a.union(b).to_strings() == ["10.0.0.1-10.0.0.15"]
    assert a.subtract(b).to_strings() == ["10.0.0.1-10.0.0.4"]
    assert b.subtract(a).to_strings() == ["10.0.0.11-10.0.0.15"]
    assert a.intersect(b).to_strings() == ["10.0.0.5-10.0.0.10"]


def test_subtract_punches_several_holes_in_one_range():
    total = v4("10.0.0.0-10.0.0.20")
    holes = v4("10.0.0.0", "10.0.0.3-10.0.0.4", "10.0.0.10", "10.0.0.20-10.0.0.30")
    assert total.subtract(holes).to_strings() == ["10.0.0.1-10.0.0.2", "10.0.0.5-10.0.0.9", "10.0.0.11-10.0.0.19"]


def test_overlaps_and_issubset():
    a = v4("10.0.0.1-10.0.0.5")
    assert a.overlaps(v4("10.0.0.5-10.0.0.9"))
    assert not a.overlaps(v4("10.0.0.6-10.0.0.9"))
    assert a.issubset(RangeSet.from_network("10.0.0.0/29"))
    assert not a.issubset(v4("10.0.0.2-10.0.0.9"))
    assert RangeSet.empty(4).issubset(RangeSet.empty(4))


def test_operations_refuse_to_mix_families():
    with pytest.raises(InvalidInput, match="cannot combine IPv4 ranges with IPv6 ranges"):
        v4("10.0.0.1").union(v6("fd00::1"))
    with pytest.raises(InvalidInput, match="cannot combine"):
        next_free(v4("10.0.0.1"), RangeSet.empty(6))
    with pytest.raises(InvalidInput, match="expected a RangeSet"):
        v4("10.0.0.1").subtract(["10.0.0.1"])


# -- take -------------------------------------------------------------------------------------------------------------


def test_take_returns_the_lowest_members_outside_skip():
    subnet = v4("10.0.0.1-10.0.0.10")
    taken = subnet.take(4, skip=v4("10.0.0.2", "10.0.0.4"))
    assert taken.to_strings() == ["10.0.0.1", "10.0.0.3", "10.0.0.5-10.0.0.6"]
    assert subnet.take(0) == RangeSet.empty(4)


def test_take_raises_exhausted_with_counts_when_too_few_are_free():
    with pytest.raises(Exhausted, match="need 5 free IPv4 addresses but only 3 are free") as excinfo:
        v4("10.0.0.1-10.0.0.5").take(5, skip=v4("10.0.0.1-10.0.0.2"))
    assert excinfo.value.details == {"requested": 5, "available": 3}
    assert excinfo.value.code == "ip_exhausted"


@pytest.mark.parametrize("n", [-1, 1.5, "3", True])
def test_take_rejects_a_bad_count(n):
    with pytest.raises(InvalidInput, match="integer ≥ 0"):
        v4("10.0.0.1-10.0.0.5").take(n)


def test_take_half_of_a_slash_64_stays_one_range():
    subnet = RangeSet.from_network("fd00::/64")
    half = subnet.take(2**63)
    assert half.to_strings() == ["fd00::-fd00::7fff:ffff:ffff:ffff"]
    assert half.count() == 2**63


# -- next_free --------------------------------------------------------------------------------------------------------


def test_next_free_skips_blocked_ranges_and_honours_start():
    total = v4("10.0.0.1-10.0.0.10", "10.0.0.20-10.0.0.30")
    blocked = v4("10.0.0.1-10.0.0.10", "10.0.0.20", "10.0.0.22")
    assert int_to_ip(next_free(total, blocked), 4) == "10.0.0.21"
    assert int_to_ip(next_free(total, blocked, ip_to_int("10.0.0.22")[0]), 4) == "10.0.0.23"
    assert next_free(total, blocked, ip_to_int("10.0.0.31")[0]) is None
    assert next_free(total, total) is None
    assert next_free(RangeSet.empty(4), RangeSet.empty(4)) is None


def test_next_free_in_a_slash_64_with_a_huge_blocked_prefix():
    # Given a /64 whose first 2**40 + 1 addresses are taken
    total = RangeSet.from_network("fd00::/64")
    base = total.first()
    blocked = RangeSet.from_pairs([(base, base + 2**40)], 6)
    # When asking for the next free address, then it is found right after the block, computed on ranges
    assert next_free(total, blocked) == base + 2**40 + 1


def test_next_free_at_the_very_top_of_the_ipv6_space():
    everything = RangeSet.from_network("::/0")
    assert next_free(everything, RangeSet.from_pairs([(0, V6_TOP - 1)], 6)) == V6_TOP
    assert next_free(everything, everything) is None
    assert next_free(everything, RangeSet.from_pairs([(V6_TOP, V6_TOP)], 6), V6_TOP) is None
    assert next_free(everything, RangeSet.empty(6), V6_TOP) == V6_TOP


def test_next_free_at_the_top_of_the_ipv4_space():
    total = RangeSet.from_network("255.255.255.0/24")
    assert next_free(total, RangeSet.parse(["255.255.255.0-255.255.255.254"])) == V4_TOP
    assert next_free(total, total) is None


def test_whole_ipv6_space_operations_stay_on_ranges():
    everything = RangeSet.from_network("::/0")
    top_half = RangeSet.from_network("8000::/1")
    low = everything.subtract(top_half)
    assert low.to_strings() == ["::-7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]
    assert low.union(top_half) == everything
    assert everything.intersect(top_half) == top_half
    assert everything.first_at_or_after(V6_TOP) == V6_TOP
    assert everything.to_strings() == ["::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]


def test_slash_64_minus_a_few_addresses_counts_exactly():
    subnet = RangeSet.from_network("fd00::/64")
    excluded = v6("fd00::", "fd00::1-fd00::ff", "fd00::ffff:ffff:ffff:ffff")
    rest = subnet.subtract(excluded)
    assert rest.count() == 2**64 - 257
    assert rest.to_strings() == ["fd00::100-fd00::ffff:ffff:ffff:fffe"]
    assert "fd00::100" in rest
    assert "fd00::ff" not in rest
