"""Pure decisions of the coordinator: mode resolution and table numbering (spec §8.2), naming, host IP choice."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.netlink import wire
from agent.netlink.coordinator import (
    ModeDecision,
    host_veth_name,
    mac_with_prefix,
    random_mac,
    resolve_mode,
    select_host_ips,
)
from agent.netlink.errors import CoordinatorError
from agent.netlink.rtnl import Route, Rule, decode_multipath, kernel_default_priority


@pytest.mark.parametrize(
    ("mode", "if_name", "up_links", "veth0", "expected"),
    [
        ("auto", "eth0", 1, False, ModeDecision("underlay", True, 101)),
        ("auto", "net1", 3, True, ModeDecision("underlay", False, 101)),  # eth0, veth0, net1
        ("auto", "net2", 4, True, ModeDecision("underlay", False, 102)),
        ("auto", "net1", 2, False, ModeDecision("overlay", True, 101)),  # eth0 (calico) + net1
        ("auto", "net2", 3, False, ModeDecision("overlay", False, 102)),
        ("underlay", "eth0", 1, False, ModeDecision("underlay", True, 101)),
        ("underlay", "net3", 5, True, ModeDecision("underlay", False, 103)),
        ("overlay", "net1", 2, False, ModeDecision("overlay", True, 101)),
        ("overlay", "net3", 4, False, ModeDecision("overlay", False, 103)),
    ],
)
def test_mode_resolution_and_table_numbering(mode, if_name, up_links, veth0, expected):
    got = resolve_mode(mode=mode, if_name=if_name, first_nic="eth0", up_links=up_links, veth0_exists=veth0)
    assert got == expected


@pytest.mark.parametrize(
    ("mode", "if_name", "veth0", "message"),
    [
        ("underlay", "net1", False, "first NIC \\(eth0\\) must also run coordinator in underlay mode"),
        ("overlay", "eth0", False, "must not run for the pod's first NIC"),
        ("overlay", "net1", True, "an earlier NIC ran in underlay mode"),
        ("bridge", "eth0", False, "unknown coordinator mode"),
    ],
)
def test_mode_resolution_refuses_inconsistent_pods(mode, if_name, veth0, message):
    with pytest.raises(CoordinatorError, match=message):
        resolve_mode(mode=mode, if_name=if_name, first_nic="eth0", up_links=2, veth0_exists=veth0)


def test_first_nic_name_is_configurable():
    got = resolve_mode(mode="auto", if_name="net0", first_nic="net0", up_links=1, veth0_exists=False)
    assert got == ModeDecision("underlay", True, 101)


def test_host_veth_name_uses_eleven_characters_of_the_container_id():
    assert host_veth_name("abcdef0123456789") == "vethabcdef01234"
    assert host_veth_name("short") == "vethshort"
    with pytest.raises(CoordinatorError, match="containerID"):
        host_veth_name("")


@pytest.mark.parametrize(
    ("ip", "expected"),
    [("10.6.0.100", "0a:bc:0a:06:00:64"), ("fd00::c0a8:0101", "0a:bc:c0:a8:01:01"), ("255.0.0.1", "0a:bc:ff:00:00:01")],
)
def test_mac_with_prefix(ip, expected):
    assert mac_with_prefix("0A:BC", ipaddress.ip_address(ip)) == expected


@given(st.integers(min_value=0, max_value=50))
def test_random_macs_are_unicast_and_locally_administered(_):
    first = int(random_mac().split(":")[0], 16)
    assert first & 0x01 == 0 and first & 0x02 == 0x02


def test_select_host_ips_orders_route_sources_first_and_applies_the_exclusion_list():
    a = ipaddress.ip_address
    host = [(name, a(ip)) for name, ip in [
        ("lo", "127.0.0.1"), ("ens1", "10.6.0.10"), ("ens2", "10.7.0.10"), ("docker0", "172.17.0.1"),
        ("cbr0", "10.1.0.1"), ("dummy0", "10.2.0.1"), ("virbr0", "192.168.122.1"), ("lxcbr0", "10.3.0.1"),
        ("vethabc", "10.4.0.1"), ("cali123", "10.5.0.1"), ("flannel.1", "10.8.0.1"), ("kube-ipvs0", "10.233.0.1"),
        ("cni0", "10.9.0.1"), ("vx-submariner", "240.0.0.1"), ("cilium_host", "10.10.0.1"),
        ("ens1", "fd00:6::10"), ("ens1", "fe80::1"), ("bond0", "192.168.9.9"),
    ]]
    assert select_host_ips([a("10.7.0.10"), a("10.4.0.1")], host, {4}) == [
        a("10.7.0.10"), a("10.4.0.1"), a("10.6.0.10"), a("192.168.9.9")]
    assert select_host_ips([], host, {6}) == [a("fd00:6::10")]
    assert select_host_ips([], host, {4, 6}) == [a("10.6.0.10"), a("10.7.0.10"), a("fd00:6::10"), a("192.168.9.9")]


def test_kernel_default_priority_is_just_below_the_first_rule_after_local():
    rules = [Rule(4, 255, 0), Rule(4, 100, 1000, fwmark=1), Rule(4, 101, 999), Rule(4, 254, 32766)]
    assert kernel_default_priority(rules) == 998
    assert kernel_default_priority([Rule(4, 255, 0)]) == 32765


def test_route_message_and_identity():
    route = Route(table=1001, dst=ipaddress.ip_network("10.6.0.10/32"), oif=3, scope=253, prefsrc="10.6.0.100")
    header, attrs = route.message()
    # family, dst_len, src_len, tos, table (UNSPEC: above 255, RTA_TABLE carries it), protocol, scope, type, flags
    assert wire.RTMSG.unpack(header) == (2, 32, 0, 0, 0, 3, 253, 1, 0)
    fields = wire.parse_attrs(attrs)
    assert wire.U32.unpack(fields[wire.RTA_TABLE])[0] == 1001 and wire.U32.unpack(fields[wire.RTA_OIF])[0] == 3
    assert wire.ip_text(fields[wire.RTA_DST]) == "10.6.0.10" and wire.ip_text(fields[wire.RTA_PREFSRC]) == "10.6.0.100"
    assert route.same_as(Route(table=1001, dst=route.dst, oif=3, scope=253, prefsrc="10.6.0.100", priority=0))
    assert not route.same_as(Route(table=1001, dst=route.dst, oif=4, scope=253, prefsrc="10.6.0.100"))
    multipath = Route(table=254, dst=ipaddress.ip_network("::/0"), multipath=((2, "fd00::1"), (3, "fd00::2")))
    assert multipath.uses(3) and not multipath.uses(4)
    header, attrs = multipath.message()
    assert wire.RTMSG.unpack(header)[:5] == (10, 0, 0, 0, 254)
    fields = wire.parse_attrs(attrs)
    assert wire.RTA_DST not in fields and wire.RTA_OIF not in fields
    assert decode_multipath(fields[wire.RTA_MULTIPATH]) == ((2, "fd00::1"), (3, "fd00::2"))
