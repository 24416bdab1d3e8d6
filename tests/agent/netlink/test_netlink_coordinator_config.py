"""Spec §8.1: precedence between the conflist entry and the agent's SpiderCoordinator view, and validation."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.netlink.coordinator_config import (
    CoordinatorConfig,
    PolicyRoute,
    merge,
    parse_cidr,
    parse_mac_prefix,
)

AGENT = {
    "mode": "auto",
    "overlayPodCIDR": ["10.244.0.0/16"],
    "serviceCIDR": ["10.233.0.0/18", "fd00:233::/110"],
    "hijackCIDR": ["169.254.0.0/16"],
    "policyRoutes": [],
    "podMACPrefix": "",
    "tunePodRoutes": True,
    "podDefaultRouteNIC": "",
    "hostRuleTable": 500,
    "podRPFilter": 0,
    "txQueueLen": 0,
    "vethLinkAddress": "",
    "vethMTU": 1500,
}


def net(value: str):
    return ipaddress.ip_network(value)


def test_agent_values_are_used_when_the_conflist_sets_nothing():
    cfg = merge({"type": "coordinator"}, AGENT)
    assert cfg == CoordinatorConfig(
        mode="auto",
        overlay_pod_cidr=(net("10.244.0.0/16"),),
        service_cidr=(net("10.233.0.0/18"), net("fd00:233::/110")),
        hijack_cidr=(net("169.254.0.0/16"),),
    )
    assert cfg.hijack_routes == (net("10.244.0.0/16"), net("10.233.0.0/18"), net("fd00:233::/110"),
                                 net("169.254.0.0/16"))


def test_conflist_values_win_over_the_agent():
    conf = {
        "mode": "underlay", "hijackCIDR": ["10.0.0.1"], "podMACPrefix": "0a-BC", "tunePodRoutes": False,
        "podDefaultRouteNic": "net1", "hostRuleTable": 600, "podRPFilter": -1, "txQueueLen": 3000,
        "vethLinkAddress": "169.254.200.1", "vethMTU": 9000, "podDefaultCniNic": "net0",
        "policyRoutes": [{"dst": "172.16.0.0/16", "gw": "10.6.0.254"}],
        "serviceCIDR": ["10.96.0.0/12"], "overlayPodCIDR": ["10.42.0.0/16"],
    }
    cfg = merge(conf, {**AGENT, "podDefaultRouteNIC": "net2", "podRPFilter": 2, "tunePodRoutes": True})
    assert cfg == CoordinatorConfig(
        mode="underlay", overlay_pod_cidr=(net("10.42.0.0/16"),), service_cidr=(net("10.96.0.0/12"),),
        hijack_cidr=(net("10.0.0.1/32"),),
        policy_routes=(PolicyRoute(net("172.16.0.0/16"), ipaddress.ip_address("10.6.0.254")),),
        pod_mac_prefix="0a:bc", tune_pod_routes=False, pod_default_route_nic="net1", host_rule_table=600,
        pod_rp_filter=-1, tx_queue_len=3000, veth_link_address="169.254.200.1", veth_mtu=9000,
        pod_default_cni_nic="net0",
    )


def test_empty_conflist_values_fall_back_to_the_agent():
    conf = {"mode": "", "hijackCIDR": [], "podMACPrefix": "", "podDefaultRouteNic": ""}
    cfg = merge(conf, {**AGENT, "mode": "overlay", "podMACPrefix": "fa:16", "podDefaultRouteNIC": "net1"})
    assert (cfg.mode, cfg.hijack_cidr, cfg.pod_mac_prefix, cfg.pod_default_route_nic) == (
        "overlay", (net("169.254.0.0/16"),), "fa:16", "net1")


def test_defaults_without_any_value():
    cfg = merge({}, {})
    assert cfg == CoordinatorConfig()
    defaults = (cfg.host_rule_table, cfg.veth_mtu, cfg.tune_pod_routes, cfg.pod_default_cni_nic)
    assert defaults == (500, 1500, True, "eth0")


@pytest.mark.parametrize("spelling", ["disable", "disabled"])
def test_disabled_is_accepted_in_both_spellings(spelling):
    assert merge({"mode": spelling}, AGENT).mode == "disable"
    assert merge({}, {**AGENT, "mode": spelling}).mode == "disable"


def test_host_rule_table_and_veth_mtu_fall_back_when_not_positive():
    cfg = merge({"hostRuleTable": 0}, {**AGENT, "hostRuleTable": 0, "vethMTU": 0})
    assert (cfg.host_rule_table, cfg.veth_mtu) == (500, 1500)
    assert merge({}, {**AGENT, "hostRuleTable": 700}).host_rule_table == 700


def test_legacy_keys_are_ignored():
    cfg = merge({"detectGateway": True, "detectIPConflict": True, "hostRPFilter": 1, "multusNicPrefix": "net",
                 "logOptions": {"logLevel": "debug"}}, AGENT)
    assert cfg == merge({}, AGENT)


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"mode": "bridge"}, "mode must be one of"),
        ({"podMACPrefix": "0a:bc:de"}, "two hex bytes"),
        ({"podMACPrefix": "0g:00"}, "two hex bytes"),
        ({"podMACPrefix": "0a,bc"}, "two hex bytes"),
        ({"podMACPrefix": "03:00"}, "unicast"),
        ({"podRPFilter": 3}, "podRPFilter must be"),
        ({"podRPFilter": -2}, "podRPFilter must be"),
        ({"podRPFilter": "1"}, "podRPFilter must be an integer"),
        ({"vethMTU": 0}, "vethMTU must be > 0"),
        ({"vethMTU": -5}, "vethMTU must be > 0"),
        ({"txQueueLen": -1}, "txQueueLen must be >= 0"),
        ({"hostRuleTable": 254}, "reserved"),
        ({"hijackCIDR": ["10.0.0.0/33"]}, "hijackCIDR: '10.0.0.0/33' is not a valid"),
        ({"hijackCIDR": ["nonsense"]}, "hijackCIDR"),
        ({"hijackCIDR": "10.0.0.0/8"}, "hijackCIDR must be a list"),
        ({"serviceCIDR": [42]}, "serviceCIDR"),
        ({"policyRoutes": [{"dst": "10.0.0.0/8", "gw": "fd00::1"}]}, "same IP family"),
        ({"policyRoutes": [{"dst": "10.0.0.0/8"}]}, "with dst and gw"),
        ({"policyRoutes": [{"dst": "10.0.0.0/8", "gw": "10.0.0.300"}]}, "policyRoutes.gw"),
        ({"vethLinkAddress": "169.254.300.1"}, "vethLinkAddress"),
        ({"vethLinkAddress": "fe80::1"}, "must be an IPv4 address"),
        ({"tunePodRoutes": "yes"}, "tunePodRoutes must be true or false"),
        ({"podDefaultRouteNic": 7}, "podDefaultRouteNic must be a string"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(conf, message):
    with pytest.raises(ValueError, match=message):
        merge(conf, AGENT)


def test_bad_agent_values_are_refused_too():
    with pytest.raises(ValueError, match="podRPFilter"):
        merge({}, {**AGENT, "podRPFilter": 5})
    with pytest.raises(ValueError, match="overlayPodCIDR"):
        merge({}, {**AGENT, "overlayPodCIDR": ["10.0.0.0/40"]})


def test_non_dict_input_is_refused():
    with pytest.raises(ValueError, match="JSON objects"):
        merge([], AGENT)  # type: ignore[arg-type]


def test_hijack_routes_drop_duplicates_keeping_order():
    cfg = merge({"hijackCIDR": ["10.233.0.0/18", "1.2.3.4"]}, AGENT)
    assert cfg.hijack_routes == (net("10.244.0.0/16"), net("10.233.0.0/18"), net("fd00:233::/110"),
                                 net("1.2.3.4/32"))


def test_config_is_frozen():
    cfg = merge({}, AGENT)
    with pytest.raises(AttributeError):
        cfg.mode = "overlay"  # type: ignore[misc]


@given(st.ip_addresses(), st.integers(min_value=0, max_value=128))
def test_parse_cidr_always_yields_a_network_containing_the_address(ip, prefix):
    prefix = min(prefix, ip.max_prefixlen)
    parsed = parse_cidr(f"{ip}/{prefix}", "hijackCIDR")
    assert ip in parsed and parsed.prefixlen == prefix


@given(st.binary(min_size=2, max_size=2), st.sampled_from([":", "-"]))
def test_mac_prefix_accepts_exactly_the_unicast_first_bytes(raw, separator):
    text = f"{raw[0]:02X}{separator}{raw[1]:02x}"
    if raw[0] & 1:
        with pytest.raises(ValueError, match="unicast"):
            parse_mac_prefix(text)
    else:
        assert parse_mac_prefix(text) == f"{raw[0]:02x}:{raw[1]:02x}"
