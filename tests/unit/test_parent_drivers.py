"""macvlan/ipvlan without a kernel: option parsing, parent conflicts, the host_link address,
endpoint records, and the netlink requests as bytes (checked against the kernel's ABI)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from netbay.daemon.docker_json import upstream_routes_json
from netbay.drivers import get_driver
from netbay.drivers.parent import ParentDriver, host_link_addresses, vlan_parent
from netbay.errors import ConfigError, ConflictError
from netbay.ipam.allocator import complete
from netbay.kernel import rtnl_wire, sublinks
from netbay.model import Endpoint, Network, NetworkSpec, SubnetConfig

ID = "0123456789abcdef" * 4


def driver(name: str) -> ParentDriver:
    found = get_driver(name)
    assert isinstance(found, ParentDriver)
    return found


def network(
    name: str, kind: str, *subnets: str, ip_range: str | None = None, **options: str
) -> Network:
    configs = tuple(
        complete(SubnetConfig(IPv4Network(s), ip_range=IPv4Network(ip_range) if ip_range else None))
        for s in subnets
    )
    spec = NetworkSpec(name, kind, configs, options=options)
    return driver(kind).validate(spec, name.ljust(64, "0"))


# --- validate ------------------------------------------------------------------------------
def test_a_parent_is_the_device_and_no_parent_is_an_internal_dummy() -> None:
    net = network("n", "macvlan", parent="ens259f0")
    assert (net.device, net.internal, net.device_created) == ("ens259f0", False, False)
    inside = driver("ipvlan").validate(NetworkSpec("x", "ipvlan"), ID)
    assert (inside.device, inside.internal) == ("di-0123456789ab", True)
    assert driver("macvlan").validate(NetworkSpec("x", "macvlan"), ID).device == "dm-0123456789ab"


@pytest.mark.parametrize(
    ("kind", "options", "internal", "message"),
    [
        ("macvlan", {"parent": "eth0", "macvlan_mode": "l3"}, False,
         "invalid opt macvlan_mode 'l3': expected private|vepa|bridge|passthru"),
        ("ipvlan", {"parent": "eth0", "ipvlan_mode": "l4"}, False,
         "invalid opt ipvlan_mode 'l4': expected l2|l3|l3s"),
        ("ipvlan", {"parent": "eth0", "ipvlan_flag": "loud"}, False,
         "invalid opt ipvlan_flag 'loud': expected bridge|private|vepa"),
        ("ipvlan", {"parent": "eth0", "macvlan_mode": "bridge"}, False,
         "invalid opt 'macvlan_mode': unknown option for driver ipvlan"),
        ("macvlan", {"parent": "a-name-too-long-for-linux"}, False,
         "invalid opt parent 'a-name-too-long-for-linux': not a valid interface name"),
        ("macvlan", {"parent": "eth0"}, True,
         "invalid opt parent 'eth0': an internal network gets a dummy parent of its own"),
        ("macvlan", {"host_link": "true"}, False,
         "invalid opt host_link 'true': needs a parent"),
        ("macvlan", {"parent": "eth0", "macvlan_mode": "passthru", "host_link": "yes"}, False,
         "invalid opt host_link 'yes': passthru gives the parent to one container"),
    ],
)
def test_bad_options_are_refused_naming_field_and_value(
    kind: str, options: dict[str, str], internal: bool, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        driver(kind).validate(NetworkSpec("x", kind, internal=internal, options=options), ID)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("eth0.10", ("eth0", 10)), ("bond0.2.3", ("bond0.2", 3)), ("eth0.4094", ("eth0", 4094)),
     ("eth0.0", None), ("eth0.4095", None), ("eth0", None), ("eth0.x", None)],
)
def test_vlan_sub_interface_names(name: str, expected: tuple[str, int] | None) -> None:
    assert vlan_parent(name) == expected


# --- fit: the other networks on the parent -------------------------------------------------
def test_networks_on_one_parent_must_agree() -> None:
    routed = network("routed", "ipvlan", "192.168.94.0/24", parent="ens802", ipvlan_mode="l3")
    flat = network("flat", "ipvlan", "10.1.0.0/24", parent="ens802")
    with pytest.raises(ConflictError, match="invalid opt ipvlan_mode 'l2': parent ens802 carries "
                       "network routed with ipvlan_mode l3"):
        driver("ipvlan").fit(flat, [routed])
    also_routed = network("r2", "ipvlan", "192.168.95.0/24", parent="ens802", ipvlan_mode="l3")
    assert driver("ipvlan").fit(also_routed, [routed]) == also_routed
    elsewhere = network("x", "ipvlan", "10.1.0.0/24", parent="ens803")
    assert driver("ipvlan").fit(elsewhere, [routed]) == elsewhere

    mac = network("m", "macvlan", "10.2.0.0/24", parent="ens802")
    with pytest.raises(ConflictError, match="used by ipvlan network routed"):
        driver("macvlan").fit(mac, [routed])
    whole = network("w", "macvlan", "10.3.0.0/24", parent="eth1", macvlan_mode="passthru")
    with pytest.raises(ConflictError, match="network w uses it in passthru mode"):
        driver("macvlan").fit(network("y", "macvlan", "10.4.0.0/24", parent="eth1"), [whole])
    overlap = network("o", "ipvlan", "192.168.94.128/25", parent="ens802", ipvlan_mode="l3")
    with pytest.raises(ConflictError, match="overlaps 192.168.94.0/24 of network routed on "
                       "parent ens802"):
        driver("ipvlan").fit(overlap, [routed])


def test_host_link_takes_a_reserved_address_outside_the_containers_range() -> None:
    net = network("n", "macvlan", "172.17.28.0/24", ip_range="172.17.28.0/25",
                  parent="eth0", host_link="true")
    fitted = driver("macvlan").fit(net, [])
    assert fitted.subnets[0].aux_addresses == {"host_link": IPv4Address("172.17.28.254")}
    assert host_link_addresses(fitted) == [
        (IPv4Network("172.17.28.0/25"), IPv4Interface("172.17.28.254/24"))
    ]
    # without the option, an aux address of that name is just an aux address
    assert host_link_addresses(net) == []


def test_endpoint_records_have_no_host_side_and_ipvlan_no_mac_of_its_own() -> None:
    endpoint = Endpoint("e", "n", "c", "eth0", "nbvdeadbeef", "02:42:0a:00:00:02",
                        IPv4Interface("10.0.0.2/24"), IPv4Address("10.0.0.1"))
    mac = driver("macvlan").plan_endpoint(network("m", "macvlan", parent="eth0"), endpoint)
    assert (mac.host_ifname, mac.mac) == (None, "02:42:0a:00:00:02")
    passthru = network("p", "macvlan", parent="eth0", macvlan_mode="passthru")
    assert driver("macvlan").plan_endpoint(passthru, endpoint).mac is None
    assert driver("ipvlan").plan_endpoint(network("i", "ipvlan", parent="e"), endpoint).mac is None


def test_upstream_routes_as_inspect_shows_them() -> None:
    routes = [(IPv4Network("192.168.94.0/24"), IPv4Address("10.0.0.5")),
              (IPv4Network("192.168.95.0/24"), None)]
    shown = upstream_routes_json("ens802", routes)
    assert shown[0] == {"Destination": "192.168.94.0/24", "Gateway": "10.0.0.5",
                        "Command": "ip route add 192.168.94.0/24 via 10.0.0.5"}
    assert shown[1]["Gateway"] == "" and "parent ens802 has no IPv4 address" in shown[1]["Note"]


# --- netlink requests as bytes -------------------------------------------------------------
def nla(kind: int, payload: bytes) -> bytes:
    """An attribute built independently of netlink.attr: header, payload, padding."""
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def test_ipvlan_linkinfo_carries_mode_and_flag() -> None:
    # IFLA_LINKINFO(18) { IFLA_INFO_KIND(1) "ipvlan", IFLA_INFO_DATA(2) {
    #   IFLA_IPVLAN_MODE(1) u16 1 (l3), IFLA_IPVLAN_FLAGS(2) u16 1 (private) } }
    data = nla(1, struct.pack("=H", 1)) + nla(2, struct.pack("=H", 1))
    expected = nla(18, nla(1, b"ipvlan\0") + nla(2, data))
    assert sublinks.ipvlan("l3", "private").linkinfo() == expected


def test_macvlan_vlan_and_dummy_linkinfo() -> None:
    assert sublinks.macvlan("bridge").linkinfo() == nla(
        18, nla(1, b"macvlan\0") + nla(2, nla(1, struct.pack("=I", 4)))
    )
    assert sublinks.vlan(10).linkinfo() == nla(
        18, nla(1, b"vlan\0") + nla(2, nla(1, struct.pack("=H", 10)))
    )
    assert sublinks.DUMMY.linkinfo() == nla(18, nla(1, b"dummy\0"))


def test_newlink_born_in_another_namespace() -> None:
    body = rtnl_wire.newlink_body("eth0", sublinks.DUMMY, parent=7, netns_fd=12,
                                  mac="02:42:ac:11:1c:08")
    header = struct.pack("=BxHiII", 0, 0, 0, 0, 0)
    assert body == (
        header + nla(3, b"eth0\0") + nla(5, struct.pack("=I", 7)) + nla(28, struct.pack("=I", 12))
        + nla(1, bytes.fromhex("0242ac111c08")) + sublinks.DUMMY.linkinfo()
    )


def test_default_route_straight_out_of_a_device() -> None:
    default = IPv4Network("0.0.0.0/0")
    body = rtnl_wire.route_body(rtnl_wire.Route(default, index=3))
    # AF_INET, dst_len 0, main table, static, scope link (no gateway), unicast; no RTA_DST
    assert body == struct.pack("=BBBBBBBBI", 2, 0, 0, 0, 254, 4, 253, 1, 0) + nla(
        4, struct.pack("=I", 3)
    )
    via = rtnl_wire.route_body(rtnl_wire.Route(default, gateway=IPv4Address("10.0.0.1")))
    assert via[6] == 0 and via.endswith(nla(5, bytes([10, 0, 0, 1])))


def test_replies_are_parsed() -> None:
    info = nla(18, nla(1, b"ipvlan\0") + nla(2, nla(1, struct.pack("=H", 0))))
    payload = struct.pack("=BxHiII", 0, 1, 9, 0, 0) + nla(3, b"eth0\0") + nla(
        5, struct.pack("=I", 4)
    ) + info
    assert rtnl_wire.decode_link(payload) == rtnl_wire.Link(9, "eth0", "ipvlan", parent=4)
    address = struct.pack("=BBBBi", 2, 24, 0, 0, 5) + nla(2, bytes([203, 0, 113, 1]))
    assert rtnl_wire.decode_address(address) == (5, IPv4Interface("203.0.113.1/24"))
