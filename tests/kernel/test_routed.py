"""A routed network's data plane on one host, with real packets: containers attached the
routed way (LinuxKernel.attach_routed from plan/routed.py), no bridge, reaching each other
through the host's routing; another node (a namespace on the host's underlay link, with a
route to the block via the host) reaching them by their own addresses. rp_filter strict on
the host throughout. All traffic stays in namespaces made here.

    node2 192.0.2.2 --- eth0 192.0.2.1  host (block 10.244.0.0/26)  nbv<a> --- ctr a 10.244.0.2
      10.244.0.0/26 via 192.0.2.1                                   nbv<b> --- ctr b 10.244.0.3
"""

from __future__ import annotations

import contextlib
import errno
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from netbay.errors import KernelError
from netbay.kernel import netns, sysctl
from netbay.kernel.linux import LinuxKernel
from netbay.kernel.rtnetlink import Rtnetlink
from netbay.kernel.rtnl_wire import (
    DEFAULT,
    NUD_PERMANENT,
    RTN_BLACKHOLE,
    RTPROT_NETBAY,
    Neighbour,
    Route,
)
from netbay.plan.routed import (
    GATEWAY,
    HOST_MAC,
    BlockRoute,
    Encapsulation,
    RoutedEndpoint,
    block_route,
    plan_endpoint,
    veth_mtu,
)

pytestmark = [pytest.mark.kernel]

SUBNET = IPv4Network("10.244.0.0/16")
BLOCK = IPv4Network("10.244.0.0/26")
HOST_ADDRESS, NODE2_ADDRESS = IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2")
MTU = veth_mtu(1500, Encapsulation.CROSS_SUBNET)
ECHO_PORT = 7009


def run(ns: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={ns}", *argv], check=check, capture_output=True,
                          text=True, timeout=30)


def ping(ns: Path, address: IPv4Address) -> bool:
    return run(ns, "ping", "-c1", "-W2", str(address), check=False).returncode == 0


@dataclass
class Node:
    kernel: LinuxKernel
    node2: Path  # another node on the host's underlay link
    tmp: Path
    containers: dict[str, Path]

    def attach(self, name: str, address: str, *, default_route: bool = True) -> RoutedEndpoint:
        path = self.tmp / f"ctr-{name}"
        self.kernel.create_netns(path)
        self.containers[name] = path
        endpoint = plan_endpoint(endpoint_id=f"{name}0123456789abcdef",
                                 address=IPv4Address(address), block=BLOCK, subnet=SUBNET,
                                 ifname="eth0", mtu=MTU, default_route=default_route)
        self.kernel.attach_routed(endpoint, path)
        return endpoint


@contextlib.contextmanager
def node_of(tmp: Path) -> Iterator[Node]:
    """The test thread's namespace (host_ns) as the node: strict rp_filter for every
    interface, forwarding on, eth0 on the underlay to node2 and its default route via node2
    (a node has one: proxy ARP answers for 169.254.1.1 because it is routed elsewhere)."""
    node2 = tmp / "node2"
    netns.create(node2)
    containers: dict[str, Path] = {}
    kernel = None
    try:
        for scope in ("all", "default"):
            sysctl.ensure(f"net.ipv4.conf.{scope}.rp_filter", "1")
        script = [f"link add eth0 type veth peer name eth0 netns {node2}",
                  f"addr add {HOST_ADDRESS}/24 dev eth0", "link set eth0 up",
                  f"route add default via {NODE2_ADDRESS}"]
        subprocess.run(["ip", "-b", "-"], input="\n".join(script) + "\n", check=True,
                       capture_output=True, text=True, timeout=30)
        run(node2, "ip", "addr", "add", f"{NODE2_ADDRESS}/24", "dev", "eth0")
        run(node2, "ip", "link", "set", "eth0", "up")
        run(node2, "ip", "link", "set", "lo", "up")
        run(node2, "ip", "route", "add", str(BLOCK), "via", str(HOST_ADDRESS))
        kernel = LinuxKernel()
        kernel.enable_forwarding()
        assert kernel.hold_block(block_route(BLOCK, SUBNET))
        yield Node(kernel, node2, tmp, containers)
    finally:
        if kernel is not None:
            kernel.close()
        for path in containers.values():
            netns.delete(path)
        netns.delete(node2)


@pytest.fixture
def node(host_ns: Path, tmp_path: Path) -> Iterator[Node]:
    with node_of(tmp_path) as made:
        yield made


def host_state() -> tuple[list[Route], list[Neighbour], set[str]]:
    with Rtnetlink() as rt:
        return (sorted(rt.routes(), key=str), sorted(rt.neighbours(), key=str),
                {link.name for link in rt.links()})


def netbay_routes() -> list[Route]:
    with Rtnetlink() as rt:
        return sorted(rt.routes(protocol=RTPROT_NETBAY), key=lambda r: r.destination)


def index_of(name: str, ns: Path | None = None) -> int:
    with Rtnetlink(ns) as rt:
        return rt.require_index(name, f"{name} missing")


def reverse_path_drops() -> int:
    """The host's IPReversePathFilter counter (packets rp_filter dropped)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    names, values = next((lines[i].split(), lines[i + 1].split())
                         for i in range(0, len(lines), 2) if lines[i].startswith("TcpExt:"))
    return int(values[names.index("IPReversePathFilter")])


def udp_source(server: Path, server_ip: IPv4Address, client: Path,
               client_ip: IPv4Address | None = None) -> str | None:
    """The source address SERVER saw on a datagram CLIENT sent it (from CLIENT_IP if given);
    None if nothing arrived."""
    with netns.entered(server):
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with netns.entered(client):
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with listener, sender:
        listener.bind((str(server_ip), ECHO_PORT))
        listener.settimeout(0.3)
        if client_ip is not None:
            sender.bind((str(client_ip), 0))
        for _ in range(3):
            sender.sendto(b"ping", (str(server_ip), ECHO_PORT))
            with contextlib.suppress(TimeoutError):
                return str(listener.recvfrom(64)[1][0])
    return None


# --- the tests -------------------------------------------------------------------------
def test_containers_reach_each_other_through_the_hosts_routing(node: Node) -> None:
    a, b = node.attach("a", "10.244.0.2"), node.attach("b", "10.244.0.3")
    ctr_a, ctr_b = node.containers["a"], node.containers["b"]
    assert ping(ctr_a, b.address.ip) and ping(ctr_b, a.address.ip)
    for ctr in (ctr_a, ctr_b):  # the gateway answered by proxy, with the host end's MAC
        with Rtnetlink(ctr) as rt:
            assert [(n.address, n.lladdr) for n in rt.neighbours(rt.require_index("eth0", ""))
                    ] == [(GATEWAY, HOST_MAC)]
    host_a, host_b = index_of(a.host_ifname), index_of(b.host_ifname)
    assert netbay_routes() == [
        Route(BLOCK, protocol=RTPROT_NETBAY, type=RTN_BLACKHOLE),
        Route(IPv4Network("10.244.0.2/32"), index=host_a, protocol=RTPROT_NETBAY),
        Route(IPv4Network("10.244.0.3/32"), index=host_b, protocol=RTPROT_NETBAY),
    ]
    with Rtnetlink() as rt:  # the host never had to ARP for its containers
        assert rt.neighbours(host_a) == [Neighbour(host_a, a.address.ip, a.mac, NUD_PERMANENT)]


def test_the_veth_ends_are_set_up_as_planned(node: Node) -> None:
    a = node.attach("a", "10.244.0.2")
    ctr = node.containers["a"]
    with Rtnetlink() as rt:
        host_end = rt.link(a.host_ifname)
        assert host_end is not None
        assert (host_end.mac, host_end.mtu, host_end.master, host_end.up) == (
            HOST_MAC, MTU, None, True)
        assert rt.addresses(host_end.index) == []
    assert {(s.key, sysctl.current(s.key, a.host_ifname) if s.tree == "net/ipv4/conf"
             else Path(f"/proc/sys/{s.tree}/{a.host_ifname}/{s.key}").read_text().strip())
            for s in a.host_sysctls} == {
        ("proxy_arp", "1"), ("proxy_delay", "0"), ("rp_filter", "1"), ("disable_ipv6", "1")}
    with Rtnetlink(ctr) as rt:
        eth0 = rt.link("eth0")
        assert eth0 is not None and (eth0.mac, eth0.mtu, eth0.up) == ("02:42:0a:f4:00:02", MTU,
                                                                       True)
        assert rt.addresses(eth0.index) == [IPv4Interface("10.244.0.2/32")]
        assert sorted(rt.routes(), key=lambda r: r.destination) == [
            Route(DEFAULT, gateway=GATEWAY, index=eth0.index),
            Route(IPv4Network("169.254.1.1/32"), index=eth0.index),
        ]
    with netns.entered(ctr):
        assert Path("/proc/sys/net/ipv6/conf/eth0/disable_ipv6").read_text().strip() == "1"


def test_detach_removes_the_veth_and_its_route_and_nothing_else(node: Node) -> None:
    node.attach("b", "10.244.0.3")
    before = host_state()
    a = node.attach("a", "10.244.0.2")
    assert ping(node.containers["a"], IPv4Address("10.244.0.3"))
    assert node.kernel.detach_routed(a.host_ifname)
    assert host_state() == before  # read at once: nothing left behind, not even for a moment
    assert [r.destination for r in netbay_routes()] == [BLOCK, IPv4Network("10.244.0.3/32")]
    with Rtnetlink(node.containers["a"]) as rt:
        assert rt.link("eth0") is None
    assert not node.kernel.detach_routed(a.host_ifname)


def test_another_node_reaches_a_container_by_its_own_address(node: Node) -> None:
    a = node.attach("a", "10.244.0.2")
    assert ping(node.node2, a.address.ip)
    assert ping(node.containers["a"], NODE2_ADDRESS)
    # no NAT either way: each side sees the other's own address
    assert udp_source(node.containers["a"], a.address.ip, node.node2) == str(NODE2_ADDRESS)
    assert udp_source(node.node2, NODE2_ADDRESS, node.containers["a"]) == str(a.address.ip)
    # an address of the block nobody holds ends in the blackhole, not back on the underlay
    assert not ping(node.node2, IPv4Address("10.244.0.9"))


def test_rp_filter_stays_strict_and_drops_a_spoofed_source(node: Node) -> None:
    a, b = node.attach("a", "10.244.0.2"), node.attach("b", "10.244.0.3")
    assert sysctl.current("net.ipv4.conf.all.rp_filter") == "1"
    assert {sysctl.current("rp_filter", e.host_ifname) for e in (a, b)} == {"1"}
    ctr_a, ctr_b = node.containers["a"], node.containers["b"]
    assert udp_source(ctr_b, b.address.ip, ctr_a) == str(a.address.ip)
    # container a sends as an address that is not routed to its veth: dropped on the host
    run(ctr_a, "ip", "addr", "add", "198.18.0.5/32", "dev", "eth0")
    drops = reverse_path_drops()
    assert udp_source(ctr_b, b.address.ip, ctr_a, IPv4Address("198.18.0.5")) is None
    assert reverse_path_drops() > drops


def test_a_second_network_without_the_default_route_routes_its_subnet_onlink(
    node: Node,
) -> None:
    a = node.attach("a", "10.244.0.2")
    node.attach("c", "10.244.0.4", default_route=False)
    with Rtnetlink(node.containers["c"]) as rt:
        eth0 = rt.require_index("eth0", "")
        assert rt.routes() == [Route(SUBNET, gateway=GATEWAY, index=eth0, onlink=True)]
    assert ping(node.containers["c"], a.address.ip)
    assert not ping(node.containers["c"], NODE2_ADDRESS)  # outside the network: no route


def test_blocks_are_held_once_and_released_alone(node: Node) -> None:
    other = BlockRoute(IPv4Network("10.244.0.64/26"))
    assert not node.kernel.hold_block(BlockRoute(BLOCK))  # the fixture's, there already
    assert node.kernel.hold_block(other)
    assert node.kernel.release_block(other) and not node.kernel.release_block(other)
    taken = IPv4Network("10.244.1.0/26")
    with Rtnetlink() as rt:
        rt.add_route(Route(taken, gateway=NODE2_ADDRESS, index=index_of("eth0")))
    with pytest.raises(KernelError) as raised:
        node.kernel.hold_block(BlockRoute(taken))
    assert (raised.value.errno, str(raised.value)) == (
        errno.EEXIST, f"cannot hold block {taken}: another route to it is in the way")
    assert not node.kernel.release_block(BlockRoute(taken))  # someone else's route stays
    assert [r.destination for r in host_state()[0]].count(taken) == 1
    assert node.kernel.release_block(BlockRoute(BLOCK))
    assert netbay_routes() == []
