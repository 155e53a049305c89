"""A routed network dual stack, with real kernel objects and real packets: a dual-stack
container attached the routed way (LinuxKernel.attach_routed from plan/routed.py) in a
throwaway namespace, reaching the host and reached from it by IPv6; and two real BIRD 2
daemons exchanging IPv6 blocks over their IPv4 session (plan/bird6.py's ipv6 channel), each
kernel routing the other's IPv6 block to the other's IPv6 underlay address. All traffic stays
in namespaces made here; every BIRD is stopped by its PID, every namespace removed.

    host (block fd00:244::/122, underlay 2001:db8::1)  nbv<a> --- ctr a fd00:244::2/128
    fabric: bridge seg   node a 192.0.2.11 2001:db8:2::11   node b 192.0.2.12 2001:db8:2::12
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path

import pytest
from test_bird import ASN, Node, _build_node, ip, session_with

from helpers import wait_until
from netbay.kernel import netns, sysctl
from netbay.kernel.linux import LinuxKernel
from netbay.kernel.rtnetlink import Rtnetlink
from netbay.kernel.rtnl_wire import RTN_BLACKHOLE, RTPROT_NETBAY
from netbay.kernel.rtnl_wire6 import Route6
from netbay.plan.bird import RTPROT_BIRD, BgpSettings, MeshPeer, render
from netbay.plan.routed import (
    GATEWAY6,
    HOST_LINK_LOCAL,
    Encapsulation,
    RoutedEndpoint,
    block_route,
    plan_endpoint,
    veth_mtu,
)

pytestmark = [pytest.mark.kernel]

SUBNET, BLOCK = IPv4Network("10.244.0.0/16"), IPv4Network("10.244.0.0/26")
SUBNET6, BLOCK6 = IPv6Network("fd00:244::/48"), IPv6Network("fd00:244::/122")
HOST6 = IPv6Address("2001:db8::1")  # the host's own global address (its underlay's)
MTU = veth_mtu(1500, Encapsulation.CROSS_SUBNET, ipv6=True)
POOL6 = IPv6Network("fd00:245::/48")
CONVERGED = 20.0


def run(ns: Path | None, *argv: str) -> subprocess.CompletedProcess[str]:
    prefix = [] if ns is None else ["nsenter", f"--net={ns}"]
    return subprocess.run([*prefix, *argv], check=False, capture_output=True, text=True,
                          timeout=30)


def ping6(ns: Path | None, address: IPv6Address, source: IPv6Address | None = None) -> bool:
    via = [] if source is None else ["-I", str(source)]
    return run(ns, "ping", "-6", "-c1", "-W2", *via, str(address)).returncode == 0


@dataclass
class Host:
    kernel: LinuxKernel
    tmp: Path
    containers: list[Path]

    def attach(self, name: str, address: str, address6: str) -> tuple[RoutedEndpoint, Path]:
        path = self.tmp / f"ctr-{name}"
        self.kernel.create_netns(path)
        self.containers.append(path)
        endpoint = plan_endpoint(
            endpoint_id=f"{name}0123456789abcdef", address=IPv4Address(address), block=BLOCK,
            subnet=SUBNET, ifname="eth0", mtu=MTU, default_route=True,
            address6=IPv6Address(address6), block6=BLOCK6, subnet6=SUBNET6)
        self.kernel.attach_routed(endpoint, path)
        return endpoint, path


@pytest.fixture
def host(host_ns: Path, tmp_path: Path) -> Iterator[Host]:
    """The test thread's namespace as the node: forwarding on for both families, its own
    global IPv6 address on an underlay link, and the IPv6 block held."""
    kernel, containers = LinuxKernel(), []
    try:
        subprocess.run(["ip", "-b", "-"], input="link add underlay type veth peer name far\n"
                       f"addr add {HOST6}/64 dev underlay nodad\nlink set underlay up\n",
                       check=True, capture_output=True, text=True, timeout=30)
        kernel.enable_forwarding()
        kernel.enable_forwarding(6)
        assert kernel.hold_block(block_route(BLOCK6, SUBNET6))
        yield Host(kernel, tmp_path, containers)
    finally:
        kernel.close()
        for path in containers:
            netns.delete(path)


def test_a_dual_stack_container_is_routed_by_ipv6_both_ways(host: Host) -> None:
    endpoint, path = host.attach("a", "10.244.0.2", "fd00:244::2")
    with Rtnetlink(path) as inside:
        eth0 = inside.require_index("eth0", "eth0 missing")
        mine = [a for a in inside.addresses6(eth0) if a.address.ip == IPv6Address("fd00:244::2")]
        assert [(a.address, a.tentative) for a in mine] == [
            (IPv6Interface("fd00:244::2/128"), False)]
        defaults = [r for r in inside.routes6() if r.destination.prefixlen == 0]
        assert [(r.gateway, r.index) for r in defaults] == [(GATEWAY6, eth0)]
    with Rtnetlink(None) as rt:
        veth = rt.require_index(endpoint.host_ifname, "host end missing")
        assert [(a.address, a.tentative) for a in rt.addresses6(veth)] == [
            (HOST_LINK_LOCAL, False)]  # no address of its own making: addr_gen_mode none
        netbays = rt.routes6(protocol=RTPROT_NETBAY)
        assert Route6(IPv6Network("fd00:244::2/128"), index=veth,
                      protocol=RTPROT_NETBAY) in netbays
        assert Route6(BLOCK6, protocol=RTPROT_NETBAY, type=RTN_BLACKHOLE) in netbays
        assert IPv4Network("10.244.0.2/32") in {r.destination for r in rt.routes(
            protocol=RTPROT_NETBAY)}  # the IPv4 part as before
    for key, value in (("disable_ipv6", "0"), ("addr_gen_mode", "1"), ("accept_ra", "0")):
        assert sysctl.current(f"net.ipv6.conf.{endpoint.host_ifname}.{key}") == value
    assert ping6(None, IPv6Address("fd00:244::2"), source=HOST6)
    assert ping6(path, HOST6)


def test_the_ipv6_block_is_released_and_an_address_nobody_holds_ends_in_it(host: Host) -> None:
    assert not host.kernel.hold_block(block_route(BLOCK6, SUBNET6))  # there already
    assert not ping6(None, IPv6Address("fd00:244::9"), source=HOST6)
    assert host.kernel.release_block(block_route(BLOCK6, SUBNET6))
    with Rtnetlink(None) as rt:
        assert all(r.destination != BLOCK6 for r in rt.routes6(protocol=RTPROT_NETBAY))
    assert not host.kernel.release_block(block_route(BLOCK6, SUBNET6))


def test_a_detached_endpoint_takes_its_ipv6_route_along(host: Host) -> None:
    endpoint, _ = host.attach("b", "10.244.0.3", "fd00:244::3")
    assert host.kernel.detach_routed(endpoint.host_ifname)
    with Rtnetlink(None) as rt:
        assert all(r.destination != IPv6Network("fd00:244::3/128") for r in rt.routes6())


# --- BGP: IPv6 blocks over an IPv4 session ---------------------------------------------
def address6_of(node: Node) -> IPv6Address:
    return IPv6Address(f"2001:db8:2::{node.address.packed[3]}")


def block6_of(node: Node) -> IPv6Network:
    return IPv6Network(f"fd00:245:0:{node.address.packed[3]}::/122")


def settings6(node: Node, peer: Node) -> BgpSettings:
    return BgpSettings(node.address, ASN, (node.block,),
                       (MeshPeer(f"node-{peer.name}", peer.address, ASN),), connect_delay=1,
                       address6=address6_of(node), blocks6=(block6_of(node),), pools6=(POOL6,))


@pytest.fixture
def pair(host_ns: Path, tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    fabric = tmp_path / "fabric"
    netns.create(fabric)
    nodes: list[Node] = []
    try:
        ip(fabric, "link add seg type bridge", "link set seg up")
        for number, name in enumerate(("a", "b")):
            node = _build_node(tmp_path, fabric, number, name)
            nodes.append(node)
            ip(node.ns, f"addr add {address6_of(node)}/64 dev eth0 nodad")
        a, b = nodes
        for node, peer in ((a, b), (b, a)):
            node.bird.apply(render(settings6(node, peer)))
            with netns.entered(node.ns):
                node.bird.start()
        yield a, b
    finally:
        for node in nodes:
            pid = node.bird.pid
            node.bird.stop()
            assert pid is None or not Path(f"/proc/{pid}").exists()
            netns.delete(node.ns)
        netns.delete(fabric)


def learned6(node: Node) -> set[Route6]:
    with Rtnetlink(node.ns) as rt:
        return set(rt.routes6(protocol=RTPROT_BIRD))


def test_two_birds_exchange_ipv6_blocks_over_their_ipv4_session(
        pair: tuple[Node, Node]) -> None:
    a, b = pair
    wanted = {}
    for node, peer in ((a, b), (b, a)):
        with Rtnetlink(node.ns) as rt:
            eth0 = rt.require_index("eth0", "eth0 missing")
        wanted[node.name] = Route6(block6_of(peer), gateway=address6_of(peer), index=eth0,
                                   protocol=RTPROT_BIRD)
    for node in (a, b):
        wait_until(lambda node=node: wanted[node.name] in learned6(node),  # type: ignore[misc]
                   CONVERGED, f"node {node.name} routing to its peer's IPv6 block")
        assert learned6(node) == {wanted[node.name]}  # its own block never comes back
    session = session_with(a, b)
    assert session.established
    # counted over both channels: one IPv4 and one IPv6 block each way
    assert (session.imported, session.exported) == (2, 2)
    assert "ipv6 {" in a.bird.config.read_text()
