"""The reconciler's netlink additions without a kernel: a bridge port's hairpin read from its
link message, and the request that changes an existing link."""

from __future__ import annotations

import struct

from netbay.kernel import rtnl_wire


def nla(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def port(hairpin: bytes) -> bytes:
    """A veth that is a bridge port, as a link dump reports it (IFLA_INFO_SLAVE_DATA)."""
    info = nla(18, nla(1, b"veth\0") + nla(4, b"bridge\0") + nla(5, nla(4, hairpin)))
    return struct.pack("=BxHiII", 0, 1, 9, 0x1003, 0) + nla(3, b"nbv1\0") + info


def test_a_ports_hairpin_mode_is_read_from_its_slave_data() -> None:
    assert rtnl_wire.decode_link(port(b"\x01")).hairpin
    assert not rtnl_wire.decode_link(port(b"\x00")).hairpin
    plain = struct.pack("=BxHiII", 0, 1, 9, 0, 0) + nla(3, b"eth0\0")
    assert not rtnl_wire.decode_link(plain).hairpin


def test_a_link_change_names_the_link_by_index_and_only_what_changes() -> None:
    header = struct.pack("=BxHiII", 0, 0, 9, 0, 0)
    assert rtnl_wire.setlink_body(9, master=4) == header + nla(10, struct.pack("=I", 4))
    assert rtnl_wire.setlink_body(9, mtu=1400, mac="02:00:00:00:00:01") == (
        header + nla(4, struct.pack("=I", 1400)) + nla(1, bytes.fromhex("020000000001")))
    assert rtnl_wire.setlink_body(9) == header
