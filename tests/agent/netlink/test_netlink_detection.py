"""IP conflict and gateway detection, GARP / unsolicited NA (F28-F30), on a real bridged segment."""

from __future__ import annotations

import ipaddress
import struct
import time

import pytest
from netlink_lab import Capture, Underlay, add_addresses, ipr

from agent.netlink.detection import (
    OK,
    ConflictFound,
    GatewayUnreachable,
    announce,
    arp_frame,
    check_gateway,
    check_ip_conflict,
    check_ipv4_conflict,
    check_ipv4_gateway,
    check_ipv6_conflict,
    check_ipv6_gateway,
    detect,
    na_frame,
    ns_frame,
    parse_arp,
    parse_ndp,
    solicited_node,
)
from agent.netlink.errors import DetectionError


def link_mac(path: str, name: str) -> str:
    with ipr(path) as handle:
        return handle.link("get", index=handle.link_lookup(ifname=name)[0])[0].get_attr("IFLA_ADDRESS")


def link_up(path: str, name: str) -> bool:
    with ipr(path) as handle:
        return bool(handle.link("get", index=handle.link_lookup(ifname=name)[0])[0]["flags"] & 1)


@pytest.fixture
def segment(underlay: Underlay):
    """A squatter holding 10.6.0.50 / fd00:6::50 on br0, and a new pod whose eth0 is down and unaddressed."""
    squatter = underlay.pod("squatter")
    underlay.lab.cable(underlay.switch, "br0", squatter, "sq0")
    add_addresses(squatter, "sq0", ["10.6.0.50/24", "fd00:6::50/64"])
    pod = underlay.pod("newpod")
    underlay.lab.macvlan(underlay.host, "ens1", pod, "eth0", [], up=False)
    return underlay, squatter, pod


# --- on the wire ------------------------------------------------------------------------------------------


@pytest.mark.netns
def test_ipv4_conflict_names_the_mac_holding_the_address(segment):
    u, squatter, pod = segment
    assert not link_up(pod, "eth0")
    assert check_ipv4_conflict(netns_path=pod, if_name="eth0", ip="10.6.0.50") == ConflictFound(
        ip="10.6.0.50", mac=link_mac(squatter, "sq0"))
    assert link_up(pod, "eth0")  # brought up first (spec §11.4 step 1)
    assert check_ipv4_conflict(netns_path=pod, if_name="eth0", ip="10.6.0.51") == OK


@pytest.mark.netns
def test_ipv6_conflict_names_the_mac_holding_the_address(segment):
    u, squatter, pod = segment
    found = check_ipv6_conflict(netns_path=pod, if_name="eth0", ip="fd00:6::50")
    assert found == ConflictFound(ip="fd00:6::50", mac=link_mac(squatter, "sq0"))
    assert found.message == f"ip conflict: fd00:6::50 is already used by {link_mac(squatter, 'sq0')}"
    assert check_ipv6_conflict(netns_path=pod, if_name="eth0", ip="fd00:6::51") == OK


@pytest.mark.netns
def test_an_address_held_by_ourselves_is_not_a_conflict(underlay):
    pod = underlay.underlay_pod("pod1", "10.6.0.100/24", "fd00:6::100/64")
    assert check_ip_conflict(netns_path=pod, if_name="eth0", ip="10.6.0.100") == OK
    assert check_ip_conflict(netns_path=pod, if_name="eth0", ip="fd00:6::100") == OK


@pytest.mark.netns
@pytest.mark.parametrize(("ip", "gateway", "absent"), [("10.6.0.60", "10.6.0.1", "10.6.0.254"),
                                                      ("fd00:6::60", "fd00:6::1", "fd00:6::254")])
def test_gateway_reachability(segment, ip, gateway, absent):
    u, _, pod = segment
    assert check_gateway(netns_path=pod, if_name="eth0", ip=ip, gateway=gateway) == OK
    started = time.monotonic()
    result = check_gateway(netns_path=pod, if_name="eth0", ip=ip, gateway=absent)
    assert result == GatewayUnreachable(gw=absent)
    assert result.message == f"gateway {absent} is unreachable"
    assert time.monotonic() - started < 0.5 + 0.5  # the 500 ms budget holds (+ netns/socket set-up on a busy box)


@pytest.mark.netns
def test_budget_caps_the_number_of_probes(segment):
    _, _, pod = segment
    started = time.monotonic()
    assert check_ipv4_gateway(netns_path=pod, if_name="eth0", ip="10.6.0.60", gateway="10.6.0.254",
                              probes=10, budget=0.25) == GatewayUnreachable("10.6.0.254")
    assert time.monotonic() - started < 0.25 + 0.5  # 10 probes would need 1 s
    assert check_ipv6_gateway(netns_path=pod, if_name="eth0", ip="fd00:6::60", gateway="fd00:6::1",
                              probes=1) == OK


@pytest.mark.netns
def test_detect_runs_conflict_before_gateway_per_family_and_only_for_this_nic(segment):
    u, squatter, pod = segment
    configs = [
        {"version": 6, "address": "fd00:6::50/64", "nic": "eth0", "gateway": "fd00:6::1",
         "enableIPConflictDetection": True, "enableGatewayDetection": True},
        {"version": 4, "address": "10.6.0.60/24", "nic": "eth0", "gateway": "10.6.0.254",
         "enableIPConflictDetection": True, "enableGatewayDetection": True},
        {"version": 4, "address": "10.6.0.50/24", "nic": "net1", "enableIPConflictDetection": True},
    ]
    # IPv4 first: its gateway is missing; the IPv6 conflict is only reported once IPv4 is fine
    assert detect(netns_path=pod, if_name="eth0", ip_configs=configs) == GatewayUnreachable("10.6.0.254")
    configs[1]["gateway"] = "10.6.0.1"
    assert detect(netns_path=pod, if_name="eth0", ip_configs=configs) == ConflictFound(
        "fd00:6::50", link_mac(squatter, "sq0"))
    configs[0]["address"] = "fd00:6::61/64"
    assert detect(netns_path=pod, if_name="eth0", ip_configs=configs) == OK
    configs[1]["enableGatewayDetection"] = False
    configs[1]["gateway"] = "10.6.0.254"  # not probed any more
    assert detect(netns_path=pod, if_name="eth0", ip_configs=configs) == OK


@pytest.mark.netns
def test_announce_sends_gratuitous_arp_and_unsolicited_na(segment):
    u, squatter, pod = segment
    mac = bytes.fromhex(link_mac(pod, "eth0").replace(":", ""))
    with Capture(squatter, "sq0") as seen:
        announce(netns_path=pod, if_name="eth0", addresses=["10.6.0.70", "fd00:6::70"])
    garps = [f for f in seen.frames if f[12:14] == b"\x08\x06"]
    assert len(garps) == 1
    frame = garps[0]
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == mac
    assert struct.unpack("!H", frame[20:22])[0] == 1  # request form
    assert frame[22:28] == mac and frame[28:32] == frame[38:42] == bytes([10, 6, 0, 70])
    nas = [f for f in seen.frames if f[12:14] == b"\x86\xdd" and f[54] == 136]
    assert len(nas) == 1
    frame = nas[0]
    assert frame[:6] == bytes.fromhex("333300000001") and frame[6:12] == mac
    assert frame[21] == 255  # hop limit 255, or receivers drop it
    assert frame[22:38] == frame[62:78] == ipaddress.ip_address("fd00:6::70").packed
    assert struct.unpack("!I", frame[58:62])[0] == 0x20000000  # override, not solicited
    assert frame[78:80] == b"\x02\x01" and frame[80:86] == mac  # target link-layer address option


@pytest.mark.netns
def test_missing_interface_or_netns_is_an_error_not_a_verdict(segment):
    _, _, pod = segment
    with pytest.raises(DetectionError, match="interface net9 not found"):
        check_ipv4_conflict(netns_path=pod, if_name="net9", ip="10.6.0.50")
    with pytest.raises(DetectionError, match="does not exist"):
        check_ipv4_conflict(netns_path="/var/run/netns/spiderweb-gone", if_name="eth0", ip="10.6.0.50")


# --- frames (pure) ----------------------------------------------------------------------------------------


def _ones_complement_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _icmpv6_checksum_ok(frame: bytes) -> bool:
    ip = frame[14:54]
    payload = frame[54:54 + struct.unpack("!H", ip[4:6])[0]]
    pseudo = ip[8:40] + struct.pack("!I3xB", len(payload), 58) + payload
    return _ones_complement_sum(pseudo) == 0xFFFF


def test_arp_frame_round_trip():
    frame = arp_frame(op=1, src_mac=bytes.fromhex("020000000001"), sender_ip="0.0.0.0", target_ip="10.0.0.5")
    assert parse_arp(frame) == (1, bytes.fromhex("020000000001"), "0.0.0.0", "10.0.0.5")
    assert parse_arp(frame[:30]) is None and parse_arp(b"\x00" * 12 + b"\x86\xdd" + b"\x00" * 40) is None


def test_dad_solicitation_has_unspecified_source_and_no_link_layer_option():
    frame = ns_frame(src_mac=bytes.fromhex("020000000001"), src="::", target="fd00::1:2:3")
    assert frame[:6] == bytes.fromhex("3333ff020003")
    assert frame[22:38] == b"\x00" * 16 and frame[38:54] == ipaddress.ip_address("ff02::1:ff02:3").packed
    assert struct.unpack("!H", frame[18:20])[0] == 24  # no options
    assert _icmpv6_checksum_ok(frame)
    assert parse_ndp(frame) == (135, "::", "fd00::1:2:3", None)


def test_solicitation_from_an_address_carries_our_mac_and_valid_checksum():
    frame = ns_frame(src_mac=bytes.fromhex("020000000001"), src="fd00::60", target="fd00::1")
    assert _icmpv6_checksum_ok(frame)
    assert parse_ndp(frame) == (135, "fd00::60", "fd00::1", bytes.fromhex("020000000001"))


def test_unsolicited_advertisement_parses_back():
    frame = na_frame(src_mac=bytes.fromhex("020000000002"), target="fd00::70")
    assert _icmpv6_checksum_ok(frame)
    assert parse_ndp(frame) == (136, "fd00::70", "fd00::70", bytes.fromhex("020000000002"))


def test_solicited_node_group():
    assert str(solicited_node(ipaddress.IPv6Address("fd00:6::50"))) == "ff02::1:ff00:50"


def test_gateway_family_mismatch_is_refused():
    with pytest.raises(ValueError, match="same IP family"):
        check_gateway(netns_path=None, if_name="eth0", ip="10.0.0.1", gateway="fd00::1")
