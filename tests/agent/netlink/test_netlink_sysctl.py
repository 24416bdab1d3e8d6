"""Host sysctls (spec §12.3) applied to a namespace standing in for the node."""

from __future__ import annotations

import pytest

from agent.netlink.sysctl import apply_host_sysctls, host_sysctls, sysctl_path, sysctl_read, sysctl_write


def test_host_sysctls_per_family():
    assert host_sysctls(ipv4=True, ipv6=False) == [
        ("net.ipv4.neigh.default.gc_thresh3", "28160"),
        ("net.ipv4.conf.all.arp_notify", "1"),
        ("net.ipv4.conf.all.forwarding", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
    ]
    assert [key for key, _ in host_sysctls(ipv4=False, ipv6=True)] == [
        "net.ipv6.neigh.default.gc_thresh3", "net.ipv6.conf.all.forwarding"]
    assert host_sysctls(ipv4=False, ipv6=False) == []


def test_sysctl_path_keeps_dotted_interface_names_in_slash_form():
    assert sysctl_path("net.ipv6.conf.all.disable_ipv6") == "/proc/sys/net/ipv6/conf/all/disable_ipv6"
    assert sysctl_path("net/ipv4/conf/ens1.100/rp_filter") == "/proc/sys/net/ipv4/conf/ens1.100/rp_filter"


@pytest.mark.netns
def test_apply_host_sysctls_sets_values_and_skips_missing_keys(lab):
    # Given a namespace with forwarding off and rp_filter strict
    host = lab.netns("host")
    sysctl_write("net.ipv4.conf.all.rp_filter", 1, netns_path=host)
    assert sysctl_read("net.ipv4.conf.all.forwarding", netns_path=host) == "0"
    # When the agent's host sysctls are applied for both families
    written = apply_host_sysctls(ipv4=True, ipv6=True, netns_path=host)
    # Then the per-namespace keys are set; gc_thresh3 exists only in the initial namespace and is skipped
    assert written == {
        "net.ipv4.conf.all.arp_notify": "1",
        "net.ipv4.conf.all.forwarding": "1",
        "net.ipv4.conf.all.rp_filter": "0",
        "net.ipv6.conf.all.forwarding": "1",
    }
    for key, value in written.items():
        assert sysctl_read(key, netns_path=host) == value


@pytest.mark.netns
def test_only_the_enabled_family_is_touched(lab):
    host = lab.netns("host")
    apply_host_sysctls(ipv4=False, ipv6=True, netns_path=host)
    assert sysctl_read("net.ipv6.conf.all.forwarding", netns_path=host) == "1"
    assert sysctl_read("net.ipv4.conf.all.forwarding", netns_path=host) == "0"


@pytest.mark.netns
def test_writes_stay_in_their_namespace(lab):
    one, two = lab.netns("one"), lab.netns("two")
    sysctl_write("net.ipv4.conf.all.forwarding", 1, netns_path=one)
    assert sysctl_read("net.ipv4.conf.all.forwarding", netns_path=one) == "1"
    assert sysctl_read("net.ipv4.conf.all.forwarding", netns_path=two) == "0"


@pytest.mark.netns
def test_missing_namespace_raises(lab):
    with pytest.raises(FileNotFoundError):
        sysctl_read("net.ipv4.conf.all.forwarding", netns_path="/var/run/netns/spiderweb-gone")
