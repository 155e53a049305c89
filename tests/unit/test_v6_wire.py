"""IPv6 on the kernel side without a kernel: rtnl_wire6's address and route bodies and their
decoding (bytes built independently), the host networks a new subnet skips, the EUI-64
link-local address, and the bridge driver's dual-stack routes, desired state and the
comparison of an observation holding IPv6 addresses."""

from __future__ import annotations

import errno
import socket
import struct
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path

import pytest

from netbay import AttachRequest, ContainerSpec, NetworkSpec
from netbay.drivers import get_driver
from netbay.drivers.base import DEFAULT_ROUTE, DEFAULT_ROUTE6, gateway_route
from netbay.errors import KernelError
from netbay.kernel import netlink, rtnl_wire, rtnl_wire6
from netbay.kernel.rtnl_wire6 import (
    IFA_F_NODAD,
    IFA_F_PERMANENT,
    IFA_F_TENTATIVE,
    Address6,
    Route6,
)
from netbay.model import Endpoint, Network, SubnetConfig
from netbay.plan.naming import link_local
from netbay.reconcile.compare import compare
from netbay.reconcile.fixes import AddAddress
from netbay.reconcile.state import LinkState, Observed, Watched
from netbay.reconcile.watch import ipv6_removed
from netbay.testing import fake_host

ADDRESS = IPv6Interface("fd12:3456::2/64")
GATEWAY = IPv6Address("fd12:3456::1")


def nla(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def ifaddrmsg(family: int, prefixlen: int, flags: int, scope: int, index: int) -> bytes:
    return struct.pack("=BBBBi", family, prefixlen, flags, scope, index)


# --- addresses -------------------------------------------------------------------------------
def test_an_ipv6_address_is_sent_without_dad_in_both_flag_fields() -> None:
    body = rtnl_wire6.address6_body(7, ADDRESS)
    raw = ADDRESS.ip.packed
    # AF_INET6, /64, IFA_F_NODAD in the byte, scope universe, index 7; IFA_LOCAL, IFA_ADDRESS,
    # IFA_FLAGS (u32)
    assert body == (ifaddrmsg(socket.AF_INET6, 64, 0x02, 0, 7) + nla(2, raw) + nla(1, raw)
                    + nla(8, struct.pack("=I", 0x02)))


def test_an_ipv6_address_as_the_kernel_reports_it_decodes_with_its_32_bit_flags() -> None:
    cacheinfo = nla(6, struct.pack("=IIII", 0xFFFFFFFF, 0xFFFFFFFF, 1, 1))
    payload = (ifaddrmsg(socket.AF_INET6, 64, 0x80, 0, 3) + nla(1, ADDRESS.ip.packed)
               + cacheinfo + nla(8, struct.pack("=I", IFA_F_PERMANENT | IFA_F_NODAD)))
    found = rtnl_wire6.decode_address6(payload)
    assert found == Address6(3, ADDRESS, IFA_F_PERMANENT | IFA_F_NODAD, 0)
    assert found is not None and not found.tentative


def test_without_ifa_flags_the_header_byte_is_the_flags_and_tentative_shows() -> None:
    payload = ifaddrmsg(socket.AF_INET6, 64, IFA_F_TENTATIVE, 253, 3) + nla(
        1, IPv6Address("fe80::1").packed)
    found = rtnl_wire6.decode_address6(payload)
    assert found == Address6(3, IPv6Interface("fe80::1/64"), IFA_F_TENTATIVE, 253)
    assert found.tentative


def test_each_family_decoder_leaves_the_other_familys_addresses_out() -> None:
    assert rtnl_wire6.decode_address6(rtnl_wire.address_body(7, IPv4Interface("10.1.0.2/24"))) \
        is None
    assert rtnl_wire.decode_address(rtnl_wire6.address6_body(7, ADDRESS)) is None
    assert rtnl_wire6.decode_address6(rtnl_wire6.address6_body(7, ADDRESS)) == Address6(
        7, ADDRESS, IFA_F_NODAD)


# --- routes ----------------------------------------------------------------------------------
def test_an_ipv6_default_route_via_a_gateway_as_bytes() -> None:
    body = rtnl_wire6.route6_body(Route6(rtnl_wire6.DEFAULT6, gateway=GATEWAY))
    # AF_INET6, ::/0 (no RTA_DST), main table, static, scope universe, unicast; RTA_GATEWAY
    assert body == struct.pack("=BBBBBBBBI", 10, 0, 0, 0, 254, 4, 0, 1, 0) + nla(
        5, GATEWAY.packed)


@pytest.mark.parametrize("route", [
    Route6(rtnl_wire6.DEFAULT6, gateway=GATEWAY),
    Route6(IPv6Network("fd12:3456::/64"), index=4, protocol=2),
    Route6(IPv6Network("fd00:1::/48"), gateway=IPv6Address("fe80::1"), index=2, table=1000),
])
def test_an_ipv6_route_round_trips(route: Route6) -> None:
    assert rtnl_wire6.decode_route6(rtnl_wire6.route6_body(route)) == route


def test_each_family_route_decoder_leaves_the_other_out() -> None:
    v4 = rtnl_wire.route_body(rtnl_wire.Route(IPv4Network("0.0.0.0/0"),
                                              gateway=IPv4Address("10.0.0.1")))
    assert rtnl_wire6.decode_route6(v4) is None
    assert rtnl_wire.decode_route(rtnl_wire6.route6_body(Route6(rtnl_wire6.DEFAULT6))) is None
    assert rtnl_wire6.route6_dump_body()[0] == socket.AF_INET6
    assert rtnl_wire6.address6_dump_body()[0] == socket.AF_INET6


def test_the_host_networks_a_new_subnet_skips_leave_out_local_and_default_ones() -> None:
    found = [IPv6Network(n) for n in (
        "fd00:1:2:3::/64", "fe80::/64", "ff00::/8", "::1/128", "::/0", "2001:db8::/32")]
    assert rtnl_wire6.global_networks(found) == [IPv6Network("fd00:1:2:3::/64"),
                                                 IPv6Network("2001:db8::/32")]


def test_the_link_local_address_is_the_kernels_eui_64_of_the_mac() -> None:
    assert link_local("02:42:ac:12:00:02") == IPv6Address("fe80::42:acff:fe12:2")
    assert link_local("22:27:da:dd:5e:c8") == IPv6Address("fe80::2027:daff:fedd:5ec8")


# --- one batch: the container end's setup in one round trip ------------------------------
def test_the_link_setup_is_up_then_addresses_then_routes_in_one_batch() -> None:
    v4, gateway4 = IPv4Interface("10.0.0.2/24"), IPv4Address("10.0.0.1")
    requests = rtnl_wire6.link_setup(5, [v4, ADDRESS], gateway4, GATEWAY)
    assert [(r.what, r.kind) for r in requests] == [
        ("set link 5 up", rtnl_wire.RTM_NEWLINK),
        ("add address 10.0.0.2/24", rtnl_wire.RTM_NEWADDR),
        ("add address fd12:3456::2/64", rtnl_wire.RTM_NEWADDR),
        ("add default route via 10.0.0.1", rtnl_wire.RTM_NEWROUTE),
        ("add default route via fd12:3456::1", rtnl_wire.RTM_NEWROUTE)]
    assert requests[0].body == rtnl_wire.ifinfomsg(5, up=True)
    assert requests[2].body == rtnl_wire6.address6_body(5, ADDRESS)
    assert requests[4].body == rtnl_wire6.route6_body(Route6(rtnl_wire6.DEFAULT6, gateway=GATEWAY))
    exclusive = netlink.NLM_F_CREATE | netlink.NLM_F_EXCL
    assert {r.flags for r in requests[1:]} == {exclusive}
    assert len(rtnl_wire6.link_setup(5, [ADDRESS], None, None)) == 2


class BatchSocket:
    """Acks every message of a datagram at once, with CODES by position (default 0)."""

    def __init__(self, codes: dict[int, int]) -> None:
        self.codes = codes
        self.sent: list[bytes] = []
        self.queue: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        acks = b"".join(
            netlink.pack_message(netlink.NLMSG_ERROR, 0, message.seq,
                                 struct.pack("=i", -self.codes.get(i, 0)) + bytes(16))
            for i, message in enumerate(netlink.messages(data)))
        self.queue += [acks[: len(acks) // 2 // 36 * 36], acks[len(acks) // 2 // 36 * 36:]]
        return len(data)

    def recv(self, size: int) -> bytes:
        return self.queue.pop(0)


def requests(count: int) -> list[netlink.Request]:
    return [netlink.Request(f"step {i}", 16 + i, 0, bytes([i]) * 4) for i in range(count)]


def test_a_batch_is_one_datagram_and_every_ack_is_read() -> None:
    scripted = BatchSocket({})
    sock = netlink.NetlinkSocket(scripted)  # type: ignore[arg-type]
    sock.batch(requests(3))
    (datagram,) = scripted.sent
    assert [(m.kind, m.seq, m.payload) for m in netlink.messages(datagram)] == [
        (16, 1, b"\0" * 4), (17, 2, b"\1" * 4), (18, 3, b"\2" * 4)]
    assert scripted.queue == []  # both datagrams of acks read


def test_a_batch_accepts_what_it_is_told_and_raises_the_first_other_failure() -> None:
    sock = netlink.NetlinkSocket(BatchSocket({1: errno.EEXIST}))  # type: ignore[arg-type]
    sock.batch(requests(3), accept=(errno.EEXIST,))
    scripted = BatchSocket({1: errno.EEXIST, 2: errno.ENETUNREACH})
    sock = netlink.NetlinkSocket(scripted)  # type: ignore[arg-type]
    with pytest.raises(KernelError) as caught:
        sock.batch(requests(4), accept=(errno.EEXIST,))
    assert caught.value.errno == errno.ENETUNREACH
    assert str(caught.value) == "step 2: Network is unreachable"
    assert scripted.queue == []


# --- the bridge driver and the reconciler ----------------------------------------------------
def endpoint(**fields: object) -> Endpoint:
    base: dict[str, object] = dict(id="e" * 64, network_id="n1", container_id="c1",
                                   ifname="eth0", host_ifname="nbveeeeeeeeeeee", mac=None,
                                   address=None, gateway=None)
    base.update(fields)
    return Endpoint(**base)  # type: ignore[arg-type]


def test_the_default_routes_of_both_families_go_via_their_gateways() -> None:
    both = endpoint(address=IPv4Interface("10.0.0.2/24"), gateway=IPv4Address("10.0.0.1"),
                    address6=ADDRESS, gateway6=GATEWAY)
    assert gateway_route(both) == [(DEFAULT_ROUTE, IPv4Address("10.0.0.1")),
                                   (DEFAULT_ROUTE6, GATEWAY)]
    assert gateway_route(endpoint(address6=ADDRESS, gateway6=GATEWAY)) == [
        (DEFAULT_ROUTE6, GATEWAY)]
    assert gateway_route(endpoint(address6=ADDRESS)) == []


def dual_network() -> Network:
    return Network(id="n1", name="asgard", driver="bridge", created="", device="br-x",
                   device_created=True, subnets=(
                       SubnetConfig(IPv4Network("10.61.0.0/24"), IPv4Address("10.61.0.1")),
                       SubnetConfig(IPv6Network("fd12:3456::/64"), GATEWAY)))


def test_a_dual_stack_bridge_wants_both_gateways_and_ipv6_forwarding() -> None:
    desired = get_driver("bridge").desired(dual_network(), [])
    (bridge,) = desired.links
    assert bridge.addresses == {IPv4Interface("10.61.0.1/24"), IPv6Interface("fd12:3456::1/64")}
    assert [(r.destination, r.source) for r in desired.routes] == [
        (IPv4Network("10.61.0.0/24"), IPv4Address("10.61.0.1")),
        (IPv6Network("fd12:3456::/64"), None)]  # an IPv6 route carries no source
    assert ("net.ipv6.conf.all.forwarding", None) in desired.sysctl_keys()
    ipv4_only = Network(id="n2", name="v4", driver="bridge", created="", device="br-y",
                        subnets=(SubnetConfig(IPv4Network("10.62.0.0/24"),
                                              IPv4Address("10.62.0.1")),))
    assert ("net.ipv6.conf.all.forwarding", None) not in get_driver("bridge").desired(
        ipv4_only, []).sysctl_keys()


def test_a_lost_ipv6_gateway_is_one_drift_among_ipv4_ones() -> None:
    desired = get_driver("bridge").desired(dual_network(), [])
    observed = Observed(links={"br-x": LinkState("br-x", 3, "bridge")}, addresses={},
                        sysctls={w: "1" for w in desired.sysctl_keys()})
    drifts = [d for d in compare(desired, observed) if d.kind == "address"]
    assert [d.fix for d in drifts] == [AddAddress("br-x", IPv4Interface("10.61.0.1/24")),
                                       AddAddress("br-x", IPv6Interface("fd12:3456::1/64"))]
    held = Observed(links=observed.links, sysctls=observed.sysctls, addresses={
        "br-x": frozenset({IPv4Interface("10.61.0.1/24"), IPv6Interface("fd12:3456::1/64")})})
    assert [d for d in compare(desired, held) if d.kind == "address"] == []


def test_the_watch_counts_an_ipv6_address_removed_from_a_watched_link_only() -> None:
    removed = rtnl_wire6.address6_body(3, IPv6Interface("fd12:3456::1/64"))
    watched = Watched(frozenset({"br-x"}), frozenset({3}))
    assert ipv6_removed(rtnl_wire.RTM_DELADDR, removed, watched)
    assert not ipv6_removed(rtnl_wire.RTM_NEWADDR, removed, watched)
    assert not ipv6_removed(rtnl_wire.RTM_DELADDR, removed, Watched(indices=frozenset({4})))


def test_the_watch_counts_an_ipv6_route_of_a_watched_link_or_blackhole_removed() -> None:
    block = IPv6Network("fd00:10::/122")
    route = rtnl_wire6.route6_body(Route6(IPv6Network("fd00:10::5/128"), index=3))
    hole = rtnl_wire6.route6_body(Route6(block, type=rtnl_wire.RTN_BLACKHOLE))
    watched = Watched(frozenset({"cali1"}), frozenset({3}), frozenset({block}))
    assert ipv6_removed(rtnl_wire.RTM_DELROUTE, route, watched)
    assert ipv6_removed(rtnl_wire.RTM_DELROUTE, hole, watched)
    assert not ipv6_removed(rtnl_wire.RTM_NEWROUTE, route, watched)
    assert not ipv6_removed(rtnl_wire.RTM_DELROUTE, route, Watched(indices=frozenset({4})))
    assert not ipv6_removed(rtnl_wire.RTM_DELROUTE, hole, Watched(indices=frozenset({3})))


def test_on_the_fakes_a_dual_stack_container_gets_both_and_nothing_drifts(
    tmp_path: Path,
) -> None:
    fake = fake_host(tmp_path)
    net = fake.host.create_network(NetworkSpec(name="asgard", subnets=(
        SubnetConfig(IPv6Network("fd12:3456::/64")),)))
    assert net.device is not None and fake.kernel.forwarding6
    assert IPv6Interface("fd12:3456::1/64") in fake.kernel.links[net.device].addresses
    container = fake.host.create_container(ContainerSpec(command=("true",), name="web",
                                                         networks=(AttachRequest("asgard"),)))
    inside = fake.kernel.namespaces[str(container.netns)].links["eth0"]
    assert inside.addresses[1:] == [IPv6Interface("fd12:3456::2/64")]
    assert inside.gateway6 == GATEWAY
    result = fake.host.reconcile(full=True)
    assert (result.repaired, result.failed, result.waiting) == ([], [], [])


def test_on_the_fakes_an_ipv6_only_container_still_gets_its_ipv6_default_route(
    tmp_path: Path,
) -> None:
    fake = fake_host(tmp_path)
    fake.host.create_network(NetworkSpec(name="six", ipv4=False, ipv6=True, subnets=(
        SubnetConfig(IPv6Network("fd12:3456::/64")),)))
    container = fake.host.create_container(ContainerSpec(command=("true",), name="web",
                                                         networks=(AttachRequest("six"),)))
    inside = fake.kernel.namespaces[str(container.netns)].links["eth0"]
    assert inside.addresses == [IPv6Interface("fd12:3456::2/64")]
    assert (inside.gateway, inside.gateway6) == (None, GATEWAY)
