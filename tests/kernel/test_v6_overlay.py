"""The overlay's dual-stack data plane with real packets: two hosts as network namespaces on
one veth underlay (IPv4 and IPv6 addresses, no DAD), each with its bridge and a container
holding a v4 and a v6 address of its node's blocks, programmed by LinuxKernel.sync_overlay
from plan_overlay. IPv6 crosses over VXLAN (the tunnel's counters move) or host-gw via the
peer's IPv6 underlay address. All traffic stays in namespaces made here.

    host a  eth0 192.0.2.11/24 2001:db8::11/64  ====  eth0 192.0.2.12/24 2001:db8::12/64  host b
            10.244.1.0/24 fd12:3456:789a:1::/64        10.244.2.0/24 fd12:3456:789a:2::/64
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
from test_overlay import BRIDGE, NETWORK_ID, VNI, VXLAN, Host, index_of, ip, run, tx_packets

from netbay.kernel import netlink, netns, overlay, sysctl
from netbay.kernel.linux import LinuxKernel
from netbay.kernel.overlay import OverlaySync
from netbay.kernel.rtnetlink import Rtnetlink
from netbay.kernel.rtnl_wire import (
    NDMSG,
    NUD_PERMANENT,
    RTM_DELNEIGH,
    RTM_NEWNEIGH,
    RTNLGRP_IPV4_ROUTE,
    RTNLGRP_LINK,
    RTNLGRP_NEIGH,
    RTPROT_NETBAY,
)
from netbay.kernel.rtnl_wire6 import RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE, Neighbour6, Route6
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

POOL, POOL6 = IPv4Network("10.244.0.0/16"), IPv6Network("fd12:3456:789a::/48")
UNDERLAY_MTU = 1500


@dataclass
class Pair:
    a: Host
    b: Host
    settings: OverlaySettings

    def plan(self, host: Host, leave_out: bool = False) -> OverlayState:
        other = self.b if host is self.a else self.a
        return plan_overlay(self.settings, host.node, [] if leave_out else peers_of(other))

    def sync(self, host: Host, leave_out: bool = False) -> OverlaySync:
        return host.kernel.sync_overlay(self.plan(host, leave_out))


def peers_of(host: Host) -> list[OverlayPeer]:
    """HOST's two blocks as the other host sees them (the same segment)."""
    node, mac = host.node, vtep_mac(host.node.node_id, VNI)
    assert node.subnet6 is not None
    return [OverlayPeer(node.node_id, node.address, block, mac, True, node.address6)
            for block in (node.subnet, node.subnet6)]


def v6_of(host: Host) -> IPv6Address:
    assert host.node.subnet6 is not None
    return host.node.subnet6.network_address + 2


def _build_host(tmp: Path, made: list[Path], number: int, address6: bool) -> Host:
    name = "ab"[number - 1]
    path, container = tmp / f"host-{name}", tmp / f"ctr-{name}"
    netns.create(path)
    made.append(path)
    with netns.entered(path):
        kernel = LinuxKernel()
        kernel.enable_forwarding()
        kernel.enable_forwarding(6)
    node = OverlayNode(f"node-{name}", IPv4Address(f"192.0.2.1{number}"), "eth0", UNDERLAY_MTU,
                       IPv4Network(f"10.244.{number}.0/24"),
                       IPv6Network(f"fd12:3456:789a:{number}::/64"),
                       IPv6Address(f"2001:db8::1{number}") if address6 else None)
    return Host(name, path, container, kernel, node, 1)


def _cable(a: Host, b: Host) -> None:
    ip(a.ns, f"link add eth0 mtu {UNDERLAY_MTU} type veth peer name eth0 "
             f"mtu {UNDERLAY_MTU} netns {b.ns}")
    for host in (a, b):
        ip(host.ns, "link set lo up", f"addr add {host.node.address}/24 dev eth0",
           f"addr add {host.node.address6 or IPv6Address('2001:db8::99')}/64 dev eth0 nodad",
           "link set eth0 up")


def _attach(host: Host, state: OverlayState) -> None:
    assert state.bridge is not None and state.bridge.gateway6 is not None
    host.kernel.create_netns(host.container)
    host.kernel.attach_veth(
        bridge=BRIDGE, bridge_key=NETWORK_ID, host_ifname=f"nbv{host.name}", ifname="eth0",
        netns=host.container, mac=None, mtu=state.veth_mtu,
        address=IPv4Interface((host.container_ip, 24)), gateway=state.bridge.gateway.ip,
        address6=IPv6Interface((v6_of(host), 64)), gateway6=state.bridge.gateway6.ip)


@contextlib.contextmanager
def pair_of(tmp: Path, backend: Backend, address6: bool = True) -> Iterator[Pair]:
    made: list[Path] = []
    hosts: list[Host] = []
    try:
        hosts = [_build_host(tmp, made, n, address6) for n in (1, 2)]
        _cable(*hosts)
        world = Pair(hosts[0], hosts[1], OverlaySettings(NETWORK_ID, POOL, vni=VNI,
                                                         backend=backend, pool6=POOL6))
        for host in hosts:
            assert world.sync(host).conflicts == ()
            _attach(host, world.plan(host))
        yield world
    finally:
        for host in hosts:
            host.kernel.close()
            netns.delete(host.container)
        for path in reversed(made):
            netns.delete(path)


def ping6(client: Host, server: Host, timeout: float = 5.0) -> bool:
    """An ICMPv6 echo from CLIENT's container to SERVER's answered within TIMEOUT."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run(client.container, "ping", "-6", "-c1", "-W1", str(v6_of(server)),
               check=False).returncode == 0:
            return True
    return False


def rx_packets(host: Host, device: str) -> int:
    (shown,) = json.loads(run(host.ns, "ip", "-s", "-j", "link", "show", device).stdout)
    return int(shown["stats64"]["rx"]["packets"])


def writes_within(events: netlink.NetlinkSocket, seconds: float) -> list[netlink.Message]:
    """The notifications EVENTS gets within SECONDS, but for the kernel's own neighbour
    updates: sync writes only permanent entries, while the bridge learns the containers' MACs
    (their IPv6 link-local chatter) and the underlay's ND ages its entries by itself."""
    found: list[netlink.Message] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        datagram = events.receive(left)
        if datagram is None:
            break
        found += [m for m in netlink.messages(datagram) if not _kernels_own(m)]
    return found


def _kernels_own(message: netlink.Message) -> bool:
    if message.kind not in (RTM_NEWNEIGH, RTM_DELNEIGH):
        return False
    _, _, state, _, _ = NDMSG.unpack_from(message.payload)
    return not state & NUD_PERMANENT


def kernel_state6(host: Host) -> tuple[list[Route6], list[Neighbour6]]:
    with Rtnetlink(host.ns) as rt:
        tunnel = rt.index(VXLAN)
        found = [] if tunnel is None else rt.neighbours6(tunnel)
        return (rt.routes6(protocol=RTPROT_NETBAY),
                [n for n in found if not n.address.is_multicast])


# --- the tests -------------------------------------------------------------------------------
def test_v6_crosses_the_vxlan_tunnel(host_ns: Path, tmp_path: Path) -> None:
    with pair_of(tmp_path, Backend.VXLAN) as world:
        a, b = world.a, world.b
        tunnel = index_of(a, VXLAN)
        vtep6 = IPv6Address("fd12:3456:789a:2::")
        assert kernel_state6(a) == (
            [Route6(IPv6Network("fd12:3456:789a:2::/64"), gateway=vtep6, index=tunnel,
                    protocol=RTPROT_NETBAY, onlink=True)],
            [Neighbour6(tunnel, vtep6, vtep_mac("node-b", VNI), NUD_PERMANENT)])
        with Rtnetlink(a.ns) as rt:  # its own block's /128 alone: no link-local address
            assert [x.address for x in rt.addresses6(tunnel)] == [
                IPv6Interface("fd12:3456:789a:1::/128")]
        sent, received = tx_packets(a, VXLAN), rx_packets(b, VXLAN)
        assert ping6(a, b)
        # the echo left a's tunnel and came out of b's (its reply went back the same way)
        assert tx_packets(a, VXLAN) >= sent + 1 and rx_packets(b, VXLAN) >= received + 1
        assert rx_packets(a, VXLAN) >= 1


def test_v6_goes_host_gw_via_the_peers_address6(host_ns: Path, tmp_path: Path) -> None:
    with pair_of(tmp_path, Backend.AUTO) as world:
        a, b = world.a, world.b
        eth0 = index_of(a, "eth0")
        routes6, neighbours6 = kernel_state6(a)
        assert routes6 == [Route6(IPv6Network("fd12:3456:789a:2::/64"),
                                  gateway=IPv6Address("2001:db8::12"), index=eth0,
                                  protocol=RTPROT_NETBAY)]
        assert neighbours6 == []
        shown = run(a.ns, "ip", "-6", "route", "show", "proto", str(RTPROT_NETBAY)).stdout
        assert "fd12:3456:789a:2::/64 via 2001:db8::12 dev eth0" in shown
        before = tx_packets(a, VXLAN)
        assert ping6(a, b) and ping6(b, a)
        assert tx_packets(a, VXLAN) == before  # host-gw: the tunnel carried nothing


def test_auto_tunnels_v6_without_ipv6_underlay_addresses(host_ns: Path, tmp_path: Path) -> None:
    with pair_of(tmp_path, Backend.AUTO, address6=False) as world:
        a, b = world.a, world.b
        routes6, _ = kernel_state6(a)
        assert [(r.destination, r.index, r.onlink) for r in routes6] == [
            (IPv6Network("fd12:3456:789a:2::/64"), index_of(a, VXLAN), True)]
        before = tx_packets(a, VXLAN)
        assert ping6(a, b)
        assert tx_packets(a, VXLAN) > before


def test_a_second_dual_stack_sync_writes_nothing(host_ns: Path, tmp_path: Path) -> None:
    with pair_of(tmp_path, Backend.VXLAN) as world:
        a = world.a
        before = kernel_state6(a)
        groups = (RTNLGRP_LINK, RTNLGRP_NEIGH, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE,
                  RTNLGRP_IPV6_IFADDR)
        with netlink.route_socket(a.ns, groups=groups) as events:
            assert world.sync(a) == OverlaySync()
            assert writes_within(events, 0.5) == []  # not one notification: nothing written
        assert kernel_state6(a) == before


def test_stale_v6_entries_go_and_others_stay(host_ns: Path, tmp_path: Path) -> None:
    with pair_of(tmp_path, Backend.VXLAN) as world:
        a = world.a
        ip(a.ns, f"route add fd12:3456:789a:7::/64 via fd12:3456:789a:7:: dev {VXLAN} "
                 f"onlink proto {RTPROT_NETBAY}",
           f"neigh add fd12:3456:789a:7:: lladdr 02:00:00:00:00:07 dev {VXLAN} nud permanent",
           "route add fd12:3456:789a:9::/64 via 2001:db8::12 proto static",
           f"route add fd99::/64 via 2001:db8::12 proto {RTPROT_NETBAY}")
        assert world.sync(a).changes == (
            f"remove route fd12:3456:789a:7::/64 via fd12:3456:789a:7:: dev {VXLAN} onlink",
            f"remove neighbour fd12:3456:789a:7:: lladdr 02:00:00:00:00:07 dev {VXLAN}")
        shown = run(a.ns, "ip", "-6", "route", "show").stdout
        assert "fd12:3456:789a:9::/64 via 2001:db8::12 dev eth0 proto static" in shown
        assert f"fd99::/64 via 2001:db8::12 dev eth0 proto {RTPROT_NETBAY}" in shown
        mac = vtep_mac("node-b", VNI)
        assert world.sync(a, leave_out=True).changes == (
            f"remove route 10.244.2.0/24 via 10.244.2.0 dev {VXLAN} onlink",
            f"remove route fd12:3456:789a:2::/64 via fd12:3456:789a:2:: dev {VXLAN} onlink",
            f"remove fdb {mac} dst 192.0.2.12 dev {VXLAN}",
            f"remove neighbour 10.244.2.0 lladdr {mac} dev {VXLAN}",
            f"remove neighbour fd12:3456:789a:2:: lladdr {mac} dev {VXLAN}")
        routes6, neighbours6 = kernel_state6(a)
        assert [r.destination for r in routes6] == [IPv6Network("fd99::/64")]  # not ours
        assert neighbours6 == []
        assert not ping6(a, world.b, timeout=1.5)


def test_remove_overlay_takes_the_v6_routes_too(host_ns: Path, tmp_path: Path) -> None:
    with pair_of(tmp_path, Backend.AUTO) as world:
        a = world.a
        a.kernel.remove_link(f"nbv{a.name}")
        result = a.kernel.remove_overlay(world.plan(a))
        assert result.changes == (
            "remove route 10.244.2.0/24 via 192.0.2.12 dev eth0",
            "remove route fd12:3456:789a:2::/64 via 2001:db8::12 dev eth0",
            f"remove link {VXLAN}", f"remove link {BRIDGE}")
        assert kernel_state6(a) == ([], [])


def test_ipv6_is_switched_on_for_the_tunnel_where_the_default_has_it_off(
    host_ns: Path, tmp_path: Path
) -> None:
    """A namespace whose new links start with IPv6 off: given its conf directory, the sync
    switches IPv6 on for the tunnel (still without a link-local address) and the bridge."""
    path, far = tmp_path / "host-off", tmp_path / "far"
    made = [path, far]
    try:
        for made_path in made:
            netns.create(made_path)
        ip(path, f"link add eth0 type veth peer name eth0 netns {far}",
           "addr add 192.0.2.11/24 dev eth0", "link set eth0 up")
        run(path, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        node = OverlayNode("node-a", IPv4Address("192.0.2.11"), "eth0", UNDERLAY_MTU,
                           IPv4Network("10.244.1.0/24"), IPv6Network("fd12:3456:789a:1::/64"))
        state = plan_overlay(OverlaySettings(NETWORK_ID, POOL, vni=VNI, pool6=POOL6), node, [])
        with netns.entered(path):
            conf = sysctl.ConfDir.open()
        with Rtnetlink(path) as rt:
            try:
                changes = overlay.sync_overlay(rt, state, conf).changes
            finally:
                conf.close()
            tunnel = rt.require_index(VXLAN, "no tunnel")
            assert [x.address for x in rt.addresses6(tunnel)] == [
                IPv6Interface("fd12:3456:789a:1::/128")]
            bridge = rt.require_index(BRIDGE, "no bridge")
            assert IPv6Interface("fd12:3456:789a:1::1/64") in {
                x.address for x in rt.addresses6(bridge)}
        assert f"add address fd12:3456:789a:1::/128 dev {VXLAN}" in changes
        shown = run(path, "sysctl", "-n", f"net.ipv6.conf.{VXLAN}.disable_ipv6",
                    f"net.ipv6.conf.{VXLAN}.addr_gen_mode").stdout.split()
        assert shown == ["0", "1"]
    finally:
        for made_path in reversed(made):
            netns.delete(made_path)


def test_the_underlay_tells_an_on_link_ipv6_peer_from_one_behind_a_router(
    host_ns: Path, tmp_path: Path,
) -> None:
    """host-gw for a v6 block needs the peer's address6 on-link (engine/overlay.py passes
    an off-link one as none): the underlay's IPv6 subnets decide."""
    with pair_of(tmp_path, Backend.AUTO) as world:
        a, b = world.a, world.b
        underlay = a.kernel.underlay(a.node.address)
        assert b.node.address6 is not None and underlay.device == "eth0"
        assert underlay.same_segment(b.node.address6)
        assert not underlay.same_segment(IPv6Address("2001:db8:1::12"))
        assert not underlay.same_segment(IPv6Address("fe80::12"))  # link-local: no subnet
        assert underlay.same_segment(b.node.address)
