"""A small network lab built from real network namespaces, for the netlink layer's tests.

Topology (every namespace is created by the test and removed afterwards, so no traffic touches the machine's own
network):

    [sw]  br0 (10.6.0.0/24, fd00:6::/64)         br1 (10.7.0.0/24, fd00:7::/64)   <- the underlay "switches"
            |            |                           |            |
    [host] ens1 .10    [gw] gw0 .1                [host] ens2 .10  [gw] gw1 .1     <- node NICs and the gateway
      |
      +-- macvlan children moved into pod namespaces as eth0 / net1 (what the macvlan CNI plugin would do)

The helpers do with pyroute2 what the main CNI plugin and the node would have done before the coordinator runs.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import secrets
import select
import socket
import struct
import time
from dataclasses import dataclass, field

from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns

from agent.netlink.netns_thread import run_in_netns

NETNS_DIR = "/var/run/netns"
IFA_F_NODAD = 0x02
_counter = itertools.count()


def ipr(path: str) -> IPRoute:
    """IPRoute in a lab namespace (never creates one)."""
    return IPRoute(netns=path, flags=0)


def index(path: str, name: str) -> int:
    with ipr(path) as handle:
        found = handle.link_lookup(ifname=name)
    assert found, f"{name} not found in {path}"
    return found[0]


def add_addresses(path: str, ifname: str, cidrs: list[str]) -> None:
    """Configure addresses (IPv6 without DAD so tests need not wait a second for it)."""
    with ipr(path) as handle:
        idx = handle.link_lookup(ifname=ifname)[0]
        for cidr in cidrs:
            iface = ipaddress.ip_interface(cidr)
            extra = {"flags": IFA_F_NODAD} if iface.version == 6 else {}
            handle.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen, **extra)


def add_default(path: str, ifname: str, gateway: str, *, append: bool = False) -> None:
    """A default route as the CNI plugin adds it (``append`` = next to an existing one, like a second NIC)."""
    with ipr(path) as handle:
        idx = handle.link_lookup(ifname=ifname)[0]
        dst = "0.0.0.0/0" if ipaddress.ip_address(gateway).version == 4 else "::/0"
        handle.route("append" if append else "add", dst=dst, gateway=gateway, oif=idx)


@dataclass
class Lab:
    """Owns every namespace it creates and removes them all in :meth:`close`, whatever happened."""

    prefix: str = field(default_factory=lambda: f"swt{os.getpid()}{secrets.token_hex(2)}")
    names: list[str] = field(default_factory=list)

    def netns(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        pyroute2_netns.create(name)
        self.names.append(name)
        return f"{NETNS_DIR}/{name}"

    def close(self) -> None:
        for name in reversed(self.names):
            try:
                pyroute2_netns.remove(name)
            except OSError:
                pass
        self.names.clear()

    # building blocks --------------------------------------------------------------------------------------

    def bridge(self, switch: str, name: str) -> None:
        with ipr(switch) as handle:
            handle.link("add", ifname=name, kind="bridge", br_mcast_snooping=0, br_stp_state=0)
            handle.link("set", index=handle.link_lookup(ifname=name)[0], state="up")

    def cable(self, switch: str, bridge: str, path: str, ifname: str) -> None:
        """A veth from ``path`` (named ``ifname``) to a port of ``bridge`` in the switch namespace."""
        port = f"p{next(_counter)}"
        fd = os.open(path, os.O_RDONLY)
        try:
            with ipr(switch) as handle:
                handle.link("add", ifname=port, kind="veth", peer={"ifname": ifname, "net_ns_fd": fd})
                port_idx = handle.link_lookup(ifname=port)[0]
                handle.link("set", index=port_idx, master=handle.link_lookup(ifname=bridge)[0], state="up")
        finally:
            os.close(fd)
        with ipr(path) as handle:
            handle.link("set", index=handle.link_lookup(ifname=ifname)[0], state="up")

    def veth(self, left: str, left_name: str, right: str, right_name: str) -> None:
        """A veth pair between two namespaces, both ends up (e.g. an overlay CNI's pod eth0 and host peer)."""
        fd = os.open(right, os.O_RDONLY)
        try:
            with ipr(left) as handle:
                handle.link("add", ifname=left_name, kind="veth", peer={"ifname": right_name, "net_ns_fd": fd})
                handle.link("set", index=handle.link_lookup(ifname=left_name)[0], state="up")
        finally:
            os.close(fd)
        with ipr(right) as handle:
            handle.link("set", index=handle.link_lookup(ifname=right_name)[0], state="up")

    def macvlan(self, host: str, parent: str, pod: str, ifname: str, cidrs: list[str], *,
                gateways: tuple[str, ...] = (), append: bool = False, up: bool = True) -> None:
        """What the macvlan CNI does: a bridge-mode child of ``parent`` moved into ``pod`` with addresses."""
        temp = f"mv{next(_counter)}"
        fd = os.open(pod, os.O_RDONLY)
        try:
            with ipr(host) as handle:
                handle.link("add", ifname=temp, kind="macvlan", link=handle.link_lookup(ifname=parent)[0],
                            macvlan_mode="bridge", net_ns_fd=fd)
        finally:
            os.close(fd)
        with ipr(pod) as handle:
            idx = handle.link_lookup(ifname=temp)[0]
            handle.link("set", index=idx, ifname=ifname)
            if up:
                handle.link("set", index=idx, state="up")
        add_addresses(pod, ifname, cidrs)
        for gateway in gateways:
            add_default(pod, ifname, gateway, append=append)


@dataclass
class Underlay:
    """Paths of the namespaces of the standard lab and the addresses in it."""

    lab: Lab
    switch: str
    host: str
    gw: str

    HOST_V4 = "10.6.0.10"
    HOST_V6 = "fd00:6::10"
    GW_V4 = "10.6.0.1"
    GW_V6 = "fd00:6::1"
    HOST2_V4 = "10.7.0.10"
    HOST2_V6 = "fd00:7::10"
    GW2_V4 = "10.7.0.1"
    GW2_V6 = "fd00:7::1"

    def pod(self, role: str) -> str:
        """An empty pod namespace with ``lo`` up."""
        path = self.lab.netns(role)
        with ipr(path) as handle:
            handle.link("set", index=handle.link_lookup(ifname="lo")[0], state="up")
        return path

    def underlay_pod(self, role: str, v4: str, v6: str | None = None, *, ifname: str = "eth0",
                     parent: str = "ens1") -> str:
        """A pod whose ``ifname`` is a macvlan on ``parent`` with a default route via that subnet's gateway."""
        path = self.pod(role)
        second = parent == "ens2"
        gateways = (self.GW2_V4 if second else self.GW_V4,) + ((self.GW2_V6 if second else self.GW_V6,) if v6 else ())
        self.lab.macvlan(self.host, parent, path, ifname, [v4] + ([v6] if v6 else []), gateways=gateways)
        return path


def build_underlay(lab: Lab) -> Underlay:
    """Switch with two bridges, a host with one NIC on each, and a gateway on both subnets."""
    switch, host, gw = lab.netns("sw"), lab.netns("host"), lab.netns("gw")
    lab.bridge(switch, "br0")
    lab.bridge(switch, "br1")
    lab.cable(switch, "br0", host, "ens1")
    lab.cable(switch, "br1", host, "ens2")
    lab.cable(switch, "br0", gw, "gw0")
    lab.cable(switch, "br1", gw, "gw1")
    for path in (host, gw):
        with ipr(path) as handle:
            handle.link("set", index=handle.link_lookup(ifname="lo")[0], state="up")
    add_addresses(host, "ens1", [f"{Underlay.HOST_V4}/24", f"{Underlay.HOST_V6}/64"])
    add_addresses(host, "ens2", [f"{Underlay.HOST2_V4}/24", f"{Underlay.HOST2_V6}/64"])
    add_addresses(gw, "gw0", [f"{Underlay.GW_V4}/24", f"{Underlay.GW_V6}/64"])
    add_addresses(gw, "gw1", [f"{Underlay.GW2_V4}/24", f"{Underlay.GW2_V6}/64"])
    add_default(host, "ens1", Underlay.GW_V4)
    add_default(host, "ens1", Underlay.GW_V6)
    return Underlay(lab=lab, switch=switch, host=host, gw=gw)


# --- traffic ---------------------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ping(path: str, dst: str, *, src: str | None = None, timeout: float = 2.0, attempts: int = 3) -> bool:
    """ICMP echo from namespace ``path`` to ``dst`` over a raw socket; True when a matching reply arrives."""
    version = ipaddress.ip_address(dst).version

    def open_socket() -> socket.socket:
        if version == 4:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        else:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        if src:
            sock.bind((src, 0))
        return sock

    ident = secrets.randbelow(0xFFFF)
    with run_in_netns(path, open_socket) as sock:
        for seq in range(attempts):
            payload = b"spiderweb-lab" + bytes([seq])
            if version == 4:
                header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
                packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload
            else:  # the kernel fills in the ICMPv6 checksum of raw ICMPv6 sockets
                packet = struct.pack("!BBHHH", 128, 0, 0, ident, seq) + payload
            try:
                sock.sendto(packet, (dst, 0))
            except OSError:
                time.sleep(timeout / attempts)
                continue
            deadline = time.monotonic() + timeout / attempts
            while (remaining := deadline - time.monotonic()) > 0:
                if not select.select([sock], [], [], remaining)[0]:
                    break
                data = sock.recv(65535)
                icmp = data[(data[0] & 0x0F) * 4:] if version == 4 else data
                kind, _, _, got_ident, got_seq = struct.unpack("!BBHHH", icmp[:8])
                if kind == (0 if version == 4 else 129) and got_ident == ident and got_seq == seq:
                    return True
    return False


class Capture:
    """Frames seen on ``ifname`` in namespace ``path`` while the ``with`` block runs (ARP and IPv6 only)."""

    def __init__(self, path: str, ifname: str) -> None:
        self.path, self.ifname, self.frames = path, ifname, []

    def __enter__(self) -> Capture:
        def open_socket() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
            sock.bind((self.ifname, 0x0003))
            return sock

        self.sock = run_in_netns(self.path, open_socket)
        return self

    def __exit__(self, *exc: object) -> None:
        deadline = time.monotonic() + 0.3
        while (remaining := deadline - time.monotonic()) > 0:
            if not select.select([self.sock], [], [], remaining)[0]:
                break
            frame = self.sock.recv(65535)
            if frame[12:14] in (b"\x08\x06", b"\x86\xdd"):
                self.frames.append(frame)
        self.sock.close()
