"""A routed endpoint's data plane on this host, as plan/routed.py planned it (Calico's
workload model: no bridge, proxy ARP for 169.254.1.1 on the host end, a /32 route per
container), and the blackhole route of each block the node holds.

Netlink round trips of an attach, each request hand-encoded: the veth (host end up with its
MAC, the container end born in the container's namespace), then in the container's namespace
its lookup (which also names the host end's index: a veth's IFLA_LINK is its peer), then on
the host the permanent neighbour entry for the container and its /32 route, then in the
container: up, address, its routes. The host's part comes before the container is up, so its
first packet (the ARP for 169.254.1.1) finds the host end answering and its address routed
back to it: with rp_filter strict, a packet from an address not routed to the veth it came in
by is dropped. The neighbour entry spares the host's ARP for the container; it goes with the
veth, as the /32 route does.

Proxy ARP answers for 169.254.1.1 only while the host routes it out of another device than
the veth the request came in by: the node's default route does (Calico relies on it too). On
a node without one, no container gets its gateway resolved: doctor's to report.

A dual-stack endpoint (plan/routed.py) adds, after its IPv4 part and in the same order: the
host end's link-local fe80::ecee:eeff:feee:eeee (no DAD: the container's first neighbour
solicitation for its gateway is answered at once), the host's permanent neighbour entry and
/128 route for the container, then the container's /128 and its route via the link-local.
An IPv6 block is held as an IPv6 blackhole, as an IPv4 one is.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from ..errors import KernelError
from ..model import IPNetwork
from ..plan.routed import BlockRoute, DeviceSysctl, RoutedEndpoint
from . import netns as netns_mod
from . import sysctl
from .netlink import Netns
from .rtnetlink import Rtnetlink
from .rtnl_wire import RTN_BLACKHOLE, RTPROT_NETBAY, Route
from .rtnl_wire6 import Route6


class DeviceConf:
    """The per-device sysctl trees of the host's namespace, each held open (sysctl.ConfDir:
    a write costs the same however many namespaces there are)."""

    def __init__(self, ipv6_conf: sysctl.ConfDir) -> None:
        self._opened = [sysctl.ConfDir.open("net/ipv4/conf"),
                        sysctl.ConfDir.open("net/ipv4/neigh")]
        self._trees = {tree.tree: tree for tree in (ipv6_conf, *self._opened)}

    def close(self) -> None:
        for tree in self._opened:
            tree.close()

    def write(self, device: str, setting: DeviceSysctl) -> None:
        self._trees[setting.tree].write(device, setting.key, setting.value)


def add_veth(host: Rtnetlink, conf: DeviceConf, endpoint: RoutedEndpoint, netns: Path) -> None:
    """The pair, the host end set up as planned (the container end gets no carrier before
    the host end's settings are in: it is not up yet)."""
    host.add_veth(endpoint.host_ifname, endpoint.ifname, netns, master=None,
                  mac=endpoint.host_mac, peer_mac=endpoint.mac, mtu=endpoint.mtu)
    for setting in endpoint.host_sysctls:
        conf.write(endpoint.host_ifname, setting)


def container_ipv6(netns: Path, endpoint: RoutedEndpoint, off_by_default: bool,
                   held: sysctl.ConfDir | None = None) -> None:
    """The container end's IPv6: on and static (sysctl.STATIC_IPV6) for a dual-stack
    endpoint, else off (nothing to write where its namespace's default has it off: OFF_BY_DEFAULT,
    a namespace netbay made; HELD: its IPv6 conf directory, if held open)."""
    if endpoint.address6 is None and off_by_default:
        return
    if endpoint.address6 is not None and held is not None:
        sysctl.enable_ipv6(held, endpoint.ifname, sysctl.IPV6_ON)
        return
    with netns_mod.entered(netns):
        if endpoint.address6 is None:
            sysctl.disable_ipv6(endpoint.ifname)
        else:
            sysctl.enable_static_ipv6(endpoint.ifname, inherited=off_by_default)


def configure(host: Rtnetlink, inside: Rtnetlink, endpoint: RoutedEndpoint, netns: Path) -> None:
    """The host's neighbour entry and /32 route for the container, then the container end
    (INSIDE: the container's namespace, NETNS) up with its address and routes."""
    link = inside.link(endpoint.ifname)
    if link is None or link.parent is None:
        raise KernelError(f"{endpoint.ifname} did not appear in {netns}", errno.ENODEV)
    host_index, index = link.parent, link.index
    host.ensure_neighbour(host_index, endpoint.address.ip, endpoint.mac)
    # EEXIST if the address is routed already: a container elsewhere on this node has it
    host.add_route(Route(endpoint.host_route.destination, index=host_index,
                         protocol=RTPROT_NETBAY))
    inside.set_up(index)
    inside.ensure_address(index, endpoint.address)
    for planned in endpoint.container_routes:
        route = Route(planned.destination, gateway=planned.gateway, index=index,
                      onlink=planned.onlink)
        _tolerating_eexist(lambda: inside.add_route(route))  # noqa: B023 (called at once)
    if endpoint.address6 is not None:
        _configure6(host, inside, endpoint, host_index, index)


def _configure6(host: Rtnetlink, inside: Rtnetlink, endpoint: RoutedEndpoint,
                host_index: int, index: int) -> None:
    """The dual-stack part of configure (the host end's IPv6 settings are in already)."""
    assert endpoint.address6 is not None and endpoint.host_route6 is not None
    if endpoint.host_link_local is not None:
        host.ensure_address(host_index, endpoint.host_link_local)
    host.ensure_neighbour6(host_index, endpoint.address6.ip, endpoint.mac)
    host.add_route6(Route6(endpoint.host_route6.destination, index=host_index,
                           protocol=RTPROT_NETBAY))
    inside.ensure_address(index, endpoint.address6)
    for planned in endpoint.container_routes6:
        route = Route6(planned.destination, gateway=planned.gateway, index=index)
        _tolerating_eexist(lambda: inside.add_route6(route))  # noqa: B023 (called at once)


def _tolerating_eexist(add: Callable[[], None]) -> None:
    try:
        add()
    except KernelError as exc:
        if exc.errno != errno.EEXIST:  # a retried attach
            raise


def _blackhole(held: BlockRoute) -> Route | Route6:
    if isinstance(held.block, IPv4Network):
        return Route(held.block, protocol=RTPROT_NETBAY, type=RTN_BLACKHOLE)
    return Route6(held.block, protocol=RTPROT_NETBAY, type=RTN_BLACKHOLE)


def hold_block(host: Rtnetlink, held: BlockRoute) -> bool:
    """`ip route add blackhole BLOCK proto 57` (of either family); False if it was there
    already. EEXIST if another route to the block (not netbay's blackhole) stands in the
    way: left alone."""
    route = _blackhole(held)
    try:
        if isinstance(route, Route):
            host.add_route(route)
        else:
            host.add_route6(route)
        return True
    except KernelError as exc:
        if exc.errno != errno.EEXIST:
            raise
    held_now = (host.routes(protocol=RTPROT_NETBAY) if isinstance(route, Route)
                else host.routes6(protocol=RTPROT_NETBAY))
    if route in held_now:
        return False
    raise KernelError(f"cannot hold block {held.block}: another route to it is in the way",
                      errno.EEXIST)


def release_block(host: Rtnetlink, held: BlockRoute) -> bool:
    """The block's blackhole gone (only netbay's: the delete names its type and protocol);
    False if it was not there."""
    route = _blackhole(held)
    if isinstance(route, Route):
        return host.remove_route(route)
    return host.remove_route6(route)


RTPROT_BIRD = 12  # linux/rtnetlink.h: what BIRD's kernel protocol installs with


def remove_learnt_routes(pools: Iterable[IPNetwork], netns: Netns = None) -> int:
    """Remove the routes BIRD installed (proto bird) to destinations inside POOLS: what a
    BIRD stopped for good leaves (its kernel protocol persists them across restarts). A
    route of another BIRD, outside netbay's pools, is left alone. The number removed."""
    pools4 = [p for p in pools if isinstance(p, IPv4Network)]
    pools6 = [p for p in pools if isinstance(p, IPv6Network)]
    removed = 0
    with Rtnetlink(netns) as rtnl:
        for route in rtnl.routes(protocol=RTPROT_BIRD):
            if any(route.destination.subnet_of(p) for p in pools4):
                removed += rtnl.remove_route(route)
        for route6 in rtnl.routes6(protocol=RTPROT_BIRD) if pools6 else ():
            if any(route6.destination.subnet_of(p) for p in pools6):
                removed += rtnl.remove_route6(route6)
    return removed
