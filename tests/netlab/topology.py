"""Test hosts in network namespaces: an underlay switch (a bridge) and nodes plugged into it by veth.

Everything lives in namespaces this test run creates (names carry the pid), so nothing touches the machine's
own network, and `teardown()` removes all of it even after a failure.

    [sw: br0 10.77.0.1/16, fd77::1/64 (the gateway)]
        |-- veth --> [node-a: eth0 10.77.0.2]  pods: macvlan on eth0
        |-- veth --> [node-b: eth0 10.77.0.3]
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass, field

GATEWAY4, GATEWAY6 = "10.77.0.1", "fd77::1"
SUBNET4, SUBNET6 = "10.77.0.0/16", "fd77::/64"


def sh(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", "netns", "exec", netns, *args] if netns else list(args)
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60)


@dataclass
class Node:
    name: str
    netns: str
    ipv4: str
    ipv6: str

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.netns}"


@dataclass
class Topology:
    prefix: str = field(default_factory=lambda: f"sw{os.getpid() % 10000}{uuid.uuid4().hex[:3]}")
    nodes: dict[str, Node] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    def build(self, node_names=("node-a", "node-b")) -> Topology:
        sh("ip", "netns", "add", self.switch)
        sh("ip", "link", "add", "br0", "type", "bridge", netns=self.switch)
        sh("ip", "addr", "add", f"{GATEWAY4}/16", "dev", "br0", netns=self.switch)
        sh("ip", "-6", "addr", "add", f"{GATEWAY6}/64", "dev", "br0", "nodad", netns=self.switch)
        sh("ip", "link", "set", "br0", "up", netns=self.switch)
        sh("ip", "link", "set", "lo", "up", netns=self.switch)
        for i, name in enumerate(node_names):
            netns = f"{self.prefix}-{name}"
            node = Node(name=name, netns=netns, ipv4=f"10.77.0.{i + 2}", ipv6=f"fd77::{i + 2}")
            sh("ip", "netns", "add", netns)
            port = f"p{i}"
            sh("ip", "link", "add", "eth0", "netns", netns, "type", "veth", "peer", "name", port,
               "netns", self.switch)
            sh("ip", "link", "set", port, "master", "br0", "up", netns=self.switch)
            sh("ip", "link", "set", "lo", "up", netns=netns)
            sh("ip", "addr", "add", f"{node.ipv4}/16", "dev", "eth0", netns=netns)
            sh("ip", "-6", "addr", "add", f"{node.ipv6}/64", "dev", "eth0", "nodad", netns=netns)
            sh("ip", "link", "set", "eth0", "up", netns=netns)
            sh("ip", "route", "add", "default", "via", GATEWAY4, netns=netns)
            self.nodes[name] = node
        return self

    def segment_add(self, device: str, subnet_prefix: str) -> str:
        """Another underlay: bridge ``br-<device>`` in the switch holding ``<subnet_prefix>.0.1/16`` (the gateway) and
        NIC ``device`` on every node (``<subnet_prefix>.0.<n>``), so pods can have a NIC per segment. Returns the
        gateway. ``subnet_prefix`` is the first two octets, e.g. ``"10.78"``."""
        bridge, gateway = f"br-{device}", f"{subnet_prefix}.0.1"
        sh("ip", "link", "add", bridge, "type", "bridge", netns=self.switch)
        sh("ip", "addr", "add", f"{gateway}/16", "dev", bridge, netns=self.switch)
        sh("ip", "link", "set", bridge, "up", netns=self.switch)
        for i, node in enumerate(self.nodes.values()):
            port = f"{device[:6]}p{i}"
            sh("ip", "link", "add", device, "netns", node.netns, "type", "veth", "peer", "name", port,
               "netns", self.switch)
            sh("ip", "link", "set", port, "master", bridge, "up", netns=self.switch)
            sh("ip", "addr", "add", f"{subnet_prefix}.0.{i + 2}/16", "dev", device, netns=node.netns)
            sh("ip", "link", "set", device, "up", netns=node.netns)
        return gateway

    def segment_remove(self, device: str) -> None:
        """Undo :meth:`segment_add` (the veth pairs go with their node end)."""
        for node in self.nodes.values():
            sh("ip", "link", "del", device, netns=node.netns, check=False)
        sh("ip", "link", "del", f"br-{device}", netns=self.switch, check=False)

    def intruder(self, address: str, prefix: int) -> str:
        """A host on the switch that already uses `address` (for conflict detection)."""
        netns = f"{self.prefix}-x{len(self.extra)}"
        sh("ip", "netns", "add", netns)
        port = f"x{len(self.extra)}"
        sh("ip", "link", "add", "eth0", "netns", netns, "type", "veth", "peer", "name", port, "netns", self.switch)
        sh("ip", "link", "set", port, "master", "br0", "up", netns=self.switch)
        family = ["-6"] if ":" in address else []
        extra = ["nodad"] if ":" in address else []
        sh("ip", *family, "addr", "add", f"{address}/{prefix}", "dev", "eth0", *extra, netns=netns)
        sh("ip", "link", "set", "eth0", "up", netns=netns)
        self.extra.append(netns)
        return netns

    def pod_netns(self, name: str) -> str:
        netns = f"{self.prefix}-{name}"
        sh("ip", "netns", "add", netns)
        sh("ip", "link", "set", "lo", "up", netns=netns)
        self.extra.append(netns)
        return netns

    def remove_netns(self, netns: str) -> None:
        sh("ip", "netns", "del", netns, check=False)
        if netns in self.extra:
            self.extra.remove(netns)

    def teardown(self) -> None:
        for netns in [*self.extra, *(n.netns for n in self.nodes.values()), self.switch]:
            sh("ip", "netns", "del", netns, check=False)
        self.extra.clear()
        self.nodes.clear()

    def leftovers(self) -> list[str]:
        """Namespaces of this topology still present (after teardown: must be none)."""
        out = sh("ip", "netns", "list").stdout
        return [line.split()[0] for line in out.splitlines() if line.startswith(self.prefix)]
