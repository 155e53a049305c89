"""Routed networks' data plane (issue 15): what netbay's routed paths carry beside the same
paths made by hand and beside the overlay's. Not a test. As root:

    .venv/bin/python benchmarks/routed.py [--seconds 2] [--runs 9] [--quick]

iperf3 (TCP, one stream, container to container unless said otherwise; the figure is what
the server received) in two worlds of two nodes each, every node a namespace:

  One LAN: overlay.py's two hosts on one veth (192.0.2.1 and .2/24, MTU 1500), each with its
  default route via the other (a node has one: proxy ARP answers for 169.254.1.1 only while
  that address is routed out of another device than the veth asking).
    lan_underlay        node to node over the veth (context);
    lan_routed          netbay's routed share on each node (below), its peer's block routed
                        via the peer as BIRD installs it (`BLOCK via NODE proto 12`);
    lan_plain           the floor, by hand: in each node a veth to a container namespace, no
                        bridge (node end <subnet>.1/24, container end .2/24 and its default
                        route via .1, MTU 1500), and a static route to the other node's subnet
                        via that node;
    lan_plain_tunnel_mtu  lan_plain with the veths at the tunnel's MTU (1450), as netbay's
                        routed veths had them under encap=cross-subnet until they kept the
                        underlay's (context: what that MTU cost the plain-routed path);
    lan_overlay_hostgw  netbay's overlay (overlay.py's build_netbay), backend host-gw;
    lan_overlay_vxlan   the same, backend vxlan: what "no VXLAN to unpack" saves.
    lan_routed_fw       lan_routed in a world of its own (the same two nodes) with netbay's
                        firewall loaded on each node as it is for a routed network (the
                        record's elements for it, plan/firewall.rebuild): conntrack and a
                        few rules per packet (context: docs/design.md measures their share).
  Two subnets: nodes 198.18.1.11/24 and 198.18.2.13/24 with a router namespace between
  (198.18.1.1 and 198.18.2.1, forwarding, as tests/cluster.py has h1 and h3).
    cross_underlay      node to node through the router (context);
    cross_routed        netbay's routed share on each node, the peer's block through VXLAN;
    cross_vxlan_pair    the floor, by hand: the veths of lan_plain at MTU 1450 and overlay.py's
                        VXLAN pair (`ip link add vxp type vxlan id 3 local A remote B dev eth0
                        dstport 4789`, MTU 1450), the other node's subnet routed via the
                        other end of the pair;
    cross_overlay_vxlan netbay's overlay, backend vxlan.

netbay's routed share, as the cluster agent and the routed driver make it with the default
encap=cross-subnet: the plan of the overlay plane for it (plan_overlay with the driver's
tunnel backend, then plan/routed.routed_tunnels: only the VXLAN part, the routes to peers on
the node's subnet left to BGP) through LinuxKernel.sync_overlay, the node's /26 held as a
blackhole (LinuxKernel.hold_block), and one container attached from plan/routed.plan_endpoint
by LinuxKernel.attach_routed (veth with no bridge, /32, 169.254.1.1 by proxy ARP, MTU 1500:
the underlay's, on every veth of a cross-subnet network; what goes into the tunnel is fitted
by the node: TCP's MSS clamped by netbay's firewall, and where none is loaded, as here across,
the kernel's path MTU from the tunnel device). No BIRD runs: its routes are typed in, and
nothing else of BGP is on the data path. No nftables on any path but lan_routed_fw.

Every path is built before the first measurement, then measured RUNS times in turn, in reverse
order every other run, so drift hits every path alike (overlay.interleaved): the figures are
medians of RUNS, the ratios medians of each run's ratio. One TCP stream through veths is
CPU-bound here, so throughput is what each path costs per byte. All of it in a throwaway
namespace (sandbox.py) and namespaces under its directory; iperf3's servers are tracked by
PID and stopped (dataplane.iperf3).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from dataplane import MISSING, Target, in_ns  # noqa: E402
from netbay.drivers.routed import TUNNEL_BACKEND  # noqa: E402
from netbay.plan import firewall as fw  # noqa: E402
from netbay.plan.overlay import (  # noqa: E402
    VXLAN_OVERHEAD,
    Backend,
    OverlayNode,
    OverlayPeer,
    OverlaySettings,
    plan_overlay,
    vtep_mac,
)
from netbay.plan.routed import (  # noqa: E402
    Encapsulation,
    block_route,
    plan_endpoint,
    routed_tunnels,
    veth_mtu,
)
from overlay import (  # noqa: E402
    World,
    build_netbay,
    build_vxlan_pair,
    interleaved,
    pair_address,
    print_throughput,
    subnet_of,
)
from sandbox import sandbox  # noqa: E402

Json = dict[str, Any]
UNDERLAY_MTU = 1500
ENCAP = Encapsulation.CROSS_SUBNET  # netbay's default
ROUTED_MTU = veth_mtu(UNDERLAY_MTU, ENCAP)
TUNNEL_MTU = UNDERLAY_MTU - VXLAN_OVERHEAD
BIRD_PROTOCOL = 12  # what BIRD's routes carry in the kernel
SUBNETS = {"a": IPv4Interface("198.18.1.11/24"), "b": IPv4Interface("198.18.2.13/24")}
RATIOS = (("lan_routed", "lan_plain"), ("lan_routed_fw", "lan_plain"),
          ("lan_plain_tunnel_mtu", "lan_plain"),
          ("cross_routed", "cross_vxlan_pair"),
          ("lan_routed", "lan_overlay_hostgw"), ("lan_routed", "lan_overlay_vxlan"),
          ("cross_routed", "cross_overlay_vxlan"), ("lan_routed", "lan_underlay"),
          ("cross_routed", "cross_underlay"))


class Lan(World):
    """overlay.py's two hosts on one veth, each with its default route via the other."""

    def wire(self) -> None:
        super().wire()
        for host, other in (("a", "b"), ("b", "a")):
            in_ns(self.hosts[host], f"ip route add default via {self.addresses[other]}")


class TwoSubnets(World):
    """Two hosts on subnets of their own, a router namespace between."""

    addresses = {name: interface.ip for name, interface in SUBNETS.items()}

    def wire(self) -> None:
        router = self.namespace("router")
        in_ns(router, "ip link set lo up", "sysctl -qw net.ipv4.ip_forward=1")
        for name, interface in SUBNETS.items():
            gateway = IPv4Interface((interface.network[1], interface.network.prefixlen))
            in_ns(self.hosts[name], f"ip link add eth0 type veth peer name {name}0 netns {router}",
                  "ip link set lo up", f"ip addr add {interface} dev eth0", "ip link set eth0 up",
                  "sysctl -qw net.ipv4.ip_forward=1")
            in_ns(router, f"ip addr add {gateway} dev {name}0", f"ip link set {name}0 up")
            in_ns(self.hosts[name], f"ip route add default via {gateway.ip}")


def load_firewall(world: World, pool: str) -> None:
    """netbay's tables on every node of WORLD as they are with one routed network of POOL."""
    subnet = IPv4Network(f"{pool}.0.0/16")
    rules = fw.rebuild([fw.NetworkRules(device=None, subnets=(subnet,), pool=subnet)], [], [])
    for node in world.hosts.values():
        subprocess.run(["nsenter", f"--net={node}", "nft", "-f", "-"], input=rules, text=True,
                       check=True)


def node_id(host: str) -> str:
    return f"node-{host}"


def build_routed(world: World, pool: str, vni: int, *, same_subnet: bool) -> Target:
    """netbay's routed share on each host, one container on each (see the module's
    docstring); the route to the peer's block is BIRD's where the peer is on this subnet."""
    subnet = IPv4Network(f"{pool}.0.0/16")
    blocks = {name: IPv4Network(f"{pool}.{1 + i}.0/26") for i, name in enumerate(world.hosts)}
    settings = OverlaySettings(f"routed{vni:06}{'0' * 8}", subnet, vni=vni,
                               backend=TUNNEL_BACKEND[ENCAP])
    containers = {}
    for name, kernel in world.kernels.items():
        others = [other for other in world.hosts if other != name]
        node = OverlayNode(node_id(name), world.addresses[name], "eth0", UNDERLAY_MTU,
                           blocks[name])
        peers = [OverlayPeer(node_id(o), world.addresses[o], blocks[o], vtep_mac(node_id(o), vni),
                             same_subnet) for o in others]
        kernel.sync_overlay(routed_tunnels(plan_overlay(settings, node, peers), ENCAP,
                                           (blocks[name],)))
        kernel.hold_block(block_route(blocks[name], subnet))
        if same_subnet:
            in_ns(world.hosts[name], *(f"ip route add {blocks[o]} via {world.addresses[o]} "
                                       f"proto {BIRD_PROTOCOL}" for o in others))
        containers[name] = world.container(f"routed{vni}-{name}", kernel)
        endpoint = plan_endpoint(endpoint_id=f"ep{vni:04}{name}00000", address=blocks[name][2],
                                 block=blocks[name], subnet=subnet, ifname="eth0",
                                 mtu=ROUTED_MTU, default_route=True)
        kernel.attach_routed(endpoint, containers[name])
    return Target(containers["b"], containers["a"], str(blocks["b"][2]))


def veth_container(world: World, host: str, name: str, subnet: IPv4Network, mtu: int) -> Path:
    """A container namespace on a veth to HOST, by hand, no bridge: HOST's end NAME holds
    <subnet>.1, the container's <subnet>.2 and its default route via .1."""
    container = world.namespace(f"{name}-{host}")
    gateway = IPv4Interface((subnet[1], subnet.prefixlen))
    in_ns(world.hosts[host],
          f"ip link add {name} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {container}",
          f"ip addr add {gateway} dev {name}", f"ip link set {name} up")
    in_ns(container, "ip link set lo up", f"ip addr add {subnet[2]}/{subnet.prefixlen} dev eth0",
          "ip link set eth0 up", f"ip route add default via {gateway.ip}")
    return container


def hand_routed(world: World, pool: str, mtu: int,
                next_hop: Callable[[str], IPv4Address | str]) -> Target:
    """A veth_container on each host, the other host's subnet routed via NEXT_HOP(other)."""
    containers = {}
    for host, other in (("a", "b"), ("b", "a")):
        in_ns(world.hosts[host], f"ip route add {subnet_of(pool, other)} via {next_hop(other)}")
        containers[host] = veth_container(world, host, f"v{pool.replace('.', '')}",
                                          subnet_of(pool, host), mtu)
    return Target(containers["b"], containers["a"], str(subnet_of(pool, "b")[2]))


def build_vxlan_floor(world: World, pool: str) -> Target:
    build_vxlan_pair(world)
    return hand_routed(world, pool, TUNNEL_MTU, pair_address)


def build_paths(lan: World, across: World, guarded: World) -> dict[str, Target]:
    load_firewall(guarded, "10.254")
    return {
        "lan_underlay": Target(lan.hosts["b"], lan.hosts["a"], str(lan.addresses["b"])),
        "lan_routed": build_routed(lan, "10.250", 5, same_subnet=True),
        "lan_plain": hand_routed(lan, "10.251", UNDERLAY_MTU, lambda h: lan.addresses[h]),
        "lan_plain_tunnel_mtu": hand_routed(lan, "10.255", TUNNEL_MTU,
                                            lambda h: lan.addresses[h]),
        "lan_overlay_hostgw": build_netbay(lan, "10.246", 4, Backend.HOST_GW),
        "lan_overlay_vxlan": build_netbay(lan, "10.244", 1, Backend.VXLAN),
        "cross_underlay": Target(across.hosts["b"], across.hosts["a"],
                                 str(across.addresses["b"])),
        "cross_routed": build_routed(across, "10.252", 6, same_subnet=False),
        "cross_vxlan_pair": build_vxlan_floor(across, "10.253"),
        "cross_overlay_vxlan": build_netbay(across, "10.244", 1, Backend.VXLAN),
        "lan_routed_fw": build_routed(guarded, "10.254", 7, same_subnet=True),
    }


@contextmanager
def two_worlds() -> Iterator[dict[str, Target]]:
    with sandbox() as paths, ExitStack() as stack:
        directories = [paths.root.parent / name for name in ("lan", "across", "guarded")]
        for directory in directories:
            directory.mkdir()
        yield build_paths(Lan(directories[0], stack), TwoSubnets(directories[1], stack),
                          Lan(directories[2], stack))


def run(seconds: float = 2.0, runs: int = 9, progress: Callable[[str], None] = print) -> Json:
    result: Json = {"error": None, "underlay_mtu": UNDERLAY_MTU, "routed_mtu": ROUTED_MTU,
                    "tunnel_mtu": TUNNEL_MTU, "throughput": None}
    if shutil.which("iperf3") is None:
        result["error"] = MISSING
        return result
    with two_worlds() as targets:
        result["throughput"] = interleaved(targets, RATIOS, max(1, round(seconds)), runs,
                                           progress)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="iperf3 -t (whole seconds)")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="1 run of 1 s")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.runs = 1.0, 1
    result = run(args.seconds, args.runs)
    if result["throughput"] is None:
        print(f"throughput: {result['error']}")
        return 1
    print_throughput(result["throughput"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
