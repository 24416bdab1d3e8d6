"""Coordinator ADD/DEL/CHECK against real namespaces (F31-F41): exact kernel state and real traffic."""

from __future__ import annotations

import errno
import ipaddress
import subprocess

import kernel_view
import pytest
from kernel_view import get_link, list_links, list_neighbours, list_routes, list_rules
from netlink_lab import Capture, Underlay, add_addresses, add_default, ipr, ping
from pyroute2 import netns as pyroute2_netns

from agent.netlink import rtnl
from agent.netlink.coordinator import (
    _host_addresses,
    coordinator_add,
    coordinator_check,
    coordinator_del,
    host_veth_name,
)
from agent.netlink.coordinator_config import merge
from agent.netlink.errors import CoordinatorError
from agent.netlink.rtnl import NUD_PERMANENT, SCOPE_LINK, iproute
from agent.netlink.sysctl import apply_host_sysctls, sysctl_read, sysctl_write

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("iptables")]

CID = "c0ffee0123456789abcdef"
HOST_VETH = host_veth_name(CID)
AGENT = {
    "mode": "auto",
    "overlayPodCIDR": ["10.244.0.0/16"],
    "serviceCIDR": ["10.233.0.0/18", "fd00:233::/110"],
    "hijackCIDR": ["169.254.0.0/16"],
    "tunePodRoutes": True,
    "hostRuleTable": 500,
    "podRPFilter": 0,
    "vethMTU": 1500,
}
PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "x"}],
        "ips": [{"address": "10.6.0.100/24", "gateway": "10.6.0.1", "interface": 0}]}
net = ipaddress.ip_network


def config(**conf):
    return merge(conf, AGENT)


def add(u: Underlay, pod: str, if_name: str = "eth0", cid: str = CID, **conf) -> dict:
    return coordinator_add(netns_path=pod, if_name=if_name, container_id=cid, config=config(**conf),
                           prev_result=PREV, host_netns_path=u.host)


def delete(u: Underlay, pod: str, if_name: str = "eth0", cid: str = CID, **conf) -> None:
    coordinator_del(netns_path=pod, if_name=if_name, container_id=cid, config=config(**conf), host_netns_path=u.host)


def routes(path: str, version: int, table: int) -> set[tuple]:
    """``(dst, device name, gateway, prefsrc)`` of the unicast routes of a table."""
    with ipr(path) as handle:
        names = {msg["index"]: msg.get_attr("IFLA_IFNAME") for msg in handle.get_links()}
        found = set()
        for route in list_routes(handle, version, table):
            if route.multipath:
                found.add((str(route.dst), tuple(sorted((names[o], g) for o, g in route.multipath)), None, None))
            else:
                found.add((str(route.dst), names.get(route.oif), route.gateway, route.prefsrc))
        return found


def rules(path: str, version: int) -> set[tuple]:
    """``(priority, src, fwmark, table)`` of the rules other than the three the kernel starts with."""
    with ipr(path) as handle:
        return {(r.priority, str(r.src) if r.src else None, r.fwmark, r.table) for r in list_rules(handle, version)
                if r.table not in (253, 254, 255) or r.src or r.fwmark}


def neighbours(path: str, version: int) -> set[tuple]:
    """Permanent neighbour entries as ``(address, device name, MAC)``."""
    with ipr(path) as handle:
        names = {msg["index"]: msg.get_attr("IFLA_IFNAME") for msg in handle.get_links()}
        return {(str(n.dst), names[n.ifindex], n.lladdr) for n in list_neighbours(handle, version)
                if n.state == NUD_PERMANENT}


def link(path: str, name: str):
    with ipr(path) as handle:
        return get_link(handle, name=name)


def mangle(path: str) -> list[str]:
    out = subprocess.run(["nsenter", f"--net={path}", "iptables-save", "-t", "mangle"], capture_output=True,
                         text=True, check=True).stdout
    return [line for line in out.splitlines() if line.startswith("-A")]


def snapshot(path: str) -> tuple:
    """Everything the coordinator may touch in a namespace (links, routes, rules, permanent neighbours)."""
    with ipr(path) as handle:
        links = frozenset((lk.name, lk.mac, lk.mtu, lk.txqlen, lk.up) for lk in list_links(handle))
        names = {lk.index: lk.name for lk in list_links(handle)}
        tables = [frozenset((r.table, str(r.dst), names.get(r.oif), r.gateway, r.prefsrc,
                             tuple((names.get(o), g) for o, g in r.multipath)) for r in list_routes(handle, version))
                  for version in (4, 6)]
    return (links, *tables, rules(path, 4), rules(path, 6), neighbours(path, 4), neighbours(path, 6))


# --- underlay, single NIC ---------------------------------------------------------------------------------


def test_underlay_first_nic_builds_the_exact_layout(underlay):
    # Given a dual-stack pod whose eth0 is a macvlan on the node's ens1
    u = underlay
    pod = u.underlay_pod("pod1", "10.6.0.100/24", "fd00:6::100/64")
    # When coordinator runs for eth0
    result = add(u, pod)
    # Then the CNI result is the previous result, unchanged
    assert result == PREV
    veth0, host_veth = link(pod, "veth0"), link(u.host, HOST_VETH)
    assert veth0.up and host_veth.up and veth0.mtu == host_veth.mtu == 1500
    assert veth0.peer_index == host_veth.index and host_veth.peer_index == veth0.index
    hv, pv = host_veth.mac, veth0.mac
    assert int(hv[:2], 16) & 0x03 == 0x02 and int(pv[:2], 16) & 0x03 == 0x02  # random, local, unicast

    # pod: host routes in main and table 101, hijack routes via the host IP in main, reply table 100
    assert routes(pod, 4, 254) == {
        ("0.0.0.0/0", "eth0", "10.6.0.1", None),
        ("10.6.0.0/24", "eth0", None, "10.6.0.100"),
        ("10.6.0.10/32", "veth0", None, "10.6.0.100"),
        ("10.7.0.10/32", "veth0", None, "10.6.0.100"),
        ("10.244.0.0/16", "veth0", "10.6.0.10", "10.6.0.100"),
        ("10.233.0.0/18", "veth0", "10.6.0.10", "10.6.0.100"),
        ("169.254.0.0/16", "veth0", "10.6.0.10", "10.6.0.100"),
    }
    assert routes(pod, 4, 101) == {("10.6.0.10/32", "veth0", None, "10.6.0.100"),
                                   ("10.7.0.10/32", "veth0", None, "10.6.0.100")}
    assert routes(pod, 4, 100) == {("0.0.0.0/0", "veth0", "10.6.0.10", None)}
    assert routes(pod, 6, 254) >= {("fd00:6::10/128", "veth0", None, None), ("fd00:7::10/128", "veth0", None, None),
                                   ("fd00:233::/110", "veth0", "fd00:6::10", None),
                                   ("::/0", "eth0", "fd00:6::1", None)}
    assert routes(pod, 6, 100) == {("::/0", "veth0", "fd00:6::10", None)}
    assert rules(pod, 4) == {(1000, None, 1, 100)} and rules(pod, 6) == {(1000, None, 1, 100)}
    assert neighbours(pod, 4) == {("10.6.0.10", "veth0", hv), ("10.7.0.10", "veth0", hv)}
    assert neighbours(pod, 6) == {("fd00:6::10", "veth0", hv), ("fd00:7::10", "veth0", hv)}
    assert mangle(pod) == [
        "-A PREROUTING -i veth0 -m conntrack --ctstate NEW -j MARK --set-xmark 0x1/0xffffffff",
        "-A PREROUTING -m mark --mark 0x1 -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff",
        "-A OUTPUT -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff",
    ]

    # host: one shared rule per family, /32 and /128 routes and permanent neighbours on the host veth
    assert rules(u.host, 4) == {(1000, None, None, 500)} and rules(u.host, 6) == {(1000, None, None, 500)}
    assert routes(u.host, 4, 500) == {("10.6.0.100/32", HOST_VETH, None, None)}
    assert routes(u.host, 6, 500) == {("fd00:6::100/128", HOST_VETH, None, None)}
    assert neighbours(u.host, 4) == {("10.6.0.100", HOST_VETH, pv)}
    assert neighbours(u.host, 6) == {("fd00:6::100", HOST_VETH, pv)}
    with ipr(u.host) as handle:
        scopes = {r.scope for r in list_routes(handle, 4, 500)}
    assert scopes == {SCOPE_LINK}


def test_underlay_pod_reaches_its_node_and_other_pods(underlay):
    # Given a pod on ens1: without the coordinator the macvlan cannot reach its own node
    u = underlay
    pod = u.underlay_pod("pod1", "10.6.0.100/24", "fd00:6::100/64")
    other = u.underlay_pod("pod2", "10.6.0.101/24", "fd00:6::101/64")
    assert not ping(pod, u.HOST_V4, timeout=0.3)
    # When the coordinator has run for both pods
    add(u, pod)
    add(u, other, cid="feedbeef0000111122")
    # Then the pod reaches the node's addresses through veth0, both families, and the node reaches the pod
    assert ping(pod, u.HOST_V4) and ping(pod, u.HOST_V6) and ping(pod, u.HOST2_V4)
    assert ping(u.host, "10.6.0.100") and ping(u.host, "fd00:6::100")
    # and still reaches the other pod and the gateway on the underlay segment
    assert ping(pod, "10.6.0.101") and ping(pod, "fd00:6::101") and ping(pod, u.GW_V4)


def test_replies_to_connections_that_entered_through_the_host_leave_through_veth0(underlay, lab):
    # Given a client behind the node (not on the underlay), e.g. a NodePort user, and a forwarding node
    u = underlay
    apply_host_sysctls(ipv4=True, ipv6=True, netns_path=u.host)
    client = u.pod("client")
    lab.veth(u.host, "cl0", client, "eth0")
    add_addresses(u.host, "cl0", ["192.168.77.1/24"])
    add_addresses(client, "eth0", ["192.168.77.2/24"])
    add_default(client, "eth0", "192.168.77.1")
    pod = u.underlay_pod("pod1", "10.6.0.100/24")
    add(u, pod)
    # Then the client reaches the pod: the request enters through veth0 and the reply is marked back to it
    assert ping(client, "10.6.0.100")
    # When the fwmark rule is removed, the reply follows the pod's default route to the underlay gateway and is lost
    with ipr(pod) as handle:
        handle.rule("del", family=2, table=100, priority=1000, fwmark=1)
    assert not ping(client, "10.6.0.100", timeout=0.6)


def test_host_addresses_are_the_usable_ones_of_the_asked_families_without_host_veths(underlay, lab):
    # Given a node whose NICs hold addresses, and a host veth holding one too (some CNIs address their host veths)
    u = underlay
    pod = u.underlay_pod("hv", "10.6.0.60/24")
    lab.veth(u.host, "vethdeadbeef01", pod, "other0")
    add_addresses(u.host, "vethdeadbeef01", ["169.254.1.1/32"])

    # When the coordinator lists the node's addresses for an IPv4 pod, then for a dual-stack one
    with iproute(u.host) as host:
        v4 = _host_addresses(host, u.host, {4})
        dual = _host_addresses(host, u.host, {4, 6})

    # Then: IPv4 only, no loopback, no veth; with IPv6, no link-local addresses either
    assert {(name, str(ip)) for name, _, ip in v4} == {("ens1", u.HOST_V4), ("ens2", u.HOST2_V4)}
    assert {(name, str(ip)) for name, _, ip in dual} == {
        ("ens1", u.HOST_V4), ("ens2", u.HOST2_V4), ("ens1", u.HOST_V6), ("ens2", u.HOST2_V6)}


def test_repeated_add_is_idempotent(underlay):
    u = underlay
    pod = u.underlay_pod("pod1", "10.6.0.100/24", "fd00:6::100/64")
    add(u, pod)
    before = (snapshot(pod), snapshot(u.host), mangle(pod))
    add(u, pod)
    assert (snapshot(pod), snapshot(u.host), mangle(pod)) == before
    assert ping(pod, u.HOST_V4)


def test_del_removes_the_host_veth_routes_and_neighbours_and_is_idempotent(underlay):
    u = underlay
    pod = u.underlay_pod("pod1", "10.6.0.100/24", "fd00:6::100/64")
    add(u, pod)
    with ipr(u.host) as handle:  # a legacy per-pod rule (older coordinators added these) is cleaned too
        handle.rule("add", family=2, table=500, priority=1001, dst="10.6.0.100", dst_len=32)
    delete(u, pod)
    assert link(u.host, HOST_VETH) is None and link(pod, "veth0") is None
    for version in (4, 6):
        assert routes(u.host, version, 500) == set()
        assert neighbours(u.host, version) == set()
        assert rules(u.host, version) == {(1000, None, None, 500)}  # the node-wide rule stays (shared)
    delete(u, pod)  # again: nothing left, still fine


def test_del_succeeds_when_the_netns_is_already_gone(underlay, lab, tmp_path):
    u = underlay
    pod = u.underlay_pod("pod1", "10.6.0.100/24")
    add(u, pod)
    name = pod.rsplit("/", 1)[1]
    lab.names.remove(name)
    pyroute2_netns.remove(name)
    delete(u, pod)
    assert link(u.host, HOST_VETH) is None
    assert routes(u.host, 4, 500) == set()
    # a path that exists but is no network namespace any more (an unmounted bind mount) is "gone" too
    stale = tmp_path / "stale-netns"
    stale.touch()
    delete(u, str(stale))


def test_failed_add_leaves_nothing_behind(underlay):
    # Given a policy route whose gateway the pod cannot reach (the kernel refuses it at the last step)
    u = underlay
    pod = u.underlay_pod("pod1", "10.6.0.100/24", "fd00:6::100/64")
    pod_before, host_before = snapshot(pod), snapshot(u.host)
    with pytest.raises(CoordinatorError, match="coordinator ADD for eth0 failed"):
        add(u, pod, policyRoutes=[{"dst": "172.16.0.0/16", "gw": "192.0.2.1"}], podRPFilter=2)
    # Then everything the ADD did was undone, except the node-wide host rule
    assert snapshot(pod) == pod_before and mangle(pod) == []
    assert sysctl_read("net.ipv4.conf.all.rp_filter", netns_path=pod) == "0"
    host_after = snapshot(u.host)
    assert host_after[0] == host_before[0]  # no host veth
    assert routes(u.host, 4, 500) == set() and neighbours(u.host, 4) == set()
    assert rules(u.host, 4) == {(1000, None, None, 500)}
    # and a retry with a good config succeeds
    add(u, pod)
    assert ping(pod, u.HOST_V4)


def test_mode_disable_changes_nothing(underlay):
    u = underlay
    pod = u.underlay_pod("pod1", "10.6.0.100/24")
    before = snapshot(pod), snapshot(u.host)
    assert add(u, pod, mode="disabled") == PREV
    delete(u, pod, mode="disabled")
    assert (snapshot(pod), snapshot(u.host)) == before


def test_pod_tunables_veth_settings_and_mac_prefix(underlay, lab):
    # Given a host interface called eth0 (upstream would have changed its txqueuelen: spec A7)
    u = underlay
    with ipr(u.host) as handle:
        handle.link("add", ifname="eth0", kind="veth", peer="eth0-peer")
    host_eth0_txqlen = link(u.host, "eth0").txqlen
    # and a pod netns where the runtime disabled IPv6 globally, the macvlan CNI enabling it on eth0 only
    pod = u.pod("pod1")
    sysctl_write("net.ipv6.conf.all.disable_ipv6", 1, netns_path=pod)
    sysctl_write("net.ipv4.conf.all.rp_filter", 1, netns_path=pod)
    lab.macvlan(u.host, "ens1", pod, "eth0", [])
    sysctl_write("net/ipv6/conf/eth0/disable_ipv6", 0, netns_path=pod)
    add_addresses(pod, "eth0", ["10.6.0.100/24", "fd00:6::100/64"])
    add_default(pod, "eth0", u.GW_V4)
    # When the coordinator runs with every tunable set
    with Capture(u.gw, "gw0") as seen:
        add(u, pod, txQueueLen=2500, podRPFilter=2, vethMTU=1400, vethLinkAddress="169.254.200.1",
            podMACPrefix="0a:bc")
    # Then they are applied in the pod
    eth0 = link(pod, "eth0")
    assert eth0.txqlen == 2500 and link(u.host, "eth0").txqlen == host_eth0_txqlen
    assert sysctl_read("net.ipv6.conf.all.disable_ipv6", netns_path=pod) == "0"
    assert sysctl_read("net.ipv4.conf.all.rp_filter", netns_path=pod) == "2"
    assert link(pod, "veth0").mtu == link(u.host, HOST_VETH).mtu == 1400
    with ipr(pod) as handle:
        veth0_addrs = {m.get_attr("IFA_ADDRESS") + f"/{m['prefixlen']}" for m in handle.get_addr(family=2)
                       if m["index"] == link(pod, "veth0").index}
    assert veth0_addrs == {"169.254.200.1/32"}
    assert eth0.mac == "0a:bc:0a:06:00:64"
    # and the new MAC was announced with a gratuitous ARP and an unsolicited NA
    garps = [f for f in seen.frames if f[12:14] == b"\x08\x06" and f[28:32] == f[38:42] == bytes([10, 6, 0, 100])]
    assert garps and garps[0][22:28] == bytes.fromhex("0abc0a060064")
    nas = [f for f in seen.frames if f[12:14] == b"\x86\xdd" and f[54] == 136
           and f[62:78] == ipaddress.ip_address("fd00:6::100").packed]
    assert nas and nas[0][6:12] == bytes.fromhex("0abc0a060064")
    # and the pod is still reachable from the underlay after the MAC change
    assert ping(u.gw, "10.6.0.100")


def test_rp_filter_minus_one_leaves_the_pod_value_alone(underlay):
    u = underlay
    pod = u.underlay_pod("pod1", "10.6.0.100/24")
    sysctl_write("net.ipv4.conf.all.rp_filter", 1, netns_path=pod)
    add(u, pod, podRPFilter=-1)
    assert sysctl_read("net.ipv4.conf.all.rp_filter", netns_path=pod) == "1"


def test_check_passes_after_add_and_fails_when_the_host_veth_is_gone(underlay):
    u = underlay
    pod = u.underlay_pod("pod1", "10.6.0.100/24")
    add(u, pod)
    coordinator_check(netns_path=pod, if_name="eth0", container_id=CID, config=config(), host_netns_path=u.host)
    with ipr(u.host) as handle:
        handle.link("del", ifname=HOST_VETH)
    with pytest.raises(CoordinatorError):
        coordinator_check(netns_path=pod, if_name="eth0", container_id=CID, config=config(),
                          host_netns_path=u.host)


def test_add_refuses_a_missing_netns_or_nic(underlay):
    u = underlay
    with pytest.raises(CoordinatorError, match="does not exist"):
        add(u, "/var/run/netns/spiderweb-no-such-netns")
    pod = u.underlay_pod("pod1", "10.6.0.100/24")
    with pytest.raises(CoordinatorError, match="interface net7 not found"):
        add(u, pod, if_name="net7")
    assert link(u.host, HOST_VETH) is None


def test_underlay_extra_nic_without_veth0_is_refused(underlay):
    u = underlay
    pod = u.underlay_pod("pod1", "10.7.0.100/24", ifname="net1", parent="ens2")
    with pytest.raises(CoordinatorError, match="must also run coordinator in underlay mode"):
        add(u, pod, if_name="net1", mode="underlay")


# --- multi-NIC --------------------------------------------------------------------------------------------


def two_nic_pod(u: Underlay) -> str:
    """eth0 on ens1 (coordinated), then net1 on ens2 with its own default routes, as the macvlan CNI adds them."""
    pod = u.underlay_pod("pod1", "10.6.0.100/24", "fd00:6::100/64")
    add(u, pod)
    u.lab.macvlan(u.host, "ens2", pod, "net1", ["10.7.0.100/24", "fd00:7::100/64"],
                  gateways=(u.GW2_V4, u.GW2_V6), append=True)
    return pod


def route_get(path: str, dst: str, src: str | None = None) -> tuple[str, str | None]:
    with ipr(path) as handle:
        answer = handle.route("get", dst=dst, **({"src": src} if src else {}))[0]
        names = {msg["index"]: msg.get_attr("IFLA_IFNAME") for msg in handle.get_links()}
    return names[answer.get_attr("RTA_OIF")], answer.get_attr("RTA_GATEWAY")


def test_second_underlay_nic_gets_its_own_policy_table(underlay):
    u = underlay
    pod = two_nic_pod(u)
    with ipr(pod) as handle:  # the v6 defaults of eth0 and net1 were merged into one ECMP route by the kernel
        assert any(r.multipath for r in list_routes(handle, 6, 254) if r.is_default)
    add(u, pod, if_name="net1")
    # rules from net1's addresses, just below the fwmark rule
    assert rules(pod, 4) == {(1000, None, 1, 100), (999, "10.7.0.100/32", None, 101)}
    assert rules(pod, 6) == {(1000, None, 1, 100), (999, "fd00:7::100/128", None, 101)}
    # net1's default routes moved out of main (IPv6 ECMP split), connected routes copied
    assert ("0.0.0.0/0", "net1", "10.7.0.1", None) not in routes(pod, 4, 254)
    assert {r for r in routes(pod, 6, 254) if r[0] == "::/0"} == {("::/0", "eth0", "fd00:6::1", None)}
    assert routes(pod, 4, 101) >= {("0.0.0.0/0", "net1", "10.7.0.1", None),
                                   ("10.7.0.0/24", "net1", None, "10.7.0.100"),
                                   ("10.6.0.10/32", "veth0", None, "10.6.0.100"),
                                   ("10.233.0.0/18", "veth0", "10.6.0.10", "10.6.0.100")}
    assert ("::/0", "net1", "fd00:7::1", None) in routes(pod, 6, 101)
    assert ("fd00:7::/64", "net1", None, None) in routes(pod, 6, 101)
    # host side: net1's addresses routed to the same host veth
    assert routes(u.host, 4, 500) == {("10.6.0.100/32", HOST_VETH, None, None),
                                      ("10.7.0.100/32", HOST_VETH, None, None)}
    # traffic: sourced from net1 it leaves through net1, otherwise through eth0
    assert route_get(pod, "192.0.2.1") == ("eth0", "10.6.0.1")
    assert route_get(pod, "192.0.2.1", src="10.7.0.100") == ("net1", "10.7.0.1")
    assert route_get(pod, "2001:db8::1", src="fd00:7::100") == ("net1", "fd00:7::1")
    assert ping(pod, u.GW2_V4, src="10.7.0.100") and ping(pod, u.HOST_V4)
    # and a repeated ADD for net1 changes nothing
    before = snapshot(pod)
    add(u, pod, if_name="net1")
    assert snapshot(pod) == before


def test_pod_default_route_nic_moves_the_default_to_the_named_nic(underlay):
    u = underlay
    pod = two_nic_pod(u)
    add(u, pod, if_name="net1", podDefaultRouteNic="net1")
    assert rules(pod, 4) == {(1000, None, 1, 100), (999, "10.6.0.100/32", None, 101)}
    assert ("0.0.0.0/0", "net1", "10.7.0.1", None) in routes(pod, 4, 254)
    assert ("0.0.0.0/0", "eth0", "10.6.0.1", None) not in routes(pod, 4, 254)
    assert ("0.0.0.0/0", "eth0", "10.6.0.1", None) in routes(pod, 4, 101)
    assert route_get(pod, "192.0.2.1") == ("net1", "10.7.0.1")
    assert route_get(pod, "192.0.2.1", src="10.6.0.100") == ("eth0", "10.6.0.1")


def test_pod_default_route_nic_that_does_not_exist_is_an_error_and_undone(underlay):
    u = underlay
    pod = two_nic_pod(u)
    before = snapshot(pod)
    with pytest.raises(CoordinatorError, match="podDefaultRouteNIC net5 does not exist"):
        add(u, pod, if_name="net1", podDefaultRouteNic="net5")
    assert snapshot(pod) == before


def test_policy_routes_go_to_main_on_first_invoke_and_to_the_nic_table_after(underlay):
    u = underlay
    pod = u.underlay_pod("pod1", "10.6.0.100/24")
    add(u, pod, policyRoutes=[{"dst": "172.16.0.0/16", "gw": "10.6.0.254"}, {"dst": "fd00:99::/64",
                                                                             "gw": "fd00:6::254"}])
    assert ("172.16.0.0/16", "eth0", "10.6.0.254", None) in routes(pod, 4, 254)
    assert not any(r[0] == "fd00:99::/64" for r in routes(pod, 6, 254))  # IPv4-only pod: IPv6 route skipped
    u.lab.macvlan(u.host, "ens2", pod, "net1", ["10.7.0.100/24"], gateways=(u.GW2_V4,), append=True)
    add(u, pod, if_name="net1", policyRoutes=[{"dst": "172.17.0.0/16", "gw": "10.7.0.254"}])
    assert ("172.17.0.0/16", "net1", "10.7.0.254", None) in routes(pod, 4, 101)


# --- overlay ----------------------------------------------------------------------------------------------


def test_overlay_mode_uses_eth0_and_its_host_peer(underlay):
    # Given a pod whose eth0 comes from an overlay CNI (a veth to the host, calico-style) and a macvlan net1
    u = underlay
    pod = u.pod("pod1")
    u.lab.veth(u.host, "cali1234", pod, "eth0")
    add_addresses(u.host, "cali1234", ["10.244.1.1/24"])
    add_addresses(pod, "eth0", ["10.244.1.5/24"])
    add_default(pod, "eth0", "10.244.1.1")
    u.lab.macvlan(u.host, "ens1", pod, "net1", ["10.6.0.120/24"], gateways=(u.GW_V4,), append=True)
    cali = link(u.host, "cali1234")
    # When coordinator runs for net1 in auto mode
    add(u, pod, if_name="net1")
    # Then no veth0 is created and eth0 plays its role
    assert link(pod, "veth0") is None and link(u.host, HOST_VETH) is None
    assert routes(pod, 4, 254) == {
        ("0.0.0.0/0", "eth0", "10.244.1.1", None),
        ("10.244.1.0/24", "eth0", None, "10.244.1.5"),
        ("10.6.0.0/24", "net1", None, "10.6.0.120"),
        ("10.244.1.1/32", "eth0", None, "10.244.1.5"),
        ("10.6.0.10/32", "eth0", None, "10.244.1.5"),
        ("10.7.0.10/32", "eth0", None, "10.244.1.5"),
        ("10.244.0.0/16", "eth0", "10.244.1.1", "10.244.1.5"),
        ("10.233.0.0/18", "eth0", "10.244.1.1", "10.244.1.5"),
        ("169.254.0.0/16", "eth0", "10.244.1.1", "10.244.1.5"),
    }
    assert routes(pod, 4, 101) == {
        ("0.0.0.0/0", "net1", "10.6.0.1", None),
        ("10.6.0.0/24", "net1", None, "10.6.0.120"),
        ("10.244.1.1/32", "eth0", None, "10.244.1.5"),
        ("10.6.0.10/32", "eth0", None, "10.244.1.5"),
        ("10.7.0.10/32", "eth0", None, "10.244.1.5"),
    }
    assert routes(pod, 4, 100) == {("0.0.0.0/0", "eth0", "10.244.1.1", None)}
    assert rules(pod, 4) == {(32765, "10.6.0.120/32", None, 101), (32764, "10.244.1.5/32", None, 100)}
    assert neighbours(pod, 4) == {(ip, "eth0", cali.mac) for ip in ("10.244.1.1", "10.6.0.10", "10.7.0.10")}
    assert mangle(pod) == []
    assert routes(u.host, 4, 500) == {("10.6.0.120/32", "cali1234", None, None)}
    assert neighbours(u.host, 4) == {("10.6.0.120", "cali1234", link(pod, "eth0").mac)}
    # traffic: from net1's address the node is reached through eth0, and the underlay through net1
    assert ping(pod, u.HOST_V4, src="10.6.0.120") and ping(pod, u.GW_V4, src="10.6.0.120")
    assert route_get(pod, "192.0.2.1") == ("eth0", "10.244.1.1")
    # overlay mode must not be used for eth0 itself
    with pytest.raises(CoordinatorError, match="first NIC"):
        add(u, pod, if_name="eth0", mode="overlay")
    # DEL cleans the host routes that point at the overlay peer, and leaves the overlay veth alone
    delete(u, pod, if_name="net1")
    assert routes(u.host, 4, 500) == set() and neighbours(u.host, 4) == set()
    assert link(u.host, "cali1234") is not None


def test_the_agents_rtnetlink_reads_the_kernel_as_pyroute2_does(underlay):
    # Given a two-NIC pod before net1 is coordinated: an IPv6 ECMP default (multipath), two veth ends, macvlan
    # NICs, policy rules with fwmark and source selectors, permanent neighbours, routes in tables above 255
    u = underlay
    pod = two_nic_pod(u)
    with ipr(pod) as handle:
        assert any(r.multipath for r in kernel_view.list_routes(handle, 6, 254))
    add(u, pod, if_name="net1")
    for path in (pod, u.host):
        # When both decoders read the same namespace
        with iproute(path) as mine, ipr(path) as theirs:
            # Then they see the same links, addresses, routes (every table), rules and neighbours
            assert rtnl.list_links(mine) == kernel_view.list_links(theirs)
            for version in (4, 6):
                assert {(a.index, str(a.interface)) for a in rtnl.list_addresses(mine, family=rtnl.FAMILY[version])
                        } == kernel_view.list_addresses(theirs, version)
                assert rtnl.list_routes(mine, version) == kernel_view.list_routes(theirs, version)
                assert rtnl.list_rules(mine, version) == kernel_view.list_rules(theirs, version)
                assert rtnl.list_neighbours(mine, version) == kernel_view.list_neighbours(theirs, version)
            for link in rtnl.list_links(mine):
                assert rtnl.get_link(mine, name=link.name) == rtnl.get_link(mine, index=link.index) == link


def test_the_agents_rtnetlink_reports_the_kernels_refusals_with_errno(underlay):
    u = underlay
    with iproute(u.host) as nl:
        assert rtnl.get_link(nl, name="nosuch0") is None and rtnl.get_link(nl, index=999_999) is None
        rtnl.delete_link(nl, name="nosuch0")  # absent is fine
        with pytest.raises(rtnl.NetlinkError) as refused:
            rtnl.set_link(nl, 999_999, up=True)
        assert refused.value.code == errno.ENODEV and "set link 999999" in str(refused.value)
        route = rtnl.Route(table=254, dst=ipaddress.ip_network("198.51.100.0/24"), oif=999_999)
        with pytest.raises(rtnl.NetlinkError):
            rtnl.add_route(nl, route)
        rtnl.delete_route(nl, route)  # absent is fine
