"""The firewall over IPv6 (issue 17), with real packets in a throwaway host namespace:
isolation between dual-stack networks (TCP and ICMPv6), ICC off, internal networks, NAT66
and gateway_mode_ipv6=routed egress, the direct routing refusal, publishing over IPv6 (from
the LAN, the host, another container, the container itself; [::1] refused), the flows a
removal ends, and IPv6 anti-spoofing at the bridge (a spoofed source, a Router
Advertisement and a Neighbor Advertisement for an address not the sender's are dropped; a
genuine one passes)."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest

from helpers import Lan, link_names, sh, wait_until
from netbay import AttachRequest, ContainerSpec, Host, NetworkSpec
from netbay.errors import ConfigError
from netbay.kernel import netns
from netbay.kernel.netlink import open_conntrack
from netbay.model import Endpoint, SubnetConfig
from netbay.plan.firewall import OPT_GATEWAY_MODE6
from netbay.plan.naming import link_local

pytestmark = pytest.mark.kernel

HOST6, LAN6 = IPv6Address("2001:db8:1::1"), IPv6Address("2001:db8:1::2")  # ext0, lan0
LAN_NAME = socket.gethostname()  # the LAN namespace shares the test's UTS namespace
# answers "HOSTNAME saw PEER" on TCP and UDP PORT, both families
SERVE = r"""
import socket, sys, threading
port = int(sys.argv[1])
def peer(address): return address[0].removeprefix("::ffff:")
def udp():
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    while True:
        _, address = s.recvfrom(2048)
        s.sendto(f"{socket.gethostname()} saw {peer(address)}\n".encode(), address)
threading.Thread(target=udp, daemon=True).start()
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", port))
s.listen(64)
while True:
    c, address = s.accept()
    c.sendall(f"{socket.gethostname()} saw {peer(address)}\n".encode())
    c.close()
"""


# --- probes, in-process: a socket made inside a namespace stays there ----------------------
def tcp(where: Path | None, address: object, port: int = 80, timeout: float = 0.7) -> str | None:
    """The answer of ADDRESS:PORT to a connection from WHERE (None: the host), or None."""
    family = socket.AF_INET6 if ":" in str(address) else socket.AF_INET
    with netns.entered(where):
        sock = socket.socket(family, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(timeout)
        try:
            sock.connect((str(address), port))
            return sock.recv(256).decode().strip()
        except OSError:
            return None


def udp(where: Path | None, address: object, port: int, source_port: int) -> str | None:
    with netns.entered(where):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with sock:
        sock.bind(("::", source_port))
        sock.settimeout(0.7)
        try:
            sock.sendto(b"ping", (str(address), port))
            return sock.recv(256).decode().strip()
        except OSError:
            return None


def ping6(where: Path | None, address: object, source: object = None) -> bool:
    argv = ["ping", "-6", "-c1", "-W1", *(["-I", str(source)] if source else []), str(address)]
    if where is not None:
        argv = ["nsenter", f"--net={where}", *argv]
    return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0


# --- the world -------------------------------------------------------------------------------
class World:
    def __init__(self, host: Host, lan: Lan) -> None:
        self.host, self.lan = host, lan
        self.ns: dict[str, Path] = {}
        self.ep: dict[str, Endpoint] = {}
        self._children: list[subprocess.Popen[bytes]] = []

    def network(self, name: str, n: int, **spec: Any) -> None:
        subnets = (SubnetConfig(IPv4Network(f"10.{n}.0.0/24")),
                   SubnetConfig(IPv6Network(f"fd00:{n}::/64")))
        self.host.create_network(NetworkSpec(name=name, subnets=subnets, **spec))

    def start(self, name: str, network: str, *publish: str) -> IPv6Address:
        container = self.host.create_container(ContainerSpec(
            command=(sys.executable, "-c", SERVE, "80"), name=name, hostname=name,
            networks=(AttachRequest(network),), publish=publish))
        self._children.append(self.host.start_container(container.id)[1])
        (endpoint,) = self.host.store.endpoints(container_id=container.id)
        assert endpoint.address6 is not None
        self.ns[name], self.ep[name] = Path(str(container.netns)), endpoint
        address = endpoint.address6.ip
        wait_until(lambda: tcp(self.ns[name], address), 10, f"{name} listening")
        return address

    def lan_v6(self, *routes: str) -> None:
        """The LAN machine on IPv6 too (HOST6 <-> LAN6), routing ROUTES via the host, with a
        server on port 80."""
        sh(f"ip -6 addr add {HOST6}/64 dev ext0 nodad")
        self.lan.sh(f"ip -6 addr add {LAN6}/64 dev lan0 nodad")
        for route in routes:
            self.lan.sh(f"ip -6 route add {route} via {HOST6}")
        self._children.append(subprocess.Popen(self.lan.argv(sys.executable, "-c", SERVE, "80")))
        wait_until(lambda: tcp(self.lan.netns, LAN6), 10, "the LAN's server")

    def close(self) -> None:
        for child in self._children:
            child.kill()
            child.wait()


@pytest.fixture
def world(host: Host, lan: Lan) -> Iterator[World]:
    made = World(host, lan)
    try:
        yield made
    finally:
        made.close()


def test_dual_stack_networks_are_isolated_over_ipv6_tcp_and_icmpv6(world: World) -> None:
    world.network("neta", 71)
    world.network("netb", 72)
    a1, a2, b1 = world.start("a1", "neta"), world.start("a2", "neta"), world.start("b1", "netb")
    ns = world.ns
    assert tcp(ns["a1"], a2) == f"a2 saw {a1}" and ping6(ns["a1"], a2)
    assert tcp(None, b1) is not None and ping6(None, b1)  # the host reaches every container
    for src, dst in (("a1", b1), ("b1", a1), ("b1", a2)):
        assert tcp(ns[src], dst) is None, f"{src} reached {dst}"
        assert not ping6(ns[src], dst), f"{src} pinged {dst}"
    assert ping6(ns["b1"], "fd00:72::1")  # its own gateway


def test_icc_off_blocks_ipv6_between_containers_but_not_the_host(world: World) -> None:
    world.network("quiet", 73, options={"com.docker.network.bridge.enable_icc": "false"})
    q1, q2 = world.start("q1", "quiet"), world.start("q2", "quiet")
    assert tcp(world.ns["q1"], q2) is None and not ping6(world.ns["q2"], q1)
    assert tcp(None, q1) == "q1 saw fd00:73::1"


def test_an_internal_network_keeps_to_itself_over_ipv6(world: World) -> None:
    world.network("neti", 74, internal=True)
    world.network("neta", 71)
    world.lan_v6("fd00:74::/64")
    i1, i2 = world.start("i1", "neti"), world.start("i2", "neti")
    a1 = world.start("a1", "neta")
    assert tcp(world.ns["i1"], i2) == f"i2 saw {i1}"
    assert tcp(world.ns["i1"], LAN6) is None and tcp(world.ns["i1"], a1) is None
    assert tcp(world.lan.netns, i1) is None and tcp(world.ns["a1"], i1) is None


def test_egress_is_nat66_by_default_and_not_in_routed_mode(world: World) -> None:
    world.network("nat", 75)
    world.network("direct", 76, options={OPT_GATEWAY_MODE6: "routed"})
    world.lan_v6("fd00:75::/64", "fd00:76::/64")
    n1, r1 = world.start("n1", "nat"), world.start("r1", "direct")
    assert tcp(world.ns["n1"], LAN6) == f"{LAN_NAME} saw {HOST6}"
    assert tcp(world.ns["r1"], LAN6) == f"{LAN_NAME} saw {r1}"
    # routed: reached from outside at its own address; nat: refused (direct routing)
    assert tcp(world.lan.netns, r1) == f"r1 saw {LAN6}" and ping6(world.lan.netns, r1)
    assert tcp(world.lan.netns, n1) is None and not ping6(world.lan.netns, n1)
    # and still isolated from the host's other container networks
    assert tcp(world.ns["n1"], r1) is None and tcp(world.ns["r1"], n1) is None


def test_published_ports_reach_the_container_over_ipv6(world: World) -> None:
    world.network("web", 77)
    world.network("other", 78)
    world.lan_v6()
    sh("ip -6 addr add 2001:db8:2::1/64 dev ext0 nodad")
    world.start("srv", "web", "8080:80", f"[{HOST6}]:8081:80", "[::]:8082:80",
                      "127.0.0.1:8083:80", "0.0.0.0:8084:80")
    world.start("peer", "other")
    lan = world.lan.netns
    assert tcp(lan, HOST6, 8080) == f"srv saw {LAN6}"  # DNAT only: the container sees the LAN
    assert tcp(lan, "198.51.100.1", 8080) == "srv saw 198.51.100.2"  # and IPv4 as before
    assert tcp(lan, HOST6, 8081) and tcp(lan, HOST6, 8082)
    assert tcp(lan, "198.51.100.1", 8082) is None  # [::]: IPv6 only
    assert tcp(lan, "198.51.100.1", 8084) and tcp(lan, HOST6, 8084) is None  # 0.0.0.0: IPv4
    # the host by its own IPv6 address; another container; the container itself (hairpin)
    assert tcp(None, HOST6, 8080) and tcp(None, "2001:db8:2::1", 8080)
    assert tcp(None, "2001:db8:2::1", 8081) is None  # bound to HOST6 only
    # (masqueraded to the bridge's address: the reply must come back through the host)
    assert tcp(world.ns["peer"], HOST6, 8080) == "srv saw fd00:77::1"
    assert tcp(world.ns["srv"], HOST6, 8080) == "srv saw fd00:77::1"
    # [::1] is not forwarded (the kernel drops the replies): refused at once, not hung
    started = time.monotonic()
    assert tcp(None, "::1", 8080, timeout=5) is None and time.monotonic() - started < 1
    assert tcp(None, "127.0.0.1", 8083) == "srv saw 10.77.0.1"


def test_publishing_on_ipv6_loopback_is_refused_and_nothing_changes(world: World) -> None:
    world.network("web", 77)
    before = (link_names(), sh("nft list ruleset").stdout)
    with pytest.raises(ConfigError) as refused:
        world.host.create_container(ContainerSpec(
            command=("sleep", "inf"), name="srv", networks=(AttachRequest("web"),),
            publish=("[::1]:8080:80",)))
    assert str(refused.value).startswith("invalid publish '[::1]:8080:80': ::1 cannot be "
                                         "forwarded to a container")
    assert (link_names(), sh("nft list ruleset").stdout) == before


def _flows6(address: IPv6Address) -> int:
    ct = open_conntrack(None, 6)
    try:
        return sum(str(address) in str(msg) for msg in ct.dump())
    finally:
        ct.close()


def test_removing_a_container_ends_its_ipv6_flows(world: World) -> None:
    world.network("web", 77)
    world.lan_v6()
    srv = world.start("srv", "web", "8080:80/udp")
    # a flow DNATed to it, and one it started (NAT66 out)
    assert udp(world.lan.netns, HOST6, 8080, 40001) == f"srv saw {LAN6}"
    assert udp(world.ns["srv"], LAN6, 80, 40002) is not None
    assert _flows6(srv) >= 2
    world.host.remove_container("srv", force=True)
    wait_until(lambda: _flows6(srv) == 0, 5, f"the conntrack entries of {srv} gone")


# --- anti-spoofing ---------------------------------------------------------------------------
def _checksum(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(mac: str, src: IPv6Address, icmp: bytes, hop_by_hop: bool = False) -> bytes:
    """ICMPv6 to ff02::1 from MAC/SRC, in an Ethernet frame (with a Hop-by-Hop header in
    front of it if asked: the firewall must find the ICMPv6 all the same)."""
    dst = IPv6Address("ff02::1")
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(icmp), 58)
    icmp = icmp[:2] + struct.pack("!H", _checksum(pseudo + icmp)) + icmp[4:]
    body, next_header = (bytes([58, 0, 1, 4, 0, 0, 0, 0]) + icmp, 0) if hop_by_hop else (icmp, 58)
    ip = struct.pack("!IHBB", 0x60000000, len(body), next_header, 255) + src.packed + dst.packed
    ether = bytes.fromhex("333300000001") + bytes.fromhex(mac.replace(":", "")) + b"\x86\xdd"
    return ether + ip + body


def _advert(mac: str, target: IPv6Address) -> bytes:
    """A Neighbor Advertisement (override) for TARGET at MAC."""
    option = b"\x02\x01" + bytes.fromhex(mac.replace(":", ""))
    return struct.pack("!BBHI", 136, 0, 0, 0x20000000) + target.packed + option


ROUTER_ADVERT = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0)
# an MLDv2 report (no records) and an MLDv1 one: the bridge would flood each to every port
MLD2_REPORT = struct.pack("!BBHHH", 143, 0, 0, 0, 0)
MLD1_REPORT = struct.pack("!BBHHH", 131, 0, 0, 0, 0) + IPv6Address("ff02::1:ff00:1").packed


def _redirect(target: IPv6Address, destination: IPv6Address) -> bytes:
    return struct.pack("!BBHI", 137, 0, 0, 0) + target.packed + destination.packed


class Sniffer:
    """The ICMPv6 an interface receives (type, NA target), by a packet socket in its netns."""

    def __init__(self, where: Path | None, ifname: str) -> None:
        with netns.entered(where):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
        self.sock.bind((ifname, 0))
        self.sock.settimeout(0.1)
        self.seen: list[tuple[int, IPv6Address | None]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, (_, _, kind, _, _) = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            if kind == socket.PACKET_OUTGOING:
                continue
            offset, next_header = 14 + 40, data[14 + 6]
            if next_header == 0:
                next_header, offset = data[offset], offset + 8
            if next_header == 58:
                target = IPv6Address(data[offset + 8:offset + 24]) if data[offset] == 136 else None
                self.seen.append((data[offset], target))

    def stop(self) -> list[tuple[int, IPv6Address | None]]:
        time.sleep(0.5)
        self._stop = True
        self._thread.join()
        self.sock.close()
        return self.seen


def test_a_container_sends_no_router_advert_nor_a_neighbour_advert_for_another(
    world: World
) -> None:
    world.network("web", 77)
    liar, victim = world.start("liar", "web"), world.start("victim", "web")
    mac = world.ep["liar"].mac
    bridge = next(n.device for n in world.host.store.networks() if n.name == "web")
    assert mac is not None and bridge is not None
    # a source it does not own is dropped at its port, its own passes
    subprocess.run(["nsenter", f"--net={world.ns['liar']}", "ip", "-6", "addr", "add",
                    "fd00:77::200/64", "dev", "eth0", "nodad"], check=True)
    assert ping6(world.ns["liar"], victim, source=liar)
    assert not ping6(world.ns["liar"], victim, source="fd00:77::200")
    sniffers = [Sniffer(world.ns["victim"], "eth0"), Sniffer(None, bridge)]
    with netns.entered(world.ns["liar"]):
        out = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    with out:
        out.bind(("eth0", 0))
        mine = link_local(mac)
        out.send(_frame(mac, mine, ROUTER_ADVERT))
        out.send(_frame(mac, mine, ROUTER_ADVERT, hop_by_hop=True))
        out.send(_frame(mac, mine, _redirect(mine, victim)))
        out.send(_frame(mac, mine, _advert(mac, victim)))
        out.send(_frame(mac, liar, _advert(mac, victim), hop_by_hop=True))
        out.send(_frame(mac, mine, MLD2_REPORT))
        out.send(_frame(mac, mine, MLD1_REPORT, hop_by_hop=True))
        out.send(_frame(mac, mine, _advert(mac, liar)))  # its own address: genuine
        out.send(_frame(mac, mine, _advert(mac, mine)))
    for sniffer in sniffers:
        seen = sniffer.stop()
        assert (134, None) not in seen and (137, None) not in seen
        assert (143, None) not in seen and (131, None) not in seen
        assert (136, victim) not in seen
        assert (136, liar) in seen and (136, mine) in seen
