"""The rtnetlink framing of ``agent.netlink.wire`` on scripted kernel answers (a datagram socket pair plays the
kernel): dumps over several datagrams, answers to older requests skipped, refusals as errno. What the kernel really
answers is checked against pyroute2 in ``test_netlink_coordinator.py``."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from agent.netlink import wire


def _message(kind: int, seq: int, body: bytes, flags: int = 0) -> bytes:
    return wire.NLMSGHDR.pack(wire.NLMSGHDR.size + len(body), kind, flags, seq, 0) + body + b"\0" * (
        wire.align(len(body)) - len(body))


def _link(index: int, name: str, seq: int) -> bytes:
    body = wire.IFINFOMSG.pack(0, 1, index, 1, 0) + wire.attr_text(wire.IFLA_IFNAME, name)
    return _message(wire.RTM_NEWLINK, seq, body, wire.NLM_F_MULTI)


def _error(seq: int, code: int) -> bytes:
    return _message(wire.NLMSG_ERROR, seq, struct.pack("=i", -code) + wire.NLMSGHDR.pack(16, 0, 0, seq, 0))


@pytest.fixture
def kernel():
    """(the Rtnl under test, the kernel's end of the socket pair)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    nl = wire.Rtnl(ours)
    yield nl, theirs
    nl.close()
    theirs.close()


def test_a_dump_spread_over_datagrams_is_collected_until_done_and_older_answers_are_skipped(kernel):
    nl, theirs = kernel
    theirs.send(_link(9, "stale0", seq=0) + _link(1, "lo", seq=1))  # an answer to an older request, then ours
    theirs.send(_link(2, "eth0", seq=1))
    theirs.send(_message(wire.NLMSG_DONE, 1, struct.pack("=i", 0)))
    found = nl.request(wire.RTM_GETLINK, wire.NLM_F_DUMP, wire.IFINFOMSG.pack(0, 0, 0, 0, 0),
                       answer=wire.IFINFOMSG)
    assert [(m.header[2], m.text(wire.IFLA_IFNAME)) for m in found] == [(1, "lo"), (2, "eth0")]
    # and the request the kernel got was framed as one RTM_GETLINK dump with our sequence number
    length, kind, flags, seq, _ = wire.NLMSGHDR.unpack_from(theirs.recv(4096))
    assert (length, kind, flags, seq) == (32, wire.RTM_GETLINK, wire.NLM_F_DUMP | wire.NLM_F_REQUEST, 1)


def test_a_change_returns_on_its_acknowledgement_and_a_refusal_raises_its_errno(kernel):
    nl, theirs = kernel
    theirs.send(_error(1, 0))
    assert nl.change(wire.RTM_DELLINK, 0, wire.IFINFOMSG.pack(0, 0, 5, 0, 0)) is None
    theirs.send(_error(2, errno.EEXIST))
    with pytest.raises(wire.NetlinkError) as refused:
        nl.change(wire.RTM_NEWLINK, wire.NLM_F_CREATE | wire.NLM_F_EXCL, wire.IFINFOMSG.pack(0, 0, 0, 0, 0),
                  what="add veth a/b")
    assert refused.value.code == errno.EEXIST and str(refused.value) == "add veth a/b: File exists (errno 17)"
    assert not wire.is_missing(refused.value) and wire.is_missing(wire.NetlinkError(errno.ENODEV))


def test_a_get_returns_its_single_answer(kernel):
    nl, theirs = kernel
    theirs.send(_link(3, "veth0", seq=1).replace(struct.pack("=H", wire.NLM_F_MULTI), b"\0\0", 1))
    found = nl.request(wire.RTM_GETLINK, 0, wire.IFINFOMSG.pack(0, 0, 3, 0, 0), answer=wire.IFINFOMSG)
    assert [m.text(wire.IFLA_IFNAME) for m in found] == ["veth0"]


def test_attributes_round_trip_with_padding_and_nested_flags():
    packed = (wire.attr_text(wire.IFLA_IFNAME, "eth12") + wire.attr_u32(wire.IFLA_MTU, 9000)
              + wire.attr(wire.IFLA_LINKINFO | 0x8000, wire.attr_text(wire.IFLA_INFO_KIND, "macvlan"))
              + wire.attr_ip(wire.IFLA_ADDRESS, "fd00::1"))
    assert len(packed) % 4 == 0
    found = wire.parse_attrs(packed)
    assert found[wire.IFLA_IFNAME] == b"eth12\0" and struct.unpack("=I", found[wire.IFLA_MTU]) == (9000,)
    assert wire.parse_attrs(found[wire.IFLA_LINKINFO])[wire.IFLA_INFO_KIND] == b"macvlan\0"
    assert wire.ip_text(found[wire.IFLA_ADDRESS]) == "fd00::1"
    # a truncated attribute ends the walk instead of reading past the message
    assert wire.parse_attrs(packed[:6]) == {}
    assert wire.mac_text(wire.mac_bytes("02-AA-bb-00-01-ff")) == "02:aa:bb:00:01:ff" and wire.mac_text(None) == ""
