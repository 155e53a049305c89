"""The overlay's data plane with real packets: three hosts as network namespaces, hosts a and
b on one L2 segment, host c on another behind a router (so host-gw cannot reach it and VXLAN
must), each with a container on its share of one overlay network. Each host's kernel is
programmed by LinuxKernel.sync_overlay from plan_overlay, and containers are attached the
bridge driver's way (LinuxKernel.attach_veth). All traffic stays in namespaces made here.

    segment 1 (192.0.2.0/24)          router           segment 2 (198.51.100.0/24)
    host a .11   host b .12   ----  .1      .1  ----  host c .13
    10.244.1.0/24 10.244.2.0/24                       10.244.3.0/24
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from netbay.kernel import netns
from netbay.kernel.events import Subscription
from netbay.kernel.linux import LinuxKernel
from netbay.kernel.overlay import OverlaySync
from netbay.kernel.rtnetlink import Rtnetlink
from netbay.kernel.rtnl_wire import RTPROT_NETBAY, FdbEntry, Neighbour, Route
from netbay.plan.overlay import (
    Backend,
    OverlayNode,
    OverlayPeer,
    OverlaySettings,
    OverlayState,
    plan_overlay,
    vtep_mac,
)

pytestmark = pytest.mark.kernel

NETWORK_ID = "0a1b2c3d4e5f60718293"
BRIDGE, VXLAN = "br-0a1b2c3d4e5f", "nbx0a1b2c3d4e5f"
POOL = IPv4Network("10.244.0.0/16")
UNDERLAY_MTU = 9000  # jumbo frames: the tunnel's MTU must follow (flannel's #841)
TUNNEL_MTU = UNDERLAY_MTU - 50
SEGMENTS = {1: IPv4Network("192.0.2.0/24"), 2: IPv4Network("198.51.100.0/24")}
ECHO_PORT = 7007
VNI = 42


def run(ns: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={ns}", *argv], check=check, capture_output=True,
                          text=True, timeout=30)


def ip(ns: Path, *commands: str) -> None:
    """`ip` commands inside NS, in one process."""
    subprocess.run(["nsenter", f"--net={ns}", "ip", "-b", "-"], input="\n".join(commands) + "\n",
                   check=True, capture_output=True, text=True, timeout=30)


@dataclass
class Host:
    name: str
    ns: Path
    container: Path
    kernel: LinuxKernel
    node: OverlayNode
    segment: int

    @property
    def container_ip(self) -> IPv4Address:
        return self.node.subnet.network_address + 2

    def peer(self, seen_from: Host) -> OverlayPeer:
        return OverlayPeer(self.node.node_id, self.node.address, self.node.subnet,
                           vtep_mac(self.node.node_id, VNI), self.segment == seen_from.segment)


@dataclass
class Cluster:
    hosts: dict[str, Host]
    settings: OverlaySettings

    def plan(self, name: str, leave_out: tuple[str, ...] = ()) -> OverlayState:
        host = self.hosts[name]
        peers = [other.peer(host) for other in self.hosts.values()
                 if other is not host and other.name not in leave_out]
        return plan_overlay(self.settings, host.node, peers)

    def sync(self, name: str, leave_out: tuple[str, ...] = ()) -> OverlaySync:
        return self.hosts[name].kernel.sync_overlay(self.plan(name, leave_out))

    def sync_all(self) -> None:
        for name in self.hosts:
            assert self.sync(name).conflicts == ()


def _cable(fabric: Path, port: str, host: Path, segment: int, address: IPv4Address) -> None:
    """Host's eth0 on the fabric's bridge seg<SEGMENT>, with ADDRESS and a default route via
    the segment's router (.1)."""
    ip(fabric, f"link add {port} mtu {UNDERLAY_MTU} type veth peer name eth0 "
               f"mtu {UNDERLAY_MTU} netns {host}",
       f"link set {port} master seg{segment} up")
    prefix = SEGMENTS[segment].prefixlen
    ip(host, "link set lo up", f"addr add {address}/{prefix} dev eth0", "link set eth0 up",
       f"route add default via {SEGMENTS[segment].network_address + 1}")


def _build_underlay(tmp: Path, made: list[Path]) -> Path:
    fabric, router = tmp / "fabric", tmp / "router"
    for path in (fabric, router):
        netns.create(path)
        made.append(path)
    ip(fabric, *(f"link add seg{s} mtu {UNDERLAY_MTU} type bridge" for s in SEGMENTS),
       *(f"link set seg{s} up" for s in SEGMENTS))
    for segment, subnet in SEGMENTS.items():
        ip(fabric, f"link add rt{segment} mtu {UNDERLAY_MTU} type veth peer name leg{segment} "
                   f"mtu {UNDERLAY_MTU} netns {router}",
           f"link set rt{segment} master seg{segment} up")
        ip(router, f"addr add {subnet.network_address + 1}/{subnet.prefixlen} dev leg{segment}",
           f"link set leg{segment} up")
    ip(router, "link set lo up")
    run(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    return fabric


def _build_host(tmp: Path, made: list[Path], fabric: Path, name: str, segment: int,
                number: int) -> Host:
    path, container = tmp / f"host-{name}", tmp / f"ctr-{name}"
    netns.create(path)
    made.append(path)
    address = SEGMENTS[segment].network_address + 10 + number
    _cable(fabric, f"p{name}", path, segment, address)
    with netns.entered(path):
        kernel = LinuxKernel()
        kernel.enable_forwarding()
    node = OverlayNode(f"node-{name}", address, "eth0", UNDERLAY_MTU,
                       IPv4Network(f"10.244.{number}.0/24"))
    return Host(name, path, container, kernel, node, segment)


def _attach(host: Host, state: OverlayState) -> None:
    """The container, on the host's bridge as the bridge driver attaches it."""
    host.kernel.create_netns(host.container)
    host.kernel.attach_veth(
        bridge=BRIDGE, bridge_key=NETWORK_ID, host_ifname=f"nbv{host.name}", ifname="eth0",
        netns=host.container, mac=None, mtu=state.veth_mtu,
        address=IPv4Interface((host.container_ip, 24)), gateway=state.bridge.gateway.ip)


@contextlib.contextmanager
def cluster_of(tmp: Path, backend: Backend) -> Iterator[Cluster]:
    made: list[Path] = []
    hosts: dict[str, Host] = {}
    try:
        fabric = _build_underlay(tmp, made)
        for number, (name, segment) in enumerate((("a", 1), ("b", 1), ("c", 2)), 1):
            hosts[name] = _build_host(tmp, made, fabric, name, segment, number)
        world = Cluster(hosts, OverlaySettings(NETWORK_ID, POOL, vni=VNI, backend=backend))
        world.sync_all()
        for name, host in hosts.items():
            _attach(host, world.plan(name))
        yield world
    finally:
        for host in hosts.values():
            host.kernel.close()
            netns.delete(host.container)
        for path in reversed(made):
            netns.delete(path)


@pytest.fixture
def cluster(host_ns: Path, tmp_path: Path) -> Iterator[Cluster]:
    with cluster_of(tmp_path, Backend.AUTO) as world:
        yield world


# --- looking at it ---------------------------------------------------------------------
def exchange(client: Host, server: Host, timeout: float = 3.0) -> tuple[str, str] | None:
    """A UDP request from CLIENT's container to SERVER's and the reply: (the source the
    server saw, the source the reply came from); None if no answer came."""
    with netns.entered(server.container):
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with netns.entered(client.container):
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with listener, sender:
        listener.bind((str(server.container_ip), ECHO_PORT))
        listener.settimeout(0.2)
        sender.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # unreachable: maybe on the next try
                sender.sendto(b"ping", (str(server.container_ip), ECHO_PORT))
            try:
                _, (seen, port) = listener.recvfrom(64)
                listener.sendto(b"pong", (seen, port))
                _, (replied, _) = sender.recvfrom(64)
            except (TimeoutError, OSError):
                continue
            return seen, replied
    return None


def tx_packets(host: Host, device: str) -> int:
    (shown,) = json.loads(run(host.ns, "ip", "-s", "-j", "link", "show", device).stdout)
    return int(shown["stats64"]["tx"]["packets"])


def kernel_state(host: Host) -> tuple[list[Route], list[Neighbour], list[FdbEntry]]:
    with Rtnetlink(host.ns) as rt:
        tunnel = rt.index(VXLAN)
        if tunnel is None:
            return rt.routes(protocol=RTPROT_NETBAY), [], []
        return (rt.routes(protocol=RTPROT_NETBAY), rt.neighbours(tunnel),
                [e for e in rt.fdb(tunnel) if e.destination is not None])


def index_of(host: Host, name: str) -> int:
    with Rtnetlink(host.ns) as rt:
        return rt.require_index(name, f"{name} missing in {host.name}")


def df_ping(client: Host, server: Host, size: int) -> subprocess.CompletedProcess[str]:
    return run(client.container, "ping", "-c1", "-W2", "-M", "do", "-s", str(size),
               str(server.container_ip), check=False)


# --- the tests -------------------------------------------------------------------------
def test_auto_routes_on_the_segment_and_tunnels_across_the_router(cluster: Cluster) -> None:
    a, b, c = (cluster.hosts[n] for n in "abc")
    routes, neighbours, fdb = kernel_state(a)
    eth0, tunnel = index_of(a, "eth0"), index_of(a, VXLAN)
    assert sorted(routes, key=lambda r: r.destination) == [
        Route(b.node.subnet, gateway=b.node.address, index=eth0, protocol=RTPROT_NETBAY),
        Route(c.node.subnet, gateway=IPv4Address("10.244.3.0"), index=tunnel,
              protocol=RTPROT_NETBAY, onlink=True),
    ]
    assert neighbours == [Neighbour(tunnel, IPv4Address("10.244.3.0"), vtep_mac("node-c", VNI))]
    assert fdb == [FdbEntry(tunnel, vtep_mac("node-c", VNI), c.node.address)]
    with Rtnetlink(a.ns) as rt:
        link = rt.link(VXLAN)
        assert link is not None and (link.mac, link.mtu) == (vtep_mac("node-a", VNI), TUNNEL_MTU)
    tunnelled = tx_packets(a, VXLAN)
    assert exchange(a, b) == (str(a.container_ip), str(b.container_ip))
    assert tx_packets(a, VXLAN) == tunnelled  # host-gw: the tunnel carried nothing
    assert exchange(a, c) == (str(a.container_ip), str(c.container_ip))
    assert tx_packets(a, VXLAN) >= tunnelled + 1
    assert exchange(c, b) == (str(c.container_ip), str(b.container_ip))


def test_backend_vxlan_tunnels_on_the_segment_too(host_ns: Path, tmp_path: Path) -> None:
    with cluster_of(tmp_path, Backend.VXLAN) as world:
        a, b = world.hosts["a"], world.hosts["b"]
        routes, _, fdb = kernel_state(a)
        assert {(r.destination, r.index, r.onlink) for r in routes} == {
            (b.node.subnet, index_of(a, VXLAN), True),
            (world.hosts["c"].node.subnet, index_of(a, VXLAN), True)}
        assert {e.destination for e in fdb} == {b.node.address, world.hosts["c"].node.address}
        tunnelled = tx_packets(a, VXLAN)
        assert exchange(a, b) == (str(a.container_ip), str(b.container_ip))
        assert tx_packets(a, VXLAN) >= tunnelled + 1


def test_host_gw_cannot_cross_the_router(host_ns: Path, tmp_path: Path) -> None:
    with cluster_of(tmp_path, Backend.HOST_GW) as world:
        a, b, c = (world.hosts[n] for n in "abc")
        assert [p.node_id for p in world.plan("a").rejected] == ["node-c"]
        assert {r.destination for r in kernel_state(a)[0]} == {b.node.subnet}
        assert a.kernel.link_exists(BRIDGE) and not a.kernel.link_exists(VXLAN)
        assert exchange(a, b) == (str(a.container_ip), str(b.container_ip))
        assert exchange(a, c, timeout=1.5) is None


def test_the_largest_df_packet_passes_and_one_byte_more_is_refused(cluster: Cluster) -> None:
    a, b, c = (cluster.hosts[n] for n in "abc")
    largest = TUNNEL_MTU - 28  # IPv4 20 + ICMP 8
    for server in (b, c):  # host-gw, then VXLAN
        assert df_ping(a, server, largest).returncode == 0
        refused = df_ping(a, server, largest + 1)
        assert refused.returncode != 0
        assert f"message too long, mtu={TUNNEL_MTU}" in refused.stdout + refused.stderr


def test_a_peer_with_a_new_address_and_vtep_mac_is_replaced(cluster: Cluster) -> None:
    """Host c comes back with its state root lost (a new node id, so a new VTEP MAC) and a
    new underlay address, keeping its subnet: a's entries for c are replaced, none stay."""
    a, c = cluster.hosts["a"], cluster.hosts["c"]
    old_mac, new_mac = vtep_mac("node-c", VNI), vtep_mac("node-c2", VNI)
    moved = IPv4Address("198.51.100.14")
    ip(c.ns, "addr flush dev eth0", "addr add 198.51.100.14/24 dev eth0",
       "route add default via 198.51.100.1")
    c.node = dataclasses.replace(c.node, node_id="node-c2", address=moved)
    rebuilt = cluster.sync("c").changes
    assert rebuilt[:2] == (f"remove link {VXLAN} (its settings changed)",
                           f"add link {VXLAN} (vxlan id 42 local {moved} dev eth0 dstport 4789 "
                           f"nolearning address {new_mac} mtu {TUNNEL_MTU})")
    assert cluster.sync("a").changes == (
        f"replace neighbour 10.244.3.0 lladdr {new_mac} dev {VXLAN}",
        f"add fdb {new_mac} dst {moved} dev {VXLAN}",
        f"remove fdb {old_mac} dst 198.51.100.13 dev {VXLAN}",
    )
    _, neighbours, fdb = kernel_state(a)
    tunnel = index_of(a, VXLAN)
    assert neighbours == [Neighbour(tunnel, IPv4Address("10.244.3.0"), new_mac)]
    assert fdb == [FdbEntry(tunnel, new_mac, moved)]
    cluster.sync("b")
    assert exchange(a, c) == (str(a.container_ip), str(c.container_ip))


def test_a_removed_peer_leaves_no_entry(cluster: Cluster) -> None:
    a, b, c = (cluster.hosts[n] for n in "abc")
    assert cluster.sync("a", leave_out=("c",)).changes == (
        f"remove route 10.244.3.0/24 via 10.244.3.0 dev {VXLAN} onlink",
        f"remove fdb {vtep_mac('node-c', VNI)} dst {c.node.address} dev {VXLAN}",
        f"remove neighbour 10.244.3.0 lladdr {vtep_mac('node-c', VNI)} dev {VXLAN}",
    )
    routes, neighbours, fdb = kernel_state(a)
    assert [r.destination for r in routes] == [b.node.subnet]
    assert (neighbours, fdb) == ([], [])
    assert exchange(a, c, timeout=1.5) is None
    assert cluster.sync("a", leave_out=("b", "c")).changes == (
        f"remove route 10.244.2.0/24 via {b.node.address} dev eth0",)
    assert kernel_state(a) == ([], [], [])


def test_a_second_sync_writes_nothing(cluster: Cluster) -> None:
    a = cluster.hosts["a"]
    before = kernel_state(a)
    with Subscription(a.ns) as events:
        assert cluster.sync("a") == OverlaySync()
        assert events.poll(0.5) == []
    assert kernel_state(a) == before


def test_what_is_not_the_networks_is_left_alone(cluster: Cluster) -> None:
    """Someone else's routes in the pool, netbay's routes outside it (another network's)
    and neighbours on other links stay; netbay's stale entries of this network go; a route
    that is not netbay's where the plan wants one is a conflict, left in place."""
    a, b = cluster.hosts["a"], cluster.hosts["b"]
    ip(a.ns, "route add 10.244.9.0/24 via 192.0.2.12 proto static",
       f"route add 10.99.0.0/24 via 192.0.2.12 proto {RTPROT_NETBAY}",
       "neigh add 192.0.2.99 lladdr 02:00:00:00:00:99 dev eth0 nud permanent",
       f"route add 10.244.7.0/24 via 192.0.2.12 proto {RTPROT_NETBAY}",
       f"neigh add 10.244.7.0 lladdr 02:00:00:00:00:07 dev {VXLAN} nud permanent")
    run(a.ns, "bridge", "fdb", "add", "02:00:00:00:00:07", "dev", VXLAN, "dst", "192.0.2.77",
        "self", "permanent")
    ip(a.ns, "route del 10.244.2.0/24", "route add 10.244.2.0/24 via 192.0.2.12 proto static")
    result = cluster.sync("a")
    assert result.changes == (
        "remove route 10.244.7.0/24 via 192.0.2.12 dev eth0",
        f"remove fdb 02:00:00:00:00:07 dst 192.0.2.77 dev {VXLAN}",
        f"remove neighbour 10.244.7.0 lladdr 02:00:00:00:00:07 dev {VXLAN}",
    )
    assert result.conflicts == (
        "route 10.244.2.0/24 via 192.0.2.12 dev eth0: a route to 10.244.2.0/24 that is not "
        "netbay's is in the way",)
    shown = run(a.ns, "ip", "route", "show").stdout
    assert "10.244.9.0/24 via 192.0.2.12 dev eth0 proto static" in shown
    assert f"10.99.0.0/24 via 192.0.2.12 dev eth0 proto {RTPROT_NETBAY}" in shown
    assert "10.244.2.0/24 via 192.0.2.12 dev eth0 proto static" in shown
    assert "192.0.2.99 dev eth0 lladdr 02:00:00:00:00:99 PERMANENT" in run(
        a.ns, "ip", "neigh", "show").stdout
    assert exchange(a, b) is not None  # someone else's route still gets there


def test_remove_overlay_takes_everything_of_the_network(cluster: Cluster) -> None:
    a = cluster.hosts["a"]
    a.kernel.remove_link(f"nbv{a.name}")
    result = a.kernel.remove_overlay(cluster.plan("a"))
    assert result.changes == (
        "remove route 10.244.2.0/24 via 192.0.2.12 dev eth0",
        f"remove route 10.244.3.0/24 via 10.244.3.0 dev {VXLAN} onlink",
        f"remove link {VXLAN}", f"remove link {BRIDGE}",
    )
    assert kernel_state(a) == ([], [], [])
    assert not a.kernel.link_exists(BRIDGE) and not a.kernel.link_exists(VXLAN)
    assert a.kernel.remove_overlay(cluster.plan("a")) == OverlaySync()
