"""rtnetlink on a plain socket: the few message kinds the coordinator sends on every pod ADD and DEL.

Why not pyroute2 here: its synchronous API runs an asyncio loop per request and decodes every attribute of every
answer (a link answer carries dozens, with statistics), which made netlink the largest share of the agent's CPU in
a pod storm. The coordinator needs a dozen message types and a handful of attributes each, so requests are packed
with ``struct`` and answers are split into ``{attribute type: raw bytes}`` that the caller decodes only where it
looks. pyroute2 stays for the ifacer (bonds, VLANs: many options, rare calls) and for the tests' independent view.

The layouts are the kernel's UAPI (``linux/netlink.h``, ``linux/rtnetlink.h``, ``linux/if_link.h``,
``linux/fib_rules.h``, ``linux/neighbour.h``). One :class:`Rtnl` serves one thread at a time.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_ROUTE = 0

# Message types (linux/rtnetlink.h) and control messages (linux/netlink.h).
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_NEWRULE, RTM_DELRULE, RTM_GETRULE = 32, 33, 34

# Flags.
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x100, 0x200, 0x400, 0x800

# Fixed headers after nlmsghdr.
NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
FIB_RULE_HDR = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, res1, res2, action, flags
NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
RTNEXTHOP = struct.Struct("=HBBi")  # len, flags, hops, ifindex
NLMSGERR = struct.Struct("=i")
RTATTR = struct.Struct("=HH")
U32 = struct.Struct("=I")

# Attribute types.
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER, IFLA_TXQLEN = 1, 3, 4, 5, 10, 13
IFLA_LINKINFO, IFLA_NET_NS_FD, IFLA_EXT_MASK = 18, 28, 29
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 6, 7, 9, 15
FRA_DST, FRA_SRC, FRA_PRIORITY, FRA_FWMARK, FRA_TABLE = 1, 2, 6, 10, 15
NDA_DST, NDA_LLADDR = 1, 2
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

RECV_BUFFER = 1 << 18
ANSWER_TIMEOUT = 30.0


class NetlinkError(Exception):
    """The kernel refused a request; ``code`` is the positive errno (``ENOENT``, ``EEXIST``, ...)."""

    def __init__(self, code: int, what: str = "") -> None:
        self.code = code
        super().__init__(f"{what}: {os.strerror(code)} (errno {code})" if what else os.strerror(code))


@dataclass(frozen=True)
class Message:
    """One answer: its type, its fixed header's fields (as a tuple) and its attributes as raw bytes."""

    type: int
    header: tuple
    attrs: dict[int, bytes]

    def u32(self, kind: int, default: int | None = None) -> int | None:
        value = self.attrs.get(kind)
        return U32.unpack_from(value)[0] if value is not None and len(value) >= 4 else default

    def text(self, kind: int) -> str | None:
        value = self.attrs.get(kind)
        return value.split(b"\0", 1)[0].decode() if value is not None else None

    def ip(self, kind: int) -> str | None:
        value = self.attrs.get(kind)
        return ip_text(value) if value else None


def align(length: int) -> int:
    return (length + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One ``rtattr``, padded to 4 bytes."""
    length = RTATTR.size + len(payload)
    return RTATTR.pack(length, kind) + payload + b"\0" * (align(length) - length)


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, U32.pack(value))


def attr_text(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def attr_ip(kind: int, value: str) -> bytes:
    return attr(kind, ip_bytes(value))


def parse_attrs(data: bytes | memoryview, offset: int = 0, end: int | None = None) -> dict[int, bytes]:
    """``{type: payload}`` of a run of attributes (the last one wins for a repeated type)."""
    end = len(data) if end is None else end
    found: dict[int, bytes] = {}
    while offset + RTATTR.size <= end:
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size or offset + length > end:  # malformed or truncated: stop, never read past it
            break
        found[kind & NLA_TYPE_MASK] = bytes(data[offset + RTATTR.size:offset + length])
        offset += align(length)
    return found


def ip_bytes(value: str) -> bytes:
    family = socket.AF_INET6 if ":" in value else socket.AF_INET
    return socket.inet_pton(family, value)


def ip_text(value: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if len(value) == 16 else socket.AF_INET, value)


def mac_text(value: bytes | None) -> str:
    """6 bytes -> ``"02:aa:bb:cc:dd:ee"`` (``""`` for none)."""
    return ":".join(f"{b:02x}" for b in value) if value else ""


def mac_bytes(value: str) -> bytes:
    """``"02:aa:bb:cc:dd:ee"`` (or with dashes) -> 6 bytes."""
    return bytes(int(part, 16) for part in value.replace("-", ":").split(":"))


class Rtnl:
    """A NETLINK_ROUTE socket with request/answer framing. Answers to other sequence numbers are skipped."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
        self.sock.settimeout(ANSWER_TIMEOUT)  # the kernel answers at once; a hung request fails (OSError), never waits
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, kind: int, flags: int, header: bytes, attrs: bytes = b"", *,
                answer: struct.Struct | None = None, what: str = "") -> list[Message]:
        """Send one request; return the answers (a dump's messages, a GET's one) or ``[]`` for an acknowledged
        change. ``answer`` is the fixed header the answers carry; raises :class:`NetlinkError` on refusal."""
        self.seq = self.seq + 1 & 0xFFFFFFFF
        body = header + attrs
        self.sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags | NLM_F_REQUEST, self.seq, 0) + body)
        dump = flags & NLM_F_DUMP == NLM_F_DUMP
        found: list[Message] = []
        while True:
            data = self.sock.recv(RECV_BUFFER)
            offset = 0
            while offset + NLMSGHDR.size <= len(data):
                length, msg_type, msg_flags, seq, _ = NLMSGHDR.unpack_from(data, offset)
                if length < NLMSGHDR.size or offset + length > len(data):  # malformed: drop the rest of it
                    break
                start, offset = offset + NLMSGHDR.size, offset + align(length)
                if seq != self.seq:
                    continue
                if msg_type == NLMSG_DONE:
                    return found
                if msg_type == NLMSG_ERROR:
                    code = -NLMSGERR.unpack_from(data, start)[0]
                    if code:
                        raise NetlinkError(code, what)
                    return found
                if answer is not None:
                    found.append(Message(msg_type, answer.unpack_from(data, start),
                                         parse_attrs(data, start + answer.size, start + length - NLMSGHDR.size)))
                if not dump and not msg_flags & NLM_F_MULTI and not flags & NLM_F_ACK:
                    return found

    def change(self, kind: int, flags: int, header: bytes, attrs: bytes = b"", *, what: str = "") -> None:
        """A request the kernel acknowledges (create, set, delete)."""
        self.request(kind, flags | NLM_F_ACK, header, attrs, what=what)


def is_missing(exc: BaseException) -> bool:
    """True for the kernel's "no such route/rule/neighbour/device" answers."""
    return isinstance(exc, NetlinkError) and exc.code in {errno.ENOENT, errno.ESRCH, errno.ENODEV,
                                                          errno.EADDRNOTAVAIL}
