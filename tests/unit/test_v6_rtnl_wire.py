"""The IPv6 kernel primitives the cluster planes use, without a kernel: onlink and blackhole
IPv6 routes (add, delete, dump) and IPv6 neighbour entries, as bytes built independently
of rtnl_wire6 and decoded back."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest

from netbay.kernel import rtnl_wire, rtnl_wire6
from netbay.kernel.rtnl_wire6 import Neighbour6, Route6

BLOCK = IPv6Network("fd12:3456:789a:2::/64")
MAC = "02:42:0a:01:00:02"


def nla(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def rtmsg(prefixlen: int, protocol: int, kind: int, flags: int) -> bytes:
    # AF_INET6, dst and src lengths, tos, main table, protocol, scope universe, type, flags
    return struct.pack("=BBBBBBBBI", 10, prefixlen, 0, 0, 254, protocol, 0, kind, flags)


def test_an_onlink_ipv6_route_via_the_peers_block_address_as_bytes() -> None:
    route = Route6(BLOCK, gateway=BLOCK.network_address, index=9,
                   protocol=rtnl_wire.RTPROT_NETBAY, onlink=True)
    assert rtnl_wire6.route6_body(route) == (
        rtmsg(64, 57, 1, 4) + nla(1, BLOCK.network_address.packed)
        + nla(5, BLOCK.network_address.packed) + nla(4, struct.pack("=I", 9)))


def test_a_blackhole_ipv6_route_names_no_device_nor_gateway() -> None:
    route = Route6(BLOCK, protocol=rtnl_wire.RTPROT_NETBAY, type=rtnl_wire.RTN_BLACKHOLE)
    assert rtnl_wire6.route6_body(route) == rtmsg(64, 57, 6, 0) + nla(
        1, BLOCK.network_address.packed)


def test_a_dumped_blackhole_decodes_without_lo_as_its_device() -> None:
    # the kernel reports an IPv6 blackhole with RTA_OIF 1 (lo): decoded as the one we asked
    dumped = rtmsg(64, 57, 6, 0) + nla(15, struct.pack("=I", 254)) + nla(
        1, BLOCK.network_address.packed) + nla(4, struct.pack("=I", 1))
    assert rtnl_wire6.decode_route6(dumped) == Route6(
        BLOCK, protocol=57, type=rtnl_wire.RTN_BLACKHOLE)


@pytest.mark.parametrize("route", [
    Route6(BLOCK, gateway=BLOCK.network_address, index=9, protocol=57, onlink=True),
    Route6(BLOCK, gateway=IPv6Address("fd00:a::2"), index=3, protocol=57),
    Route6(BLOCK, protocol=57, type=rtnl_wire.RTN_BLACKHOLE),
    Route6(IPv6Network("fd12:3456:789a:2::5/128"), index=4, protocol=57, table=1000),
])
def test_ipv6_routes_round_trip(route: Route6) -> None:
    assert rtnl_wire6.decode_route6(rtnl_wire6.route6_body(route)) == route


def test_an_onlink_flag_is_read_from_a_dump() -> None:
    dumped = rtmsg(64, 57, 1, 4 | 0x80) + nla(1, BLOCK.network_address.packed)
    decoded = rtnl_wire6.decode_route6(dumped)
    assert decoded is not None and decoded.onlink
    plain = rtnl_wire6.decode_route6(rtmsg(64, 57, 1, 0x80))
    assert plain is not None and not plain.onlink


def test_an_ipv6_neighbour_as_bytes_and_back() -> None:
    address = IPv6Address("fd12:3456:789a:2::")
    body = rtnl_wire6.neighbour6_body(7, address, MAC)
    # AF_INET6, ifindex 7, NUD_PERMANENT, no flags, no type; NDA_DST, NDA_LLADDR
    assert body == struct.pack("=BxxxiHBB", 10, 7, 0x80, 0, 0) + nla(1, address.packed) + nla(
        2, bytes.fromhex("02420a010002"))
    assert rtnl_wire6.decode_neighbour6(body) == Neighbour6(7, address, MAC, 0x80)
    deleting = rtnl_wire6.neighbour6_body(7, address)
    assert deleting == struct.pack("=BxxxiHBB", 10, 7, 0, 0, 0) + nla(1, address.packed)
    assert rtnl_wire6.decode_neighbour6(deleting) == Neighbour6(7, address, None, 0)


def test_neighbour_decoders_keep_to_their_family() -> None:
    v6 = rtnl_wire6.neighbour6_body(7, IPv6Address("fd00::1"), MAC)
    v4 = rtnl_wire.neighbour_body(7, IPv4Address("10.0.0.1"), MAC)
    assert rtnl_wire.decode_neighbour(v6) is None
    assert rtnl_wire6.decode_neighbour6(v4) is None


def test_an_ipv6_neighbour_dump_is_filtered_to_a_device_by_the_kernel() -> None:
    header = struct.pack("=BxxxiHBB", socket.AF_INET6, 0, 0, 0, 0)
    assert rtnl_wire6.neighbour6_dump_body() == header
    assert rtnl_wire6.neighbour6_dump_body(5) == header + nla(8, struct.pack("=I", 5))
