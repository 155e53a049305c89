"""DNS for dual-stack and IPv6-only networks (issue 17): the zone's AAAA answers, no data for a
family a name has no address of, ip6.arpa PTR names, both families' listen points and
askers, the server a container is given, IPv6 listening sockets. No root, no kernel."""

from __future__ import annotations

import socket
import struct
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
)
from pathlib import Path

import pytest

from dnsprobe import build_query, parse_answer
from netbay.dns import records
from netbay.dns.listen import IPV6_FREEBIND, adopt, handoff_arg, key_of, open_pair
from netbay.dns.message import aaaa_record, reverse_address, reverse_name
from netbay.dns.records import ContainerRow, EndpointRow, ListenPoint, build_zone
from netbay.dns.resolver import Forward, Reply, resolve
from netbay.dns.udp import UdpListener
from netbay.engine.etc_files import EtcFiles
from netbay.model import READY, Container, Endpoint, Network, SubnetConfig
from netbay.name_entry import NameEntry
from netbay.paths import Paths
from netbay.store.base import DnsRecords, RemoteName
from netbay.store.memory import MemoryStore
from netbay.store.sqlite import SQLiteStore

A, A6 = IPv4Address, IPv6Address


def sub4(third: int) -> SubnetConfig:
    return SubnetConfig(IPv4Network(f"10.61.{third}.0/24"), A(f"10.61.{third}.1"))


def sub6(group: int) -> SubnetConfig:
    return SubnetConfig(IPv6Network(f"fd00:61:{group}::/64"), A6(f"fd00:61:{group}::1"))


def net(nid: str, name: str, *subnets: SubnetConfig) -> Network:
    return Network(id=nid, name=name, driver="bridge", created="", subnets=subnets,
                   device=f"br-{name}")


DUAL = net("n-dual", "dual", sub4(1), sub6(1))
SIX = net("n-six", "six", sub6(2))
FOUR = net("n-four", "four", sub4(3))
NETS = [DUAL, SIX, FOUR]
CONTAINERS = [
    ContainerRow("c-alpha", "alpha", "alphahost", "running"),
    ContainerRow("c-delta", "delta", "deltahost", "running", dns=("fd00:99::53",)),
    ContainerRow("c-gamma", "gamma", "gammahost", "running"),
    ContainerRow("c-beta", "beta", "betahost", "running"),
]
ENDPOINTS = [
    EndpointRow("n-dual", "c-alpha", A("10.61.1.2"), ("Svc",), address6=A6("fd00:61:1::2")),
    EndpointRow("n-six", "c-alpha", None, address6=A6("fd00:61:2::2")),
    EndpointRow("n-four", "c-alpha", A("10.61.3.2")),
    EndpointRow("n-dual", "c-delta", A("10.61.1.3"), address6=A6("fd00:61:1::3")),
    EndpointRow("n-six", "c-gamma", None, address6=A6("fd00:61:2::3")),
    EndpointRow("n-four", "c-beta", A("10.61.3.3")),
]
HOST = ["10.99.99.53"]
ALPHA6, DELTA6, GAMMA6 = "fd00:61:1::2", "fd00:61:1::3", "fd00:61:2::3"


@pytest.fixture
def zone() -> records.Zone:
    return build_zone(NETS, CONTAINERS, ENDPOINTS)


def ask(zone: records.Zone, network: str, ip: str, name: str, qtype: str = "A") -> Reply | Forward:
    _, packet = build_query(name, qtype)
    decision = resolve(packet, zone.askers[network][ip], zone, HOST)
    assert decision is not None
    return decision


def answer(zone: records.Zone, network: str, ip: str, name: str, qtype: str = "A") -> dict:
    decision = ask(zone, network, ip, name, qtype)
    assert isinstance(decision, Reply), decision
    return parse_answer(decision.packet)


def addresses(zone: records.Zone, network: str, ip: str, name: str, qtype: str) -> list[str]:
    reply = answer(zone, network, ip, name, qtype)
    assert reply["rcode"] == "NOERROR", reply
    return list(reply["answers"])  # type: ignore[call-overload]


# --- the zone ------------------------------------------------------------------------------
def test_listen_points_are_the_gateways_of_both_families_ipv4_first(zone: records.Zone) -> None:
    assert [(str(p.address), p.device, p.network_id) for p in zone.listen] == [
        ("10.61.1.1", "br-dual", "n-dual"), ("10.61.3.1", "br-four", "n-four"),
        ("fd00:61:1::1", "br-dual", "n-dual"), ("fd00:61:2::1", "br-six", "n-six"),
    ]
    assert set(zone.subnets) == {IPv4Network("10.61.1.0/24"), IPv4Network("10.61.3.0/24"),
                                 IPv6Network("fd00:61:1::/64"), IPv6Network("fd00:61:2::/64")}
    assert zone.in_our_subnets(A6("fd00:61:2::99")) and not zone.in_our_subnets(A6("fd00::1"))


def test_an_endpoint_asks_from_either_address_with_one_view(zone: records.Zone) -> None:
    assert set(zone.askers["n-dual"]) == {"10.61.1.2", ALPHA6, "10.61.1.3", DELTA6}
    assert set(zone.askers["n-six"]) == {"fd00:61:2::2", GAMMA6}
    assert zone.askers["n-dual"][ALPHA6] is zone.askers["n-dual"]["10.61.1.2"]
    assert zone.askers["n-six"]["fd00:61:2::2"].view is zone.askers["n-four"]["10.61.3.2"].view
    assert zone.askers["n-dual"][DELTA6].servers == ("fd00:99::53",)


def test_aaaa_and_a_of_a_dual_stack_container(zone: records.Zone) -> None:
    for who in ("10.61.1.2", ALPHA6):
        assert addresses(zone, "n-dual", who, "delta", "AAAA") == [DELTA6]
        assert addresses(zone, "n-dual", who, "delta", "A") == ["10.61.1.3"]
    reply = answer(zone, "n-dual", ALPHA6, "delta", "AAAA")
    assert reply["types"] == [28] and {"aa", "ra"} <= set(reply["flags"])  # type: ignore[arg-type]


def test_aliases_hostnames_qualified_names_and_case(zone: records.Zone) -> None:
    for name in ("alpha", "ALPHA", "alphahost", "svc", "SVC", "svc.dual", "Alpha.DUAL",
                 "alphahost.dual"):
        assert addresses(zone, "n-dual", DELTA6, name, "AAAA") == [ALPHA6], name
        assert addresses(zone, "n-dual", DELTA6, name, "A") == ["10.61.1.2"], name
    # the alias is the dual network's: not alpha's on six
    assert answer(zone, "n-six", GAMMA6, "svc", "AAAA")["rcode"] == "NXDOMAIN"


def test_a_container_on_several_networks_answers_each_family_in_attach_order(
    zone: records.Zone,
) -> None:
    assert addresses(zone, "n-dual", ALPHA6, "alpha", "AAAA") == [ALPHA6, "fd00:61:2::2"]
    assert addresses(zone, "n-dual", ALPHA6, "alpha", "A") == ["10.61.1.2", "10.61.3.2"]
    assert addresses(zone, "n-six", GAMMA6, "alpha", "AAAA") == ["fd00:61:2::2"]
    assert addresses(zone, "n-six", GAMMA6, "alpha.six", "AAAA") == ["fd00:61:2::2"]


def test_a_family_a_name_has_no_address_of_is_no_data_not_nxdomain(zone: records.Zone) -> None:
    # gamma: IPv6 only; beta: IPv4 only; alpha on six: IPv6 only there
    assert addresses(zone, "n-dual", ALPHA6, "gamma", "A") == []
    assert addresses(zone, "n-dual", ALPHA6, "gamma", "AAAA") == [GAMMA6]
    assert addresses(zone, "n-dual", ALPHA6, "beta", "AAAA") == []
    assert addresses(zone, "n-dual", ALPHA6, "beta", "A") == ["10.61.3.3"]
    assert addresses(zone, "n-six", GAMMA6, "alpha", "A") == []
    assert addresses(zone, "n-six", GAMMA6, "gammahost.six", "MX") == []
    # names of networks one does not share stay NXDOMAIN, of either family, never forwarded
    for name in ("gamma", "gamma.six", "beta"):
        for qtype in ("A", "AAAA"):
            assert answer(zone, "n-dual", DELTA6, name, qtype)["rcode"] == "NXDOMAIN"


def test_any_is_both_families(zone: records.Zone) -> None:
    packet = struct.pack("!6H", 7, 0x0100, 1, 0, 0, 0) + b"\x05delta\x00" + struct.pack(
        "!HH", 255, 1)
    decision = resolve(packet, zone.askers["n-dual"][ALPHA6], zone, HOST)
    assert isinstance(decision, Reply)
    assert parse_answer(decision.packet)["answers"] == ["10.61.1.3", DELTA6]


NIBBLES_DELTA6 = ("3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.1.6.0.0.0.0.d.f.ip6.arpa")


def test_ptr_of_ipv6_addresses_in_nibble_format(zone: records.Zone) -> None:
    assert reverse_name(A6(DELTA6)) == NIBBLES_DELTA6
    assert addresses(zone, "n-dual", ALPHA6, NIBBLES_DELTA6, "PTR") == ["delta.dual"]
    assert addresses(zone, "n-dual", ALPHA6, NIBBLES_DELTA6.upper(), "PTR") == ["delta.dual"]
    assert addresses(zone, "n-dual", "10.61.1.2", reverse_name(A6(GAMMA6)), "PTR") == [
        "gamma.six"]
    # the IPv4 PTR of a dual-stack container is still there
    assert addresses(zone, "n-dual", ALPHA6, "3.1.61.10.in-addr.arpa", "PTR") == ["delta.dual"]
    # AAAA of a reverse name: no data
    assert addresses(zone, "n-dual", ALPHA6, NIBBLES_DELTA6, "AAAA") == []


def test_ptr_inside_a_netbay_subnet_not_shared_is_nxdomain_and_outside_is_forwarded(
    zone: records.Zone,
) -> None:
    unshared = reverse_name(A6(GAMMA6))
    assert answer(zone, "n-dual", DELTA6, unshared, "PTR")["rcode"] == "NXDOMAIN"
    unused = reverse_name(A6("fd00:61:1::99"))  # in a served subnet, nobody's
    assert answer(zone, "n-dual", DELTA6, unused, "PTR")["rcode"] == "NXDOMAIN"
    outside = reverse_name(A6("2001:db8::1"))
    decision = ask(zone, "n-dual", ALPHA6, outside, "PTR")
    assert isinstance(decision, Forward) and decision.servers == tuple(HOST)


def test_other_names_are_forwarded_for_askers_of_either_family(zone: records.Zone) -> None:
    decision = ask(zone, "n-six", GAMMA6, "outside.test", "AAAA")
    assert isinstance(decision, Forward) and decision.servers == tuple(HOST)
    decision = ask(zone, "n-dual", DELTA6, "outside.test", "AAAA")
    assert isinstance(decision, Forward) and decision.servers == ("fd00:99::53",)


def test_ipv4_only_zones_are_as_before() -> None:
    v4 = build_zone([FOUR], CONTAINERS, [e for e in ENDPOINTS if e.network_id == "n-four"])
    view = v4.askers["n-four"]["10.61.3.2"].view
    assert view.names6 == {} and all(k.endswith(".in-addr.arpa") for k in view.reverse)
    assert addresses(v4, "n-four", "10.61.3.2", "beta", "AAAA") == []


# --- remote names stay IPv4 ------------------------------------------------------------------
def test_remote_names_on_a_network_answer_a_and_no_aaaa() -> None:
    remote = [RemoteName("n-dual", NameEntry("far", ("yonder",), A("10.61.1.50"), "c-far", "b"))]
    zone = build_zone(NETS, CONTAINERS, ENDPOINTS, remote)
    assert addresses(zone, "n-dual", ALPHA6, "yonder", "A") == ["10.61.1.50"]
    assert addresses(zone, "n-dual", ALPHA6, "far.dual", "AAAA") == []
    assert addresses(zone, "n-dual", ALPHA6, "delta", "AAAA") == [DELTA6]


def test_published_names_are_ipv4_and_skip_ipv6_only_endpoints() -> None:
    local = DnsRecords(NETS, CONTAINERS, ENDPOINTS)
    assert records.published_names(local, "n-dual") == [
        NameEntry("alpha", ("alphahost", "svc"), A("10.61.1.2"), "c-alpha"),
        NameEntry("delta", ("deltahost",), A("10.61.1.3"), "c-delta"),
    ]
    assert records.published_names(local, "n-six") == []


# --- the server a container is given ---------------------------------------------------------
def endpoint(network: Network, v4: str | None, v6: str | None, ifname: str = "eth0") -> Endpoint:
    return Endpoint(
        id=f"e-{network.name}-{v4 or v6}", network_id=network.id, container_id="c1",
        ifname=ifname, host_ifname=None, mac=None,
        address=None if v4 is None else IPv4Interface(v4 + "/24"), gateway=None,
        address6=None if v6 is None else IPv6Interface(v6 + "/64"),
    )


def test_dns_server_for_is_the_gateway_of_the_endpoints_family() -> None:
    assert records.dns_server_for(DUAL, endpoint(DUAL, "10.61.1.5", "fd00:61:1::5")) == A(
        "10.61.1.1")
    assert records.dns_server_for(SIX, endpoint(SIX, None, "fd00:61:2::5")) == A6("fd00:61:2::1")
    assert records.dns_address(DUAL, A6("fd00:61:1::5")) == A6("fd00:61:1::1")
    assert records.dns_address(DUAL, A6("fd00:62::5")) is None
    routed_away = Network(id="n-x", name="x", driver="ipvlan", created="", subnets=(sub6(2),))
    assert records.dns_server_for(routed_away, endpoint(routed_away, None, "fd00:61:2::5")) is None


def etc_files(tmp_path: Path, *attached: Endpoint) -> tuple[EtcFiles, Container]:
    store = MemoryStore()
    for network in NETS:
        store.put_network(network)
    container = Container(id="c1", name="box", hostname="box", command=("true",), created="",
                          netns=None, network_mode="private", state="running")
    store.put_container(container)
    for each in attached:
        store.put_endpoint(each)
    paths = Paths(root=tmp_path, socket=tmp_path / "sock", netns_dir=tmp_path / "netns")
    paths.container_dir("c1").mkdir(parents=True)
    return EtcFiles(paths, store), container


def nameservers(files: EtcFiles, container: Container) -> list[str]:
    files.write_all(container)
    text = (files.paths.container_dir(container.id) / "resolv.conf").read_text()
    return [line.split()[1] for line in text.splitlines() if line.startswith("nameserver ")]


def test_resolv_conf_ipv6_only_names_the_ipv6_gateway(tmp_path: Path) -> None:
    files, box = etc_files(tmp_path, endpoint(SIX, None, "fd00:61:2::5"))
    assert nameservers(files, box) == ["fd00:61:2::1"]
    hosts = (files.paths.container_dir("c1") / "hosts").read_text()
    assert "fd00:61:2::5\tbox box\n" in hosts


def test_resolv_conf_dual_stack_keeps_the_ipv4_gateway(tmp_path: Path) -> None:
    files, box = etc_files(tmp_path, endpoint(SIX, None, "fd00:61:2::5"),
                           endpoint(DUAL, "10.61.1.5", "fd00:61:1::5", "eth1"))
    assert nameservers(files, box) == ["10.61.1.1"]  # IPv4 first, though six came first
    hosts = (files.paths.container_dir("c1") / "hosts").read_text().splitlines()
    assert hosts[-3:] == ["10.61.1.5\tbox box", "fd00:61:2::5\tbox box", "fd00:61:1::5\tbox box"]


# --- the record read back, the wire, the sockets ---------------------------------------------
def test_the_store_read_back_has_the_ipv6_addresses(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "netbay.db")
    store.put_network(DUAL)
    store.put_container(Container(id="c1", name="env1", hostname="odin", command=("true",),
                                  created="", netns=None, network_mode="private",
                                  state="running"))
    store.put_endpoint(Endpoint(
        id="e1", network_id=DUAL.id, container_id="c1", ifname="eth0", host_ifname="nbv1",
        mac=None, address=IPv4Interface("10.61.1.2/24"), gateway=A("10.61.1.1"), state=READY,
        address6=IPv6Interface("fd00:61:1::2/64"), gateway6=A6("fd00:61:1::1"),
    ))
    conn = records.connect(str(tmp_path / "netbay.db"))
    zone = records.load(conn)
    assert zone.askers[DUAL.id]["fd00:61:1::2"] is zone.askers[DUAL.id]["10.61.1.2"]
    assert addresses(zone, DUAL.id, "fd00:61:1::2", "odin.dual", "AAAA") == ["fd00:61:1::2"]
    conn.close()
    store.close()


def test_aaaa_record_and_reverse_names_on_the_wire() -> None:
    raw = A6(DELTA6).packed
    assert aaaa_record(raw, 5) == b"\xc0\x0c" + struct.pack("!HHIH", 28, 1, 5, 16) + raw
    assert reverse_address(NIBBLES_DELTA6) == A6(DELTA6)
    assert reverse_address("3.1.61.10.in-addr.arpa") == A("10.61.1.3")
    for bad in (NIBBLES_DELTA6[2:], "g" + NIBBLES_DELTA6[1:], "03" + NIBBLES_DELTA6[1:],
                "1.0.ip6.arpa", "ip6.arpa"):
        assert reverse_address(bad) is None, bad


def test_ipv6_listen_sockets_are_v6only_freebind_and_handed_over() -> None:
    # fd00:61:9::1 is on no interface: FREEBIND binds it anyway, as for a tentative address
    for address in ("::1", "fd00:61:9::1"):
        point = ListenPoint(ip_address(address), None, "n-six")
        udp, tcp = open_pair(point, port=0)
        try:
            for sock in (udp, tcp):
                assert sock.family == socket.AF_INET6
                assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
                assert sock.getsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND) == 1
                assert sock.getsockname()[0] == address
            key, (udp2, tcp2) = adopt(handoff_arg(key_of(point), (udp, tcp)))
            assert key == (address, "", 0)
            assert (udp2.family, udp2.type, tcp2.type) == (
                socket.AF_INET6, socket.SOCK_DGRAM, socket.SOCK_STREAM)
            udp2.detach()
            tcp2.detach()
        finally:
            udp.close()
            tcp.close()


class Stand:
    """A server that answers every query of one IPv6 client with b"ok"."""

    def __init__(self, client: str) -> None:
        self.view = records.View(forward=True)
        self.client = client

    def fresh(self, *, reload: bool = False) -> records.Zone:
        zone = records.Zone()
        zone.askers["n-six"] = {self.client: records.Asker(self.view, (), "c1")}
        return zone

    def answer(self, sock: socket.socket, data: bytes, asker: records.Asker,
               zone: records.Zone, peer: tuple[str, int]) -> bytes | None:
        return data[:2] + b"ok"


def test_the_udp_listener_answers_an_ipv6_client() -> None:
    udp, tcp = open_pair(ListenPoint(A6("::1"), None, "n-six"), port=0)
    tcp.close()
    listener = UdpListener(udp, "n-six", Stand("::1"))
    listener.start()
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as client:
            client.settimeout(2)
            client.sendto(b"\x12\x34query", udp.getsockname()[:2])
            assert client.recv(64) == b"\x12\x34ok"
    finally:
        listener.stop()
