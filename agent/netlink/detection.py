"""IP conflict and gateway reachability detection, and gratuitous ARP / unsolicited NA (spec §11.4, F28-F30).

Everything runs on ``if_name`` inside the pod netns, right after allocation and (normally) before the main CNI
has configured the address, so the probes cannot rely on the kernel's own ARP/NDP state:

* IPv4 conflict: ARP request in DAD form (RFC 5227 probe: sender IP 0.0.0.0, target the new IP, broadcast). An
  ARP packet whose sender IP is the new IP and whose sender MAC is not ours means somebody holds the address.
* IPv4 gateway: ARP request from the new IP for the gateway; an ARP reply from the gateway means reachable.
* IPv6 conflict: neighbour solicitation in DAD form (RFC 4862: source ``::``, to the solicited-node group of the
  new IP). The owner defends with a neighbour advertisement to all-nodes carrying a target link-layer option.
* IPv6 gateway: neighbour solicitation from the new IP for the gateway; its advertisement means reachable.
* Announce: gratuitous ARP (request with sender IP = target IP) and unsolicited NA (override flag, to all-nodes).

How the sockets are made, and why:

* Frames are built by hand and sent/received on an ``AF_PACKET`` socket bound to ``if_name``. A raw ICMPv6 socket
  cannot do this job: the kernel picks the IPv6 source itself, so it can neither send the ``::``-sourced DAD
  probe nor source a solicitation from an address that is not configured yet, and an advertisement addressed to
  such an address is dropped before it reaches a raw socket. With packet sockets IPv4 and IPv6 work the same way
  and no wait for link-local DAD (upstream waits up to 10 s) is needed.
* A socket belongs for life to the namespace of the task that created it, so it is created (and bound) in a
  short-lived thread that ``setns`` into the pod netns (:func:`agent.netlink.netns_thread.run_in_netns`);
  ``setns`` only moves that thread, so the agent's other requests are untouched. I/O then happens in the caller.

Timing (spec §11.4, Appendix B): each probe round sends one request (a failing send is retried 3 times) and
listens for 100 ms; ``probes`` rounds (default 3) are made, stopping at the first answer and never exceeding the
budget (1 s for conflicts, 500 ms for gateways). Upstream listens after a single request; we send up to three so
one lost frame on a busy segment neither hides a conflict nor fails a pod with a false "gateway unreachable".
Pass ``probes=1`` for upstream's exact behaviour.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from agent.netlink.errors import DetectionError
from agent.netlink.netns_thread import run_in_netns
from agent.netlink.rtnl import get_link, iproute, set_link
from agent.netlink.wire import mac_bytes, mac_text

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_MULTICAST = 0
ICMPV6_NS = 135
ICMPV6_NA = 136
NA_FLAG_SOLICITED = 0x40000000
NA_FLAG_OVERRIDE = 0x20000000
BROADCAST_MAC = b"\xff" * 6
ALL_NODES = ipaddress.IPv6Address("ff02::1")

DEFAULT_WINDOW = 0.1
DEFAULT_PROBES = 3
SEND_RETRIES = 3
CONFLICT_BUDGET = 1.0
GATEWAY_BUDGET = 0.5


@dataclass(frozen=True)
class DetectionOk:
    """No conflict / the gateway answered."""


@dataclass(frozen=True)
class ConflictFound:
    """``ip`` is already used on the segment by the host with MAC ``mac``."""

    ip: str
    mac: str

    @property
    def message(self) -> str:
        """Upstream's wording, for the CNI error shown to the user."""
        return f"ip conflict: {self.ip} is already used by {self.mac}"


@dataclass(frozen=True)
class GatewayUnreachable:
    """Nobody answered for ``gw`` within the budget."""

    gw: str

    @property
    def message(self) -> str:
        """Upstream's wording, for the CNI error shown to the user."""
        return f"gateway {self.gw} is unreachable"


OK = DetectionOk()
DetectionResult = DetectionOk | ConflictFound | GatewayUnreachable


# --- frame building and parsing (pure) -------------------------------------------------------------------


def arp_frame(*, op: int, src_mac: bytes, sender_ip: str, target_ip: str, dst_mac: bytes = BROADCAST_MAC) -> bytes:
    """Build an Ethernet ARP frame (``op`` 1 request, 2 reply); the target MAC field is left zero.

    >>> f = arp_frame(op=1, src_mac=b"\\x02" * 6, sender_ip="0.0.0.0", target_ip="10.0.0.5")
    >>> len(f), f[12:14].hex(), f[20:22].hex(), f[28:32], f[38:42]
    (42, '0806', '0001', b'\\x00\\x00\\x00\\x00', b'\\n\\x00\\x00\\x05')
    """
    header = dst_mac + src_mac + struct.pack("!H", ETH_P_ARP)
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op)
    body += src_mac + socket.inet_aton(sender_ip) + b"\x00" * 6 + socket.inet_aton(target_ip)
    return header + body


def parse_arp(frame: bytes) -> tuple[int, bytes, str, str] | None:
    """Return ``(op, sender_mac, sender_ip, target_ip)`` of an Ethernet ARP frame, ``None`` if it is not one."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        return None
    return op, frame[22:28], socket.inet_ntoa(frame[28:32]), socket.inet_ntoa(frame[38:42])


def solicited_node(address: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """The solicited-node multicast group of ``address`` (RFC 4291 §2.7.1).

    >>> str(solicited_node(ipaddress.IPv6Address("fd00:6::1:2:3")))
    'ff02::1:ff02:3'
    """
    return ipaddress.IPv6Address(b"\xff\x02" + b"\x00" * 9 + b"\x01\xff" + address.packed[13:])


def multicast_mac(group: ipaddress.IPv6Address) -> bytes:
    """Ethernet address of an IPv6 multicast group: ``33:33`` + its last 4 bytes."""
    return b"\x33\x33" + group.packed[12:]


def _icmpv6_checksum(src: bytes, dst: bytes, payload: bytes) -> int:
    pseudo = src + dst + struct.pack("!I3xB", len(payload), socket.IPPROTO_ICMPV6) + payload
    if len(pseudo) % 2:
        pseudo += b"\x00"
    total = sum(struct.unpack(f"!{len(pseudo) // 2}H", pseudo))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv6_frame(*, src_mac: bytes, dst_mac: bytes, src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address,
                icmp: bytes) -> bytes:
    icmp = icmp[:2] + struct.pack("!H", _icmpv6_checksum(src.packed, dst.packed, icmp)) + icmp[4:]
    ip_header = struct.pack("!IHBB", 6 << 28, len(icmp), socket.IPPROTO_ICMPV6, 255) + src.packed + dst.packed
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IPV6) + ip_header + icmp


def ns_frame(*, src_mac: bytes, src: str, target: str) -> bytes:
    """Neighbour solicitation for ``target`` to its solicited-node group; ``src`` ``"::"`` gives the DAD form.

    A source link-layer option is added unless the source is unspecified (RFC 4861 §4.3 forbids it there).
    """
    src_ip, target_ip = ipaddress.IPv6Address(src), ipaddress.IPv6Address(target)
    group = solicited_node(target_ip)
    icmp = struct.pack("!BBHI", ICMPV6_NS, 0, 0, 0) + target_ip.packed
    if not src_ip.is_unspecified:
        icmp += struct.pack("!BB", 1, 1) + src_mac
    return _ipv6_frame(src_mac=src_mac, dst_mac=multicast_mac(group), src=src_ip, dst=group, icmp=icmp)


def na_frame(*, src_mac: bytes, target: str, flags: int = NA_FLAG_OVERRIDE) -> bytes:
    """Unsolicited neighbour advertisement for ``target`` (also the source) to all-nodes, with our MAC."""
    target_ip = ipaddress.IPv6Address(target)
    icmp = struct.pack("!BBHI", ICMPV6_NA, 0, 0, flags) + target_ip.packed + struct.pack("!BB", 2, 1) + src_mac
    return _ipv6_frame(src_mac=src_mac, dst_mac=multicast_mac(ALL_NODES), src=target_ip, dst=ALL_NODES, icmp=icmp)


def parse_ndp(frame: bytes) -> tuple[int, str, str, bytes | None] | None:
    """Return ``(icmp type, ipv6 source, target, link-layer option or None)`` of an NS/NA frame, else ``None``.

    The link-layer option is the target option (type 2) of an NA or the source option (type 1) of an NS.
    """
    if len(frame) < 14 + 40 + 24 or frame[12:14] != b"\x86\xdd":
        return None
    ip = frame[14:54]
    if ip[6] != socket.IPPROTO_ICMPV6:
        return None
    icmp = frame[54:54 + struct.unpack("!H", ip[4:6])[0]]
    if len(icmp) < 24 or icmp[0] not in (ICMPV6_NS, ICMPV6_NA) or icmp[1] != 0:
        return None
    wanted_option = 2 if icmp[0] == ICMPV6_NA else 1
    lladdr = None
    options = icmp[24:]
    while len(options) >= 8:
        length = options[1] * 8
        if length == 0:
            break
        if options[0] == wanted_option and length >= 8:
            lladdr = options[2:8]
        options = options[length:]
    source = str(ipaddress.IPv6Address(ip[8:24]))
    return icmp[0], source, str(ipaddress.IPv6Address(icmp[8:24])), lladdr


# --- sockets and probing ---------------------------------------------------------------------------------


def _link_up(netns_path: str | None, if_name: str) -> tuple[int, bytes]:
    """Bring ``if_name`` up (spec §11.4 step 1: it is still down right after allocation); return index and MAC."""
    try:
        with iproute(netns_path) as nl:
            link = get_link(nl, name=if_name)
            if link is None:
                raise DetectionError(f"interface {if_name} not found in {netns_path or 'the agent netns'}")
            if not link.up:
                set_link(nl, link.index, up=True)
            return link.index, mac_bytes(link.mac)
    except FileNotFoundError:
        raise DetectionError(f"network namespace {netns_path} does not exist") from None
    except OSError as exc:  # e.g. EINVAL: the path is not (any more) a network namespace
        raise DetectionError(f"cannot enter network namespace {netns_path}: {exc}") from None


def _open_packet_socket(if_name: str, ethertype: int, multicast: bytes | None, ifindex: int) -> socket.socket:
    """Runs inside the target netns: a packet socket bound to ``if_name`` for one ethertype."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
    try:
        sock.bind((if_name, ethertype))
        if multicast is not None:
            mreq = struct.pack("iHH8s", ifindex, PACKET_MR_MULTICAST, 6, multicast)
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _packet_socket(netns_path: str | None, if_name: str, ethertype: int, *,
                   multicast: bytes | None = None, ifindex: int = 0) -> socket.socket:
    return run_in_netns(netns_path, _open_packet_socket, if_name, ethertype, multicast, ifindex)


def _send(sock: socket.socket, frame: bytes) -> None:
    last: OSError | None = None
    for _ in range(SEND_RETRIES):
        try:
            sock.send(frame)
            return
        except OSError as exc:  # ENOBUFS / ENETDOWN right after link-up are transient
            last = exc
            time.sleep(0.01)
    raise DetectionError(f"could not send probe: {last}")


def _probe(sock: socket.socket, frame: bytes, match: Callable[[bytes], Any], *, window: float, probes: int,
           budget: float) -> Any:
    """Send ``frame`` up to ``probes`` times, each followed by a ``window`` of listening; first match wins."""
    deadline = time.monotonic() + budget
    for _ in range(max(1, probes)):
        if time.monotonic() >= deadline:
            break
        _send(sock, frame)
        window_end = min(time.monotonic() + window, deadline)
        while (remaining := window_end - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], remaining)
            if not readable:
                break
            try:
                data, address = sock.recvfrom(65535)
            except BlockingIOError:
                continue
            if address[2] == PACKET_OUTGOING:
                continue
            found = match(data)
            if found is not None:
                return found
    return None


def check_ipv4_conflict(*, netns_path: str | None, if_name: str, ip: str, window: float = DEFAULT_WINDOW,
                        probes: int = DEFAULT_PROBES, budget: float = CONFLICT_BUDGET
                        ) -> DetectionOk | ConflictFound:
    """ARP-probe ``ip`` in DAD form on ``if_name``; ``ConflictFound`` names the MAC that answered for it."""
    _, mac = _link_up(netns_path, if_name)
    frame = arp_frame(op=1, src_mac=mac, sender_ip="0.0.0.0", target_ip=ip)

    def match(data: bytes) -> ConflictFound | None:
        arp = parse_arp(data)
        if arp and arp[2] == ip and arp[1] != mac:
            return ConflictFound(ip=ip, mac=mac_text(arp[1]))
        return None

    with _packet_socket(netns_path, if_name, ETH_P_ARP) as sock:
        found = _probe(sock, frame, match, window=window, probes=probes, budget=budget)
    return found or OK


def check_ipv4_gateway(*, netns_path: str | None, if_name: str, ip: str, gateway: str,
                       window: float = DEFAULT_WINDOW, probes: int = DEFAULT_PROBES,
                       budget: float = GATEWAY_BUDGET) -> DetectionOk | GatewayUnreachable:
    """ARP for ``gateway`` from ``ip``; ``GatewayUnreachable`` when no reply came within the budget."""
    _, mac = _link_up(netns_path, if_name)
    frame = arp_frame(op=1, src_mac=mac, sender_ip=ip, target_ip=gateway)

    def match(data: bytes) -> bool | None:
        arp = parse_arp(data)
        return True if arp and arp[0] == 2 and arp[2] == gateway else None

    with _packet_socket(netns_path, if_name, ETH_P_ARP) as sock:
        answered = _probe(sock, frame, match, window=window, probes=probes, budget=budget)
    return OK if answered else GatewayUnreachable(gw=gateway)


def check_ipv6_conflict(*, netns_path: str | None, if_name: str, ip: str, window: float = DEFAULT_WINDOW,
                        probes: int = DEFAULT_PROBES, budget: float = CONFLICT_BUDGET
                        ) -> DetectionOk | ConflictFound:
    """DAD-style NS for ``ip``; an NA for it from another MAC is a conflict (the MAC from its target option)."""
    ifindex, mac = _link_up(netns_path, if_name)
    target = str(ipaddress.IPv6Address(ip))
    frame = ns_frame(src_mac=mac, src="::", target=target)

    def match(data: bytes) -> ConflictFound | None:
        ndp = parse_ndp(data)
        if ndp is None or ndp[0] != ICMPV6_NA or ndp[2] != target:
            return None
        owner = ndp[3] or data[6:12]
        return None if owner == mac else ConflictFound(ip=target, mac=mac_text(owner))

    with _packet_socket(netns_path, if_name, ETH_P_IPV6, multicast=multicast_mac(ALL_NODES), ifindex=ifindex) as sock:
        found = _probe(sock, frame, match, window=window, probes=probes, budget=budget)
    return found or OK


def check_ipv6_gateway(*, netns_path: str | None, if_name: str, ip: str, gateway: str,
                       window: float = DEFAULT_WINDOW, probes: int = DEFAULT_PROBES,
                       budget: float = GATEWAY_BUDGET) -> DetectionOk | GatewayUnreachable:
    """NS for ``gateway`` sourced from ``ip``; an NA with the gateway as target means reachable."""
    ifindex, mac = _link_up(netns_path, if_name)
    gw = str(ipaddress.IPv6Address(gateway))
    frame = ns_frame(src_mac=mac, src=str(ipaddress.IPv6Address(ip)), target=gw)

    def match(data: bytes) -> bool | None:
        ndp = parse_ndp(data)
        return True if ndp and ndp[0] == ICMPV6_NA and ndp[2] == gw else None

    with _packet_socket(netns_path, if_name, ETH_P_IPV6, multicast=multicast_mac(ALL_NODES), ifindex=ifindex) as sock:
        answered = _probe(sock, frame, match, window=window, probes=probes, budget=budget)
    return OK if answered else GatewayUnreachable(gw=gw)


def check_ip_conflict(*, netns_path: str | None, if_name: str, ip: str, **timing: float
                      ) -> DetectionOk | ConflictFound:
    """Dispatch to the IPv4 or IPv6 conflict probe by the family of ``ip``."""
    probe = check_ipv4_conflict if ipaddress.ip_address(ip).version == 4 else check_ipv6_conflict
    return probe(netns_path=netns_path, if_name=if_name, ip=ip, **timing)


def check_gateway(*, netns_path: str | None, if_name: str, ip: str, gateway: str, **timing: float
                  ) -> DetectionOk | GatewayUnreachable:
    """Dispatch to the IPv4 or IPv6 gateway probe by the family of ``gateway``."""
    if ipaddress.ip_address(gateway).version != ipaddress.ip_address(ip).version:
        raise ValueError(f"gateway {gateway} and address {ip} are not the same IP family")
    probe = check_ipv4_gateway if ipaddress.ip_address(gateway).version == 4 else check_ipv6_gateway
    return probe(netns_path=netns_path, if_name=if_name, ip=ip, gateway=gateway, **timing)


def detect(*, netns_path: str | None, if_name: str, ip_configs: Iterable[dict]) -> DetectionResult:
    """Run the detections an IPAM ADD asked for, in spec order; return the first problem or ``OK``.

    ``ip_configs`` are ``IpConfig`` objects of an ``IpamAddResponse`` (``version``, ``address`` as CIDR, ``nic``,
    ``gateway``, ``enableIPConflictDetection``, ``enableGatewayDetection``); entries for other NICs are ignored.
    Per family the conflict probe runs before the gateway probe (spec §11.4 step 2); IPv4 before IPv6.
    """
    wanted = [cfg for cfg in ip_configs if cfg.get("nic", if_name) == if_name]
    wanted.sort(key=lambda cfg: int(cfg.get("version") or ipaddress.ip_interface(cfg["address"]).version))
    for cfg in wanted:
        ip = str(ipaddress.ip_interface(cfg["address"]).ip)
        if cfg.get("enableIPConflictDetection"):
            result = check_ip_conflict(netns_path=netns_path, if_name=if_name, ip=ip)
            if result != OK:
                return result
        if cfg.get("enableGatewayDetection") and cfg.get("gateway"):
            result = check_gateway(netns_path=netns_path, if_name=if_name, ip=ip, gateway=cfg["gateway"])
            if result != OK:
                return result
    return OK


def announce(*, netns_path: str | None, if_name: str, addresses: Iterable[str], count: int = 1) -> None:
    """Send a gratuitous ARP (IPv4) or unsolicited NA (IPv6) for each address, so neighbours learn our MAC now.

    Used after the coordinator rewrote a NIC's MAC (``podMACPrefix``): switches and peers still map the address
    to the old MAC until they hear from us.
    """
    parsed = [ipaddress.ip_address(a) for a in addresses]
    v4 = [str(ip) for ip in parsed if ip.version == 4]
    v6 = [str(ip) for ip in parsed if ip.version == 6]
    _, mac = _link_up(netns_path, if_name)
    if v4:
        with _packet_socket(netns_path, if_name, ETH_P_ARP) as sock:
            for _ in range(count):
                for ip in v4:
                    _send(sock, arp_frame(op=1, src_mac=mac, sender_ip=ip, target_ip=ip))
    if v6:
        with _packet_socket(netns_path, if_name, ETH_P_IPV6) as sock:
            for _ in range(count):
                for ip in v6:
                    _send(sock, na_frame(src_mac=mac, target=ip))
