"""ifacer (spec §9, F43-F44): option parsing and planning as pure logic; VLAN and bond creation on a real kernel."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st
from netlink_lab import Lab, ipr
from pyroute2 import IPBatch
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from agent.netlink.errors import IfacerError
from agent.netlink.ifacer import (
    KNOWN_BOND_OPTIONS,
    BondConfig,
    CreateBond,
    CreateVlan,
    Enslave,
    IfacerConfig,
    LinkInfo,
    SetBondOptions,
    SetDown,
    SetUp,
    bond_link_attrs,
    ifacer_add,
    node_links,
    parse_bond_options,
    parse_ifacer_config,
    plan_ifacer,
    step_request,
    step_undo,
)

# --- config and options (pure) ----------------------------------------------------------------------------


def test_config_defaults_and_bond_name():
    cfg = parse_ifacer_config({"interfaces": ["ens1", "ens2"], "bond": {"mode": 4}})
    assert cfg == IfacerConfig(("ens1", "ens2"), 0, BondConfig("sp_bond0", 4, ""))
    assert parse_ifacer_config({"interfaces": ["ens1"]}) == IfacerConfig(("ens1",), 0, None)


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({}, "interfaces must be a non-empty list"),
        ({"interfaces": []}, "interfaces must be a non-empty list"),
        ({"interfaces": "ens1"}, "interfaces must be a non-empty list"),
        ({"interfaces": ["a-very-long-interface-name"]}, "not a valid interface name"),
        ({"interfaces": ["ens1", "ens1"]}, "twice"),
        ({"interfaces": ["ens1"], "vlanID": 4095}, "vlanID must be an integer in 0..4094"),
        ({"interfaces": ["ens1"], "vlanID": -1}, "vlanID"),
        ({"interfaces": ["ens1"], "vlanID": "100"}, "vlanID"),
        ({"interfaces": ["a", "b"], "bond": {"mode": 7}}, "bond mode must be an integer in 0..6"),
        ({"interfaces": ["a", "b"], "bond": {"mode": 1, "options": 5}}, "bond options must be a string"),
        ({"interfaces": ["a", "b"], "bond": "mode=1"}, "bond must be an object"),
        ({"interfaces": ["a", "b"], "bond": {"name": "bad name"}}, "bond.name"),
    ],
)
def test_bad_configs_are_refused(conf, message):
    with pytest.raises(ValueError, match=message):
        parse_ifacer_config(conf)


def test_bond_options_numbers_become_ints_and_malformed_pairs_are_skipped():
    options = ("mode=1;miimon=100; up_delay = 200 ;lacp_rate=fast;primary=ens1;garbage;=5;miimon2=1;"
               'arp_ip_target=["10.0.0.1","10.0.0.2"];ad_actor_system=00:11:22:33:44:55;downdelay=;')
    assert parse_bond_options(options) == {
        "miimon": 100, "up_delay": 200, "lacp_rate": "fast", "primary": "ens1",
        "arp_ip_target": ["10.0.0.1", "10.0.0.2"], "ad_actor_system": "00:11:22:33:44:55",
    }
    assert parse_bond_options("arp_ip_target=[10.0.0.1, 10.0.0.2]") == {"arp_ip_target": ["10.0.0.1", "10.0.0.2"]}
    assert parse_bond_options("") == {}


@given(st.text(max_size=200))
def test_bond_option_parsing_never_raises_and_keeps_only_known_keys(text):
    parsed = parse_bond_options(text)
    assert set(parsed) <= set(KNOWN_BOND_OPTIONS)


@given(st.sampled_from([k for k in KNOWN_BOND_OPTIONS if k != "arp_ip_target"]), st.integers(0, 10**6))
def test_every_known_numeric_option_parses_to_an_int(key, value):
    assert parse_bond_options(f"{key}={value}") == {key: value}


def test_bond_link_attrs_translate_names_and_interfaces():
    attrs = bond_link_attrs(
        {"miimon": 100, "up_delay": 200, "lacp_rate": "fast", "xmit_hash_policy": "layer2+3", "primary": "ens2",
         "arp_ip_target": ["10.0.0.1"], "fail_over_mac": 2, "peer_notif_delay": 5},
        {"ens1": 3, "ens2": 4}.__getitem__)
    assert attrs == {"bond_miimon": 100, "bond_updelay": 200, "bond_ad_lacp_rate": 1, "bond_xmit_hash_policy": 2,
                     "bond_primary": 4, "bond_arp_ip_target": ["10.0.0.1"], "bond_fail_over_mac": 2}


@pytest.mark.parametrize(
    ("options", "message"),
    [({"miimon": "fast"}, "miimon='fast' is not a number"), ({"primary": "ens9"}, "no such interface"),
     ({"arp_ip_target": ["10.0.0.300"]}, "arp_ip_target")],
)
def test_bond_link_attrs_refuse_bad_values(options, message):
    with pytest.raises(IfacerError, match=message):
        bond_link_attrs(options, {"ens1": 3}.__getitem__)


# --- planning (pure) --------------------------------------------------------------------------------------


def test_one_interface_without_vlan_needs_nothing():
    assert plan_ifacer(IfacerConfig(("ens1",)), []) == []


def test_vlan_on_a_down_parent():
    plan = plan_ifacer(IfacerConfig(("ens1",), 100), [LinkInfo("ens1", "veth", up=False)])
    assert plan == [SetUp("ens1"), CreateVlan("ens1.100", "ens1", 100), SetUp("ens1.100")]


def test_existing_vlan_is_reused_and_brought_up():
    links = [LinkInfo("ens1", up=True), LinkInfo("ens1.100", "vlan", up=False, vlan_id=100, parent="ens1")]
    assert plan_ifacer(IfacerConfig(("ens1",), 100), links) == [SetUp("ens1.100")]
    links[1] = LinkInfo("ens1.100", "vlan", up=True, vlan_id=100, parent="ens1")
    assert plan_ifacer(IfacerConfig(("ens1",), 100), links) == []


def test_a_second_vlan_interface_with_the_same_id_is_refused():
    links = [LinkInfo("ens1", up=True), LinkInfo("ens2", up=True),
             LinkInfo("ens2.100", "vlan", up=True, vlan_id=100, parent="ens2")]
    with pytest.raises(IfacerError, match="cannot have multiple different vlan interfaces with the same vlanId 100"):
        plan_ifacer(IfacerConfig(("ens1",), 100), links)
    assert plan_ifacer(IfacerConfig(("ens1",), 200), links)[0] == CreateVlan("ens1.200", "ens1", 200)


@pytest.mark.parametrize(
    ("existing", "message"),
    [(LinkInfo("ens1.100", "veth", up=True), "exists but is not VLAN 100 on ens1"),
     (LinkInfo("ens1.100", "vlan", up=True, vlan_id=101, parent="ens1"), "exists but is not VLAN 100"),
     (LinkInfo("ens1.100", "vlan", up=True, vlan_id=100, parent="ens2"), "exists but is not VLAN 100 on ens1")],
)
def test_a_wrong_device_under_the_vlan_name_is_refused(existing, message):
    with pytest.raises(IfacerError, match=message):
        plan_ifacer(IfacerConfig(("ens1",), 100), [LinkInfo("ens1", up=True), LinkInfo("ens2", up=True), existing])


def test_missing_parent_and_too_long_names_are_refused():
    with pytest.raises(IfacerError, match="parent interface ens1 does not exist"):
        plan_ifacer(IfacerConfig(("ens1",), 100), [])
    with pytest.raises(IfacerError, match="longer than 15"):
        plan_ifacer(IfacerConfig(("enp0s31f6abcd",), 1000), [LinkInfo("enp0s31f6abcd", up=True)])


def test_two_interfaces_without_bond_need_nothing():
    assert plan_ifacer(IfacerConfig(("ens1", "ens2"), 100), [LinkInfo("ens1"), LinkInfo("ens2")]) == []


def test_new_bond_enslaves_each_nic_down_then_up_and_sets_active_slave_last():
    cfg = IfacerConfig(("ens1", "ens2"), 0, BondConfig("bond0", 1, "miimon=100;active_slave=ens2;bogus"))
    assert plan_ifacer(cfg, [LinkInfo("ens1", up=True), LinkInfo("ens2", up=True)]) == [
        CreateBond("bond0", 1, (("miimon", 100),)),
        SetDown("ens1"), Enslave("ens1", "bond0"), SetUp("ens1"),
        SetDown("ens2"), Enslave("ens2", "bond0"), SetUp("ens2"),
        SetUp("bond0"),
        SetBondOptions("bond0", (("active_slave", "ens2"),)),
    ]


def test_bond_with_vlan():
    cfg = IfacerConfig(("ens1", "ens2"), 30, BondConfig())
    plan = plan_ifacer(cfg, [LinkInfo("ens1"), LinkInfo("ens2")])
    assert plan[-2:] == [CreateVlan("sp_bond0.30", "sp_bond0", 30), SetUp("sp_bond0.30")]


def test_existing_bond_is_reused_as_is():
    cfg = IfacerConfig(("ens1", "ens2"), 0, BondConfig(options="miimon=100"))
    assert plan_ifacer(cfg, [LinkInfo("sp_bond0", "bond", up=False)]) == [SetUp("sp_bond0")]
    assert plan_ifacer(cfg, [LinkInfo("sp_bond0", "bond", up=True)]) == []


def test_bond_refusals():
    cfg = IfacerConfig(("ens1", "ens2"), 0, BondConfig())
    with pytest.raises(IfacerError, match="sp_bond0 exists but is a veth device, not a bond"):
        plan_ifacer(cfg, [LinkInfo("sp_bond0", "veth", up=True)])
    with pytest.raises(IfacerError, match=r"bond slaves \['ens2'\] do not exist"):
        plan_ifacer(cfg, [LinkInfo("ens1")])


# --- netlink requests (encoded without a kernel) -----------------------------------------------------------


def encode(command: str, kwargs: dict) -> ifinfmsg:
    """Compile a ``link()`` request the way pyroute2 would send it, and decode it back."""
    batch = IPBatch()
    try:
        batch.link(command, **kwargs)
        msg = ifinfmsg(bytes(batch.batch))
    finally:
        batch.close()
    msg.decode()
    return msg


def info_data(msg: ifinfmsg) -> dict:
    return dict(msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")["attrs"])


def test_bond_request_carries_every_supported_option():
    options = parse_bond_options(
        "miimon=100;lacp_rate=fast;xmit_hash_policy=layer3+4;primary=ens1;arp_ip_target=[\"10.0.0.1\"];"
        "ad_actor_system=00:11:22:33:44:55;up_delay=200;downdelay=300;min_links=1;ad_select=bandwidth;"
        "arp_validate=all;fail_over_mac=active;primary_reselect=better;arp_all_targets=all;all_slaves_active=1;"
        "use_carrier=1;tlb_dynamic_lb=1;packets_per_slave=2;lp_interval=3;resend_igmp=4;ad_actor_sys_prio=65535;"
        "ad_user_port_key=5;arp_interval=100;peer_notif_delay=7")
    step = CreateBond("bond0", 4, tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
    command, kwargs = step_request(step, {"ens1": 3}.__getitem__)
    msg = encode(command, kwargs)
    assert command == "add" and msg.get_attr("IFLA_IFNAME") == "bond0"
    assert info_data(msg) == {
        "IFLA_BOND_MODE": 4, "IFLA_BOND_MIIMON": 100, "IFLA_BOND_AD_LACP_RATE": 1, "IFLA_BOND_XMIT_HASH_POLICY": 1,
        "IFLA_BOND_PRIMARY": 3, "IFLA_BOND_ARP_IP_TARGET": ["10.0.0.1"],
        "IFLA_BOND_AD_ACTOR_SYSTEM": "00:11:22:33:44:55", "IFLA_BOND_UPDELAY": 200, "IFLA_BOND_DOWNDELAY": 300,
        "IFLA_BOND_MIN_LINKS": 1, "IFLA_BOND_AD_SELECT": 1, "IFLA_BOND_ARP_VALIDATE": 3,
        "IFLA_BOND_FAIL_OVER_MAC": 1, "IFLA_BOND_PRIMARY_RESELECT": 1, "IFLA_BOND_ARP_ALL_TARGETS": 1,
        "IFLA_BOND_ALL_SLAVES_ACTIVE": 1, "IFLA_BOND_USE_CARRIER": 1, "IFLA_BOND_TLB_DYNAMIC_LB": 1,
        "IFLA_BOND_PACKETS_PER_SLAVE": 2, "IFLA_BOND_LP_INTERVAL": 3, "IFLA_BOND_RESEND_IGMP": 4,
        "IFLA_BOND_AD_ACTOR_SYS_PRIO": 65535, "IFLA_BOND_AD_USER_PORT_KEY": 5, "IFLA_BOND_ARP_INTERVAL": 100,
    }


def test_vlan_enslave_and_state_requests():
    index_of = {"ens1": 2, "ens2": 3, "bond0": 9}.__getitem__
    command, kwargs = step_request(CreateVlan("ens1.100", "ens1", 100), index_of)
    msg = encode(command, kwargs)
    assert msg.get_attr("IFLA_LINK") == 2 and info_data(msg) == {"IFLA_VLAN_ID": 100}
    assert step_request(Enslave("ens2", "bond0"), index_of) == ("set", {"index": 3, "master": 9})
    assert encode(*step_request(Enslave("ens2", "bond0"), index_of)).get_attr("IFLA_MASTER") == 9
    assert encode(*step_request(SetUp("ens1"), index_of))["flags"] & 1
    assert step_request(SetBondOptions("bond0", (("active_slave", "ens2"),)), index_of) == (
        "set", {"index": 9, "kind": "bond", "bond_active_slave": 3})


def test_undo_requests():
    index_of = {"ens1": 2, "bond0": 9}.__getitem__
    assert step_undo(SetDown("ens1"), index_of) == ("set", {"index": 2, "state": "up"})
    assert step_undo(CreateBond("bond0", 1), index_of) == ("del", {"ifname": "bond0"})
    assert step_undo(CreateVlan("ens1.7", "ens1", 7), index_of) == ("del", {"ifname": "ens1.7"})
    assert step_undo(Enslave("ens1", "bond0"), index_of) == ("set", {"index": 2, "master": 0})
    assert step_undo(SetUp("ens1"), index_of) is None


def test_bad_actor_system_is_refused():
    with pytest.raises(IfacerError, match="not a MAC address"):
        bond_link_attrs({"ad_actor_system": "00:11:22:33:44"}, {}.__getitem__)
    with pytest.raises(IfacerError, match="not a MAC address"):
        bond_link_attrs({"ad_actor_system": "zz:11:22:33:44:55"}, {}.__getitem__)


# --- kernel -----------------------------------------------------------------------------------------------


def _kernel_supports(lab: Lab, kind: str) -> bool:
    """Actually try to create the device type in a scratch namespace."""
    path = lab.netns(f"probe-{kind}")
    with ipr(path) as handle:
        handle.link("add", ifname="p0", kind="veth", peer="p1")
        try:
            if kind == "vlan":
                handle.link("add", ifname="p0.7", kind="vlan", link=handle.link_lookup(ifname="p0")[0], vlan_id=7)
            else:
                handle.link("add", ifname="b0", kind="bond")
        except NetlinkError as exc:
            if exc.code == errno.EOPNOTSUPP:
                return False
            raise
    return True


@pytest.fixture
def node(lab: Lab) -> str:
    """A namespace standing in for the node, with two NICs (veth ends, down)."""
    path = lab.netns("node")
    with ipr(path) as handle:
        handle.link("add", ifname="ens1", kind="veth", peer="sw1")
        handle.link("add", ifname="ens2", kind="veth", peer="sw2")
    return path


def links(path: str) -> dict[str, LinkInfo]:
    with ipr(path) as handle:
        return {info.name: info for info in node_links(handle)}


@pytest.fixture
def vlan_kernel(lab: Lab) -> None:
    if not _kernel_supports(lab, "vlan"):
        pytest.skip("kernel lacks 8021q")


@pytest.fixture
def bond_kernel(lab: Lab) -> None:
    if not _kernel_supports(lab, "bond"):
        pytest.skip("kernel lacks bonding")


@pytest.mark.netns
def test_nothing_to_do_changes_nothing(node):
    before = links(node)
    assert ifacer_add(config={"cniVersion": "1.0.0", "interfaces": ["ens1"], "vlanID": 0}, netns_path=node) == {
        "cniVersion": "1.0.0"}
    assert ifacer_add(config={"interfaces": ["ens1", "ens2"], "vlanID": 5}, netns_path=node) == {}
    assert links(node) == before


@pytest.mark.netns
def test_missing_parent_is_refused_on_the_node(node):
    with pytest.raises(IfacerError, match="parent interface ens9 does not exist"):
        ifacer_add(config={"interfaces": ["ens9"], "vlanID": 100}, netns_path=node)


@pytest.mark.netns
def test_kernel_refusal_is_reported_and_nothing_is_left(node, lab):
    if _kernel_supports(lab, "vlan"):
        pytest.skip("kernel has 8021q: the refusal path cannot be provoked this way")
    with pytest.raises(IfacerError, match="ifacer failed") as raised:
        ifacer_add(config={"interfaces": ["ens1"], "vlanID": 100}, netns_path=node)
    assert raised.value.details == {"errno": errno.EOPNOTSUPP}
    assert "ens1.100" not in links(node)


@pytest.mark.netns
def test_vlan_is_created_reused_and_a_second_one_with_the_same_id_refused(vlan_kernel, node):
    ifacer_add(config={"interfaces": ["ens1"], "vlanID": 100}, netns_path=node)
    state = links(node)
    assert state["ens1"].up and state["ens1.100"] == LinkInfo("ens1.100", "vlan", True, 100, "ens1", None)
    with ipr(node) as handle:
        handle.link("set", index=handle.link_lookup(ifname="ens1.100")[0], state="down")
    ifacer_add(config={"interfaces": ["ens1"], "vlanID": 100}, netns_path=node)
    assert links(node)["ens1.100"].up
    with pytest.raises(IfacerError, match="same vlanId 100"):
        ifacer_add(config={"interfaces": ["ens2"], "vlanID": 100}, netns_path=node)
    assert "ens2.100" not in links(node)


@pytest.mark.netns
def test_bond_is_created_with_its_slaves_and_reused(bond_kernel, node):
    conf = {"interfaces": ["ens1", "ens2"], "bond": {"name": "bond0", "mode": 1, "options": "miimon=100;primary=ens1"}}
    ifacer_add(config=conf, netns_path=node)
    state = links(node)
    assert state["bond0"].kind == "bond" and state["bond0"].up
    assert state["ens1"].master == "bond0" and state["ens2"].master == "bond0"
    with ipr(node) as handle:
        data = handle.link("get", index=handle.link_lookup(ifname="bond0")[0])[0].get_attr(
            "IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
        assert (data.get_attr("IFLA_BOND_MODE"), data.get_attr("IFLA_BOND_MIIMON")) == (1, 100)
    ifacer_add(config=conf, netns_path=node)
    assert links(node) == state


@pytest.mark.netns
def test_failed_bond_is_undone(bond_kernel, node):
    with ipr(node) as handle:  # ens2 already belongs to another bond: enslaving it fails half way
        handle.link("add", ifname="other", kind="bond")
        handle.link("set", index=handle.link_lookup(ifname="ens2")[0],
                    master=handle.link_lookup(ifname="other")[0])
    with pytest.raises(IfacerError):
        ifacer_add(config={"interfaces": ["ens1", "ens2"], "bond": {"name": "bond0", "mode": 1}}, netns_path=node)
    state = links(node)
    assert "bond0" not in state and state["ens1"].master is None


@pytest.mark.netns
def test_vlan_on_a_bond(bond_kernel, vlan_kernel, node):
    ifacer_add(config={"interfaces": ["ens1", "ens2"], "vlanID": 30, "bond": {"mode": 0}}, netns_path=node)
    state = links(node)
    assert state["sp_bond0.30"] == LinkInfo("sp_bond0.30", "vlan", True, 30, "sp_bond0", None)
