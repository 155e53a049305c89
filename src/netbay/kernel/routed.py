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
"""

from __future__ import annotations

import errno
from pathlib import Path

from ..errors import KernelError
from ..plan.routed import BlockRoute, DeviceSysctl, RoutedEndpoint
from .rtnetlink import Rtnetlink
from .rtnl_wire import RTN_BLACKHOLE, RTPROT_NETBAY, Route
from .sysctl import ConfDir


class DeviceConf:
    """The per-device sysctl trees of the host's namespace, each held open (sysctl.ConfDir:
    a write costs the same however many namespaces there are)."""

    def __init__(self, ipv6_conf: ConfDir) -> None:
        self._opened = [ConfDir.open("net/ipv4/conf"), ConfDir.open("net/ipv4/neigh")]
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
        try:
            inside.add_route(route)
        except KernelError as exc:
            if exc.errno != errno.EEXIST:  # a retried attach
                raise


def _blackhole(held: BlockRoute) -> Route:
    return Route(held.block, protocol=RTPROT_NETBAY, type=RTN_BLACKHOLE)


def hold_block(host: Rtnetlink, held: BlockRoute) -> bool:
    """`ip route add blackhole BLOCK proto 57`; False if it was there already. EEXIST if
    another route to the block (not netbay's blackhole) stands in the way: left alone."""
    route = _blackhole(held)
    try:
        host.add_route(route)
        return True
    except KernelError as exc:
        if exc.errno != errno.EEXIST:
            raise
    if route in host.routes(protocol=RTPROT_NETBAY):
        return False
    raise KernelError(f"cannot hold block {held.block}: another route to it is in the way",
                      errno.EEXIST)


def release_block(host: Rtnetlink, held: BlockRoute) -> bool:
    """The block's blackhole gone (only netbay's: the delete names its type and protocol);
    False if it was not there."""
    return host.remove_route(_blackhole(held))
