"""Unit tests for spiderweb.engine.routes: gateway and route validation, the routes annotation."""

import ipaddress

import pytest

from spiderweb.engine.errors import InvalidInput
from spiderweb.engine.ranges import RangeSet
from spiderweb.engine.routes import Route, default_route, parse_route_annotation, validate_gateway, validate_routes

POOL_IPS = RangeSet.parse(["10.6.0.10-10.6.0.20"])


def test_route_to_dict():
    assert Route("10.0.0.0/16", "10.6.0.1").to_dict() == {"dst": "10.0.0.0/16", "gw": "10.6.0.1"}


def test_default_route_per_family():
    assert default_route(4) == "0.0.0.0/0"
    assert default_route(6) == "::/0"
    with pytest.raises(InvalidInput, match="IP version must be 4 or 6"):
        default_route(5)


# -- validate_gateway -------------------------------------------------------------------------------------------------


def test_gateway_inside_subnet_and_outside_pool_ips_is_returned_canonical():
    assert validate_gateway("10.6.0.1", "10.6.0.0/16", POOL_IPS) == "10.6.0.1"
    subnet = ipaddress.ip_network("fd00::/64")
    assert validate_gateway("FD00:0::1", subnet, RangeSet.parse(["fd00::10-fd00::20"])) == "fd00::1"


def test_unset_gateway_is_none():
    assert validate_gateway(None, "10.6.0.0/16", POOL_IPS) is None
    assert validate_gateway("", "10.6.0.0/16", POOL_IPS) is None


def test_gateway_covered_by_exclude_ips_is_allowed():
    # Given a pool whose ips contain the gateway but whose excludeIPs remove it again
    total = RangeSet.parse(["10.6.0.1-10.6.0.20"]).subtract(RangeSet.parse(["10.6.0.1"]))
    # Then the gateway is accepted, because total IPs is ips − excludeIPs
    assert validate_gateway("10.6.0.1", "10.6.0.0/16", total) == "10.6.0.1"


@pytest.mark.parametrize(
    ("gateway", "message"),
    [
        ("10.7.0.1", "gateway 10.7.0.1 is outside subnet 10.6.0.0/16"),
        ("10.6.0.15", "gateway 10.6.0.15 is one of the pool's IPs; remove it from ips or add it to excludeIPs"),
        ("fd00::1", "gateway 'fd00::1' is IPv6 but subnet 10.6.0.0/16 is IPv4"),
        ("10.6.0.x", "gateway '10.6.0.x' is not a valid IP address"),
        (42, "gateway must be an IP address string"),
    ],
)
def test_bad_gateways_are_rejected_with_the_reason(gateway, message):
    with pytest.raises(InvalidInput, match=message):
        validate_gateway(gateway, "10.6.0.0/16", POOL_IPS)


# -- validate_routes --------------------------------------------------------------------------------------------------


def test_valid_routes_are_returned_canonical():
    routes = validate_routes(
        [{"dst": "172.16.0.0/16", "gw": "10.6.0.1"}, {"dst": "192.168.1.7/24", "gw": "10.6.0.254"}], "10.6.0.0/16"
    )
    # host bits in dst are cleared (Spiderpool accepts them, so mirrored pools must load)
    assert routes == [Route("172.16.0.0/16", "10.6.0.1"), Route("192.168.1.0/24", "10.6.0.254")]


def test_no_routes():
    assert validate_routes([], "10.6.0.0/16") == []
    assert validate_routes(None, "10.6.0.0/16") == []


def test_ipv6_routes():
    assert validate_routes([{"dst": "fd01::/64", "gw": "fd00::1"}], "fd00::/64") == [Route("fd01::/64", "fd00::1")]


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ([{"dst": "0.0.0.0/0", "gw": "10.6.0.1"}], r"routes\[0\].dst 0.0.0.0/0 is the default route"),
        ([{"dst": "fd01::/64", "gw": "10.6.0.1"}], r"\[0\].dst 'fd01::/64' is IPv6 but subnet 10.6.0.0/16 is IPv4"),
        ([{"dst": "10.0.0.0/33", "gw": "10.6.0.1"}], r"routes\[0\].dst '10.0.0.0/33' is not a valid CIDR"),
        ([{"dst": "10.0.0.1", "gw": "10.6.0.1"}], r"routes\[0\].dst '10.0.0.1' is not a valid CIDR"),
        ([{"dst": "10.1.0.0/16", "gw": "10.7.0.1"}], r"routes\[0\].gw 10.7.0.1 is outside subnet 10.6.0.0/16"),
        ([{"dst": "10.1.0.0/16", "gw": "fd00::1"}], r"routes\[0\].gw 'fd00::1' is IPv6 but subnet"),
        (
            [{"dst": "10.1.0.0/16", "gw": "10.6.0.1"}, {"dst": "10.1.0.0/16", "gw": "10.6.0.2"}],
            r"routes\[1\].dst 10.1.0.0/16 repeats routes\[0\].dst",
        ),
        ([{"dst": "10.1.0.0/16"}], r"routes\[0\].gw is required"),
        ([{"gw": "10.6.0.1", "dst": ""}], r"routes\[0\].dst is required"),
        (["10.1.0.0/16 via 10.6.0.1"], r"routes\[0\] must be an object"),
        ({"dst": "10.1.0.0/16", "gw": "10.6.0.1"}, "routes must be a list"),
    ],
)
def test_bad_routes_are_rejected_naming_the_route(routes, message):
    with pytest.raises(InvalidInput, match=message):
        validate_routes(routes, "10.6.0.0/16")


def test_duplicate_detection_uses_the_canonical_destination():
    with pytest.raises(InvalidInput, match="repeats"):
        validate_routes(
            [{"dst": "10.1.0.0/16", "gw": "10.6.0.1"}, {"dst": "10.1.2.3/16", "gw": "10.6.0.1"}], "10.6.0.0/16"
        )


def test_routes_need_a_canonical_subnet():
    with pytest.raises(InvalidInput, match="is not canonical"):
        validate_routes([], "10.6.1.0/16")


# -- parse_route_annotation -------------------------------------------------------------------------------------------


def test_route_annotation_of_both_families():
    text = '[{"dst": "10.0.0.0/16", "gw": "192.168.1.1"}, {"dst": "fd01::/64", "gw": "fd00::1"}]'
    assert parse_route_annotation(text) == [Route("10.0.0.0/16", "192.168.1.1"), Route("fd01::/64", "fd00::1")]


def test_route_annotation_keys_match_case_insensitively_like_go():
    assert parse_route_annotation('[{"Dst": "10.0.0.0/16", "GW": "192.168.1.1"}]') == [
        Route("10.0.0.0/16", "192.168.1.1")
    ]


def test_route_annotation_null_and_empty_list():
    assert parse_route_annotation("null") == []
    assert parse_route_annotation("[]") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "ipam.spidernet.io/routes is not valid JSON"),
        ('[{"dst": "10.0.0.0/16", "gw": "192.168.1.1"}', "is not valid JSON"),
        ('{"dst": "10.0.0.0/16", "gw": "192.168.1.1"}', "must be a JSON list"),
        ('[{"dst": "fd00::/64", "gw": "192.168.1.1"}]', r"\[0\]: dst fd00::/64 is IPv6 but gw 192.168.1.1 is IPv4"),
        ('[{"dst": "10.0.0.0/40", "gw": "192.168.1.1"}]', r"\[0\]: dst '10.0.0.0/40' is not a valid CIDR"),
        ('[{"dst": "10.0.0.0/16", "gw": "192.168.1"}]', r"\[0\]: gw '192.168.1' is not a valid IP address"),
        ('[{"dst": "10.0.0.0/16"}]', r"\[0\].gw is required"),
        ("[1]", r"\[0\] must be an object"),
    ],
)
def test_bad_route_annotations_are_rejected(text, message):
    with pytest.raises(InvalidInput, match=message):
        parse_route_annotation(text)


def test_route_annotation_must_be_text():
    with pytest.raises(InvalidInput, match="must be a JSON string"):
        parse_route_annotation([{"dst": "10.0.0.0/16", "gw": "192.168.1.1"}])
