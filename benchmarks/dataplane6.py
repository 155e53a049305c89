"""The IPv6 paths of the data-plane benchmark (dataplane.py), each the twin of an IPv4 one.

  veth6        a raw veth pair between two fresh namespaces over IPv6 (the IPv6 floor);
  bridge6      container to container over IPv6 on a dual-stack netbay bridge network;
  dnat6        the LAN namespace to a container's published port at the host's IPv6 address
               on the LAN link ([2001:db8:100::1]:5205, published on both families);
  masquerade6  a container to a server in the LAN namespace over IPv6, out through NAT66;
  routed6      context, not netbay: the two veth hops routed over IPv6 by a third namespace
               with forwarding on and no nftables.

The addresses outside netbay's network are from the documentation range 2001:db8::/32, the
network's own a ULA /64; every address is set with `nodad`, so a path is usable at once
rather than after duplicate address detection. The LAN link gets its IPv6 addresses beside
its IPv4 ones: as for masquerade, the sandbox host reaches the LAN peer by the link's
connected route. The dual-stack network is one of its own, beside the IPv4 one of
bridge/dnat/masquerade, so the IPv4 paths are measured on the network they always were.

This module builds on dataplane.py's World and Target, and dataplane.py imports it when it
builds its paths.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from dataplane import (
    PORT,
    Failed,
    Pair,
    Target,
    World,
    build,
    cable,
    in_ns,
    ns_of,
)
from netbay import Container, Host, NetworkSpec, SubnetConfig
from sandbox import sh

# Only ever inside the sandbox.
LAN_HOST6, LAN_PEER6 = "2001:db8:100::1", "2001:db8:100::2"  # /64, on ext0 and lan0
BRIDGE6_NETS = (IPv4Network("10.136.0.0/24"), IPv6Network("fd00:131::/64"))
VETH6 = ("2001:db8:0:1::1", "2001:db8:0:1::2")  # /64
ROUTED6_LEFT = ("2001:db8:0:2::1", "2001:db8:0:2::2")  # router, client /64
ROUTED6_RIGHT = ("2001:db8:0:3::1", "2001:db8:0:3::2")  # router, server /64
# the dual-stack server's published port: apart from the IPv4 server's, which the host
# already publishes
PORT6 = PORT + 4


def address6(address: str, device: str) -> str:
    """The command that gives DEVICE ADDRESS/64, usable at once."""
    return f"ip -6 addr add {address}/64 dev {device} nodad"


def build_veth6(world: World) -> Target:
    client, server = world.namespace("veth6-a"), world.namespace("veth6-b")
    cable(client, "va6", server, "vb6")
    in_ns(client, "ip link set lo up", address6(VETH6[0], "va6"), "ip link set va6 up")
    in_ns(server, "ip link set lo up", address6(VETH6[1], "vb6"), "ip link set vb6 up")
    return Target(server, client, VETH6[1])


def build_routed6(world: World) -> Target:
    client, router, server = (world.namespace(f"routed6-{n}") for n in ("c", "r", "s"))
    cable(client, "rc6", router, "rl6")
    cable(router, "rr6", server, "rs6")
    in_ns(router, "ip link set lo up", address6(ROUTED6_LEFT[0], "rl6"),
          address6(ROUTED6_RIGHT[0], "rr6"), "ip link set rl6 up",
          "ip link set rr6 up", "sysctl -qw net.ipv6.conf.all.forwarding=1")
    in_ns(client, "ip link set lo up", address6(ROUTED6_LEFT[1], "rc6"),
          "ip link set rc6 up", f"ip -6 route add default via {ROUTED6_LEFT[0]}")
    in_ns(server, "ip link set lo up", address6(ROUTED6_RIGHT[1], "rs6"),
          "ip link set rs6 up", f"ip -6 route add default via {ROUTED6_RIGHT[0]}")
    return Target(server, client, ROUTED6_RIGHT[1])


def build_lan6(lan: Path) -> Path:
    """IPv6 addresses on both ends of the LAN link build_lan made (ext0 here, lan0 there)."""
    sh(address6(LAN_HOST6, "ext0"))
    in_ns(lan, address6(LAN_PEER6, "lan0"))
    return lan


def ip6_of(host: Host, container: Container) -> str:
    address = host.container_endpoints(container)[0][1].address6
    if address is None:
        raise RuntimeError(f"container {container.name} got no IPv6 address")
    return str(address.ip)


def build_pair6(world: World, network: str, publish: tuple[str, ...]) -> Pair:
    """Two containers on a dual-stack bridge network of their own; the server's IPv6 address."""
    subnets = tuple(SubnetConfig(subnet) for subnet in BRIDGE6_NETS)
    world.host.create_network(NetworkSpec(name=network, subnets=subnets, ipv6=True))
    world.networks.append(network)
    client = world.container(f"{network}-client", network)
    server = world.container(f"{network}-server", network, publish=publish)
    return Pair(ns_of(client), ns_of(server), ip6_of(world.host, server))


def build_paths6(world: World, lan: Path | Failed) -> dict[str, Target | Failed]:
    """IPv6 path key -> its target, or why it could not be built (LAN: build_lan's)."""
    lan6 = build(build_lan6, lan)
    pair = build(build_pair6, world, "bench6", (f"{PORT6}:{PORT6}",))
    return {
        "veth6": build(build_veth6, world),
        "bridge6": build(lambda p: Target(p.server_ns, p.client_ns, p.server_ip, PORT6), pair),
        "dnat6": build(lambda la, p: Target(p.server_ns, la, LAN_HOST6, PORT6), lan6, pair),
        "masquerade6": build(lambda la, p: Target(la, p.client_ns, LAN_PEER6, PORT + 2),
                             lan6, pair),
        "routed6": build(build_routed6, world),
    }
