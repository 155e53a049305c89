"""The netlink layer without a kernel: framing, attributes, the request loop's answers and
errors (on a scripted socket), rtnetlink bodies and their decoding, events, and pyroute2's
errors turned into KernelError."""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from netbay.errors import KernelError
from netbay.kernel import events, netlink, rtnl_wire
from netbay.kernel.events import AddressEvent, Change, FdbEvent, LinkEvent, NeighbourEvent
from netbay.kernel.rtnl_wire import FdbEntry, Link, Neighbour, Route


def nla(kind: int, payload: bytes) -> bytes:
    """An attribute built independently of netlink.attr: header, payload, padding."""
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def header(length: int, kind: int, flags: int, seq: int) -> bytes:
    return struct.pack("=IHHII", length, kind, flags, seq, 0)


# --- framing and attributes ------------------------------------------------------------------
def test_attributes_are_padded_and_nested() -> None:
    assert netlink.attr(3, b"eth0\0") == nla(3, b"eth0\0")
    assert netlink.attr(1, b"\x01") == struct.pack("=HH", 5, 1) + b"\x01\0\0\0"
    inner = netlink.attr(1, netlink.u32(7)) + netlink.attr(2, netlink.string("ab"))
    assert netlink.nested(18, netlink.attr(1, netlink.u32(7)),
                          netlink.attr(2, netlink.string("ab"))) == nla(18, inner)


def test_attributes_decode_back_with_flag_bits_masked() -> None:
    # NLA_F_NESTED (0x8000) set on the outer attribute, as nfnetlink senders do
    outer = struct.pack("=HH", 4 + 16, 18 | netlink.NLA_F_NESTED) + nla(1, b"veth\0") + nla(
        2, b"")
    payload = nla(3, b"eth0\0") + outer + nla(4, struct.pack("=I", 1500))
    found = list(netlink.attributes(payload))
    assert [kind for kind, _ in found] == [3, 18, 4]
    assert netlink.read_string(found[0][1]) == "eth0"
    assert netlink.attribute_map(found[1][1]) == {1: b"veth\0", 2: b""}
    assert netlink.read_u32(found[2][1]) == 1500
    assert netlink.find_attribute(payload, 0, 4) == struct.pack("=I", 1500)
    assert netlink.find_attribute(payload, 0, 9) is None


def test_a_truncated_attribute_ends_the_decoding() -> None:
    payload = nla(3, b"eth0\0") + struct.pack("=HH", 2, 4) + b"junk"
    assert list(netlink.attributes(payload)) == [(3, b"eth0\0")]


def test_messages_of_one_datagram_split_and_parse() -> None:
    first = netlink.pack_message(16, 0x2, 7, b"abc")  # 19 bytes: padded to 20 in the datagram
    second = netlink.pack_message(3, 0x2, 8, struct.pack("=i", 0))
    assert first == header(19, 16, 0x2, 7) + b"abc"
    data = first + b"\0" + second
    assert list(netlink.split_messages(data)) == [first, second]
    assert list(netlink.messages(data)) == [
        netlink.Message(16, 0x2, 7, b"abc"), netlink.Message(3, 0x2, 8, b"\0\0\0\0")]


def test_error_codes() -> None:
    assert netlink.error_code(struct.pack("=i", 0) + bytes(16)) == 0  # an ack
    assert netlink.error_code(struct.pack("=i", -errno.EEXIST) + bytes(16)) == errno.EEXIST
    assert netlink.error_code(b"") == 0  # a NLMSG_DONE without a payload


# --- the request loop on a scripted socket -------------------------------------------------
class ScriptedSocket:
    """Answers each request with REPLIES(seq): datagrams as the kernel would send them."""

    def __init__(self, replies: Any) -> None:
        self.replies = replies
        self.sent: list[bytes] = []
        self.queue: list[bytes] = []

    def send(self, message: bytes) -> int:
        self.sent.append(message)
        self.queue += self.replies(netlink.parse_message(message).seq)
        return len(message)

    def recv(self, size: int) -> bytes:
        return self.queue.pop(0)


def ack(seq: int, code: int = 0) -> bytes:
    return netlink.pack_message(netlink.NLMSG_ERROR, 0, seq, struct.pack("=i", -code) + bytes(16))


def test_a_request_is_framed_with_request_and_ack_flags() -> None:
    scripted = ScriptedSocket(lambda seq: [ack(seq)])
    sock = netlink.NetlinkSocket(scripted)  # type: ignore[arg-type]
    assert sock.request("set up", 16, netlink.NLM_F_CREATE, b"body") == []
    assert sock.request("set up", 16, 0, b"body") == []
    first, second = (netlink.parse_message(m) for m in scripted.sent)
    assert first == netlink.Message(16, netlink.NLM_F_CREATE | 0x5, 1, b"body")
    assert second.seq == 2


def test_a_failure_is_a_kernel_error_with_the_errno() -> None:
    sock = netlink.NetlinkSocket(ScriptedSocket(  # type: ignore[arg-type]
        lambda seq: [ack(seq - 1), ack(seq, errno.EEXIST)]))  # a stale answer comes first
    with pytest.raises(KernelError) as caught:
        sock.request("create link br0", 16, 0, b"")
    assert caught.value.errno == errno.EEXIST
    assert str(caught.value) == "create link br0: File exists"


def test_a_dump_collects_its_messages_until_done() -> None:
    def answer(seq: int) -> list[bytes]:
        one = netlink.pack_message(16, 0x2, seq, b"one!")
        other = netlink.pack_message(16, 0x2, 0, b"event")  # a notification: not ours
        two = netlink.pack_message(16, 0x2, seq, b"two!")
        return [one + other, two + netlink.pack_message(netlink.NLMSG_DONE, 0x2, seq, bytes(4))]

    sock = netlink.NetlinkSocket(ScriptedSocket(answer))  # type: ignore[arg-type]
    assert sock.dump("dump links", 18, b"") == [b"one!", b"two!"]


def test_a_dump_that_fails_midway_raises() -> None:
    done = struct.pack("=i", -errno.EINTR)
    sock = netlink.NetlinkSocket(ScriptedSocket(  # type: ignore[arg-type]
        lambda seq: [netlink.pack_message(netlink.NLMSG_DONE, 0x2, seq, done)]))
    with pytest.raises(KernelError) as caught:
        sock.dump("dump routes", 26, b"")
    assert caught.value.errno == errno.EINTR


# --- rtnetlink bodies and replies ----------------------------------------------------------
def test_a_veth_is_one_request_with_its_peer_nested() -> None:
    kind = rtnl_wire.veth("eth0", netns_fd=12, mac="02:42:ac:11:00:02", mtu=1400)
    body = rtnl_wire.newlink_body("nbv1", kind, mtu=1400, master=5, up=True)
    peer = (struct.pack("=BxHiII", 0, 0, 0, 0, 0) + nla(3, b"eth0\0")
            + nla(28, struct.pack("=I", 12)) + nla(1, bytes.fromhex("0242ac110002"))
            + nla(4, struct.pack("=I", 1400)))
    assert body == (
        struct.pack("=BxHiII", 0, 0, 0, 1, 1) + nla(3, b"nbv1\0") + nla(4, struct.pack("=I", 1400))
        + nla(10, struct.pack("=I", 5)) + nla(18, nla(1, b"veth\0") + nla(2, nla(1, peer)))
    )


def test_a_vxlan_kind_carries_vni_underlay_local_learning_off_and_port() -> None:
    kind = rtnl_wire.vxlan(42, local=IPv4Address("192.0.2.1"), underlay=3, port=4789)
    data = (nla(1, struct.pack("=I", 42)) + nla(3, struct.pack("=I", 3)) + nla(4, bytes(
        [192, 0, 2, 1])) + nla(7, b"\0") + nla(15, struct.pack("!H", 4789)))
    assert kind.linkinfo() == nla(18, nla(1, b"vxlan\0") + nla(2, data))


def test_hairpin_is_a_bridge_port_attribute() -> None:
    assert rtnl_wire.hairpin_body("nbv1") == struct.pack("=BxHiII", 0, 0, 0, 0, 0) + nla(
        3, b"nbv1\0") + nla(18, nla(4, b"bridge\0") + nla(5, nla(4, b"\x01")))


def test_a_link_as_the_kernel_reports_it_decodes() -> None:
    info = nla(18, nla(1, b"bridge\0") + nla(2, nla(1, struct.pack("=I", 0))))
    payload = (struct.pack("=BxHiII", 0, 1, 4, 0x1003, 0) + nla(3, b"br0\0")
               + nla(4, struct.pack("=I", 1500)) + nla(10, struct.pack("=I", 2))
               + nla(16, b"\x06") + nla(1, bytes.fromhex("020000000001")) + info)
    assert rtnl_wire.decode_link(payload) == Link(
        4, "br0", "bridge", master=2, mac="02:00:00:00:00:01", mtu=1500, up=True,
        operstate="up")
    assert rtnl_wire.link_index(payload) == 4


def test_an_address_round_trips() -> None:
    body = rtnl_wire.address_body(7, IPv4Interface("10.1.0.2/24"))
    assert rtnl_wire.decode_address(body) == (7, IPv4Interface("10.1.0.2/24"))
    ipv6 = struct.pack("=BBBBi", 10, 64, 0, 0, 7) + nla(1, bytes(16))
    assert rtnl_wire.decode_address(ipv6) is None


@pytest.mark.parametrize("route", [
    Route(IPv4Network("10.2.0.0/24"), gateway=IPv4Address("203.0.113.9"), index=4,
          protocol=rtnl_wire.RTPROT_NETBAY, onlink=True),
    Route(IPv4Network("0.0.0.0/0"), gateway=IPv4Address("10.0.0.1")),
    Route(IPv4Network("10.3.0.0/16"), index=2, source=IPv4Address("10.3.0.1"), table=1000),
])
def test_a_route_round_trips(route: Route) -> None:
    assert rtnl_wire.decode_route(rtnl_wire.route_body(route)) == route


def test_an_onlink_route_with_netbays_protocol_as_bytes() -> None:
    route = Route(IPv4Network("10.2.0.0/24"), gateway=IPv4Address("203.0.113.9"), index=4,
                  protocol=rtnl_wire.RTPROT_NETBAY, onlink=True)
    # AF_INET, /24, main table, protocol 57, scope universe, unicast, RTNH_F_ONLINK
    assert rtnl_wire.route_body(route) == struct.pack(
        "=BBBBBBBBI", 2, 24, 0, 0, 254, 57, 0, 1, 4) + nla(1, bytes([10, 2, 0, 0])) + nla(
        5, bytes([203, 0, 113, 9])) + nla(4, struct.pack("=I", 4))
    deleting = rtnl_wire.route_body(route, scope=rtnl_wire.RT_SCOPE_NOWHERE)
    assert deleting[6] == 255


def test_neighbours_and_fdb_entries_round_trip() -> None:
    body = rtnl_wire.neighbour_body(3, IPv4Address("10.1.0.2"), "02:42:0a:01:00:02")
    assert body[:12] == struct.pack("=BxxxiHBB", 2, 3, 0x80, 0, 0)
    assert rtnl_wire.decode_neighbour(body) == Neighbour(
        3, IPv4Address("10.1.0.2"), "02:42:0a:01:00:02", 0x80)
    assert rtnl_wire.decode_neighbour(body).permanent  # type: ignore[union-attr]
    unresolved = rtnl_wire.neighbour_body(3, IPv4Address("10.1.0.3"))
    assert rtnl_wire.decode_neighbour(unresolved) == Neighbour(3, IPv4Address("10.1.0.3"), None, 0)
    fdb = rtnl_wire.fdb_body(5, "00:00:00:00:00:00", IPv4Address("192.0.2.2"))
    assert fdb[:12] == struct.pack("=BxxxiHBB", 7, 5, 0x80, 0x02, 0)
    assert rtnl_wire.decode_fdb(fdb) == FdbEntry(5, "00:00:00:00:00:00", IPv4Address("192.0.2.2"))
    assert rtnl_wire.decode_neighbour(fdb) is None and rtnl_wire.decode_fdb(body) is None


# --- events --------------------------------------------------------------------------------
def link_message(kind: int, change: int, family: int = 0) -> bytes:
    payload = struct.pack("=BxHiII", family, 1, 9, 0, change) + nla(3, b"dummy0\0")
    return netlink.pack_message(kind, 0, 0, payload)


def test_notifications_decode_to_events() -> None:
    address = rtnl_wire.address_body(9, IPv4Interface("10.5.0.1/24"))
    route = Route(IPv4Network("10.6.0.0/24"), index=9)
    neighbour = rtnl_wire.neighbour_body(9, IPv4Address("10.5.0.2"), "02:00:00:00:00:02")
    fdb = rtnl_wire.fdb_body(9, "02:00:00:00:00:03", IPv4Address("192.0.2.3"))
    data = b"".join([
        link_message(16, 0xFFFFFFFF),  # just registered
        link_message(16, 0x1),  # IFF_UP changed
        link_message(16, 0, family=7),  # the bridge's view of a port: left out
        netlink.pack_message(21, 0, 0, address),
        netlink.pack_message(24, 0, 0, rtnl_wire.route_body(route)),
        netlink.pack_message(28, 0, 0, neighbour),
        netlink.pack_message(29, 0, 0, fdb),
        netlink.pack_message(64, 0, 0, b"neightbl"),  # no decoder: left out
        link_message(17, 0),
    ])
    dummy = Link(9, "dummy0")
    assert list(events.decode_events(data)) == [
        LinkEvent(Change.ADDED, dummy),
        LinkEvent(Change.CHANGED, dummy),
        AddressEvent(Change.REMOVED, 9, IPv4Interface("10.5.0.1/24")),
        events.RouteEvent(Change.ADDED, route),
        NeighbourEvent(Change.ADDED, Neighbour(9, IPv4Address("10.5.0.2"), "02:00:00:00:00:02")),
        FdbEvent(Change.REMOVED, FdbEntry(9, "02:00:00:00:00:03", IPv4Address("192.0.2.3"))),
        LinkEvent(Change.REMOVED, dummy),
    ]


# --- pyroute2's errors ---------------------------------------------------------------------
class FakeIPRoute:
    closed = False

    def link(self, command: str, **kwargs: Any) -> Any:
        if command == "get":
            raise NetlinkError(errno.ENODEV)
        return self._dump()

    def _dump(self) -> Iterator[int]:
        yield 1
        raise NetlinkError(errno.EBUSY)

    def close(self) -> None:
        self.closed = True


def test_pyroute2_failures_come_out_as_kernel_errors() -> None:
    target = FakeIPRoute()
    with netlink.PyRoute2(target, "/run/netns/x") as ipr:
        with pytest.raises(KernelError) as caught:
            ipr.link("get", ifname="eth0")
        assert caught.value.errno == errno.ENODEV
        assert str(caught.value) == "link get in /run/netns/x: No such device"
        with pytest.raises(KernelError) as midway:  # a dump fails while it is read
            ipr.link("dump")
        assert midway.value.errno == errno.EBUSY
    assert target.closed
