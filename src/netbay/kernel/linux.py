"""LinuxKernel: netbay's kernel work on a Linux host (the engine's Kernel protocol; tests use
netbay.testing.FakeKernel). One rtnetlink socket for the host namespace, the bridge index
cache, the veth attach/detach steps of the hot path, and the containers' namespaces."""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Iterable
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv6Address,
    IPv6Interface,
)
from pathlib import Path

from ..errors import KernelError
from ..model import IPNetwork
from ..plan.overlay import OverlayState
from ..plan.routed import BlockRoute, RoutedEndpoint
from ..reconcile.state import Observed, WantedRoute, WantedSysctl
from . import netns as netns_mod
from . import overlay, routed, snapshot, sysctl
from .rtnetlink import Rtnetlink
from .rtnl_wire import RT_SCOPE_HOST
from .rtnl_wire6 import global_networks
from .uplinks import Underlay, underlay_of

FORWARDING6 = "net.ipv6.conf.all.forwarding"
HELD_CONF = 4096  # containers' IPv6 conf directories held open (a descriptor each)


class LinuxKernel:
    """All kernel changes the engine makes go through here; safe to share between threads."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._host = Rtnetlink()
        # the reconciler's reads: a socket and a lock of their own, so that comparing the
        # kernel with the record never waits for, or holds up, an attach
        self._observer = Rtnetlink()
        self._observing = threading.Lock()
        self._ipv6_conf = sysctl.ConfDir.open()
        self._device_conf = routed.DeviceConf(self._ipv6_conf)
        self._bridge_index: dict[str, int] = {}
        # namespaces made here with IPv6 off (and static) by default, so an interface born
        # in them needs no sysctl but the one that turns IPv6 on, written through their
        # IPv6 conf directory opened at creation (None past HELD_CONF): looking it up again
        # from inside costs O(namespaces), 0.2 ms with 1,000 (forgotten on restart: then
        # every write is done the long way). An open directory does not keep a namespace.
        self._made: dict[str, sysctl.ConfDir | None] = {}

    def close(self) -> None:
        self._host.close()
        self._observer.close()
        self._ipv6_conf.close()
        self._device_conf.close()
        for held in self._made.values():
            if held is not None:
                held.close()

    # --- networks --------------------------------------------------------------------
    def ensure_bridge(
        self, key: str, name: str, mtu: int | None,
        addresses: Iterable[IPv4Interface | IPv6Interface],
    ) -> bool:
        """The bridge NAME up with ADDRESSES; IPv6 on it (static, sysctl.BRIDGE_IPV6) only
        when one of them is an IPv6 address."""
        with self.lock:
            index, created = self._host.ensure_bridge(name, mtu)
            wanted = list(addresses)
            if any(isinstance(a, IPv6Interface) for a in wanted):
                sysctl.enable_ipv6(self._ipv6_conf, name, sysctl.BRIDGE_IPV6)
            for address in wanted:
                self._host.ensure_address(index, address)
            self._bridge_index[key] = index
            return created

    def forget_bridge(self, key: str) -> None:
        self._bridge_index.pop(key, None)

    def enable_forwarding(self, version: int = 4) -> None:
        """Routing between the host's links for IPv4, or (VERSION 6) IPv6: that one also
        stops links with accept_ra=1 taking router advertisements (accept_ra=2 does)."""
        sysctl.ensure("net.ipv4.ip_forward" if version == 4 else FORWARDING6, "1")

    def allow_localnet(self, device: str) -> None:
        """Let 127.0.0.1 -> published port be routed out of DEVICE (then masqueraded). The
        firewall drops anything to 127.0.0.0/8 that did not come from lo, so containers and
        neighbours cannot use this to reach the host's loopback services."""
        sysctl.ensure_interface(device, "route_localnet", "1")

    def remove_link(self, name: str) -> bool:
        with self.lock:
            return self._host.remove_link(name)

    def link_exists(self, name: str) -> bool:
        with self.lock:
            return self._host.link(name) is not None

    def link_names(self) -> set[str]:
        with self.lock:
            return {link.name for link in self._host.links()}

    def bridge_ports(self, bridge: str) -> set[str]:
        with self.lock:
            links = self._host.links()
        index = next((link.index for link in links if link.name == bridge), None)
        return {link.name for link in links if index and link.master == index}

    def taken_networks(self) -> list[IPNetwork]:
        """Subnets in use on the host: its addresses' networks and its routes' destinations,
        of both families (IPv6: what a default ULA /64 must skip; link-local, multicast,
        loopback and the default route left out)."""
        with self.lock:
            nets: list[IPNetwork] = [a.network for a in self._host.addresses()
                                     if not a.ip.is_loopback]
            # the main table's destinations, the default route left out
            nets.extend(r.destination for r in self._host.routes() if r.destination.prefixlen)
            nets.extend(global_networks([a.address.network for a in self._host.addresses6()]
                                 + [r.destination for r in self._host.routes6()]))
        return nets

    # --- overlay networks ------------------------------------------------------------
    def sync_overlay(self, desired: OverlayState) -> overlay.OverlaySync:
        """This host's objects of one overlay network made to match DESIRED, by diff
        (kernel/overlay.py); no writes when they match."""
        with self.lock:
            return overlay.sync_overlay(self._host, desired, self._ipv6_conf)

    def remove_overlay(self, desired: OverlayState) -> overlay.OverlaySync:
        with self.lock:
            return overlay.remove_overlay(self._host, desired)

    def learn_neighbour(
        self, bridge_key: str, bridge: str, address: IPv4Address, mac: str
    ) -> None:
        """The host knows at once where a container just attached to BRIDGE is: a packet
        that arrived before the container existed left the host's entry for ADDRESS
        resolving, and the kernel would retry only a second later."""
        with self.lock:
            self._host.learn_neighbour(self._bridge(bridge_key, bridge), address, mac)

    def underlay(self, address: IPv4Address) -> Underlay:
        """The link holding ADDRESS (this node's underlay address): kernel/uplinks.py."""
        with self.lock:
            return underlay_of(self._host, address)

    # --- endpoints (the hot path) -----------------------------------------------------
    def _bridge(self, key: str, name: str) -> int:
        index = self._bridge_index.get(key)
        if index is None:
            index = self._host.require_index(name, f"bridge {name} does not exist")
            self._bridge_index[key] = index
        return index

    def attach_veth(
        self,
        *,
        bridge: str,
        bridge_key: str,
        host_ifname: str,
        ifname: str,
        netns: Path,
        mac: str | None,
        mtu: int | None,
        address: IPv4Interface | None,
        gateway: IPv4Address | None,
        address6: IPv6Interface | None = None,
        gateway6: IPv6Address | None = None,
    ) -> None:
        """veth pair with the host end on the bridge, the other end configured in NETNS.

        Netlink round trips: veth add (enslaved, up, peer born in the netns), then in the
        container namespace: index lookup, up, address, default route. IPv6 is switched off
        on both ends before the pair gets its carrier (no autoconfiguration flooding the
        bridge, no per-port IPv6 timers whose work grows with the ports): the host end
        through the held-open conf directory, the container end by its namespace's default
        when netbay made the namespace. With ADDRESS6: see _attach_dual."""
        if address6 is not None:
            self._attach_dual(bridge, bridge_key, host_ifname, ifname, netns, mac, mtu,
                              [a for a in (address, address6) if a is not None],
                              gateway, gateway6)
            return
        with self.lock, Rtnetlink(netns) as inside:
            self._add_veth(bridge, bridge_key, host_ifname, ifname, netns, mac, mtu)
            self._disable_ipv6_inside(netns, ifname)
            index = inside.require_index(ifname, f"{ifname} did not appear in {netns}")
            inside.set_up(index)
            if address is not None:
                inside.ensure_address(index, address)
            if gateway is not None:
                inside.ensure_default_route(gateway)

    def _add_veth(
        self, bridge: str, bridge_key: str, host_ifname: str, ifname: str, netns: Path,
        mac: str | None, mtu: int | None,
    ) -> None:
        """The pair, its host end on the bridge with IPv6 off (a bridge port: its own
        addresses would serve nothing)."""
        try:
            self._host.add_veth(host_ifname, ifname, netns,
                                master=self._bridge(bridge_key, bridge), peer_mac=mac, mtu=mtu)
        except KernelError as exc:
            if exc.errno != errno.ENODEV:
                raise
            self.forget_bridge(bridge_key)  # stale cached index: the bridge was re-made
            self._host.add_veth(host_ifname, ifname, netns,
                                master=self._bridge(bridge_key, bridge), peer_mac=mac, mtu=mtu)
        self._ipv6_conf.write(host_ifname, "disable_ipv6", "1")

    def _attach_dual(
        self, bridge: str, bridge_key: str, host_ifname: str, ifname: str, netns: Path,
        mac: str | None, mtu: int | None, addresses: list[IPv4Interface | IPv6Interface],
        gateway: IPv4Address | None, gateway6: IPv6Address | None,
    ) -> None:
        """An endpoint with IPv6: the host end's stays off, the container end's is on and
        static (sysctl.STATIC_IPV6). Two netlink round trips: the veth, then one batch in
        the namespace (rtnl_wire6.link_setup), whose index and socket come from the one
        visit the sysctls need."""
        with self.lock:
            self._add_veth(bridge, bridge_key, host_ifname, ifname, netns, mac, mtu)
            with netns_mod.entered(netns):
                self._ipv6_on(netns, ifname)
                try:
                    index = socket.if_nametoindex(ifname)
                except OSError as exc:
                    raise KernelError(f"{ifname} not in {netns}", errno.ENODEV) from exc
                inside = Rtnetlink(None)
            with inside:
                inside.configure(index, addresses, gateway, gateway6)

    def _ipv6_on(self, netns: Path, ifname: str) -> None:
        """IPv6 on and static on IFNAME, from inside NETNS: one write where netbay made
        NETNS (its default has the rest), through its held conf directory if there is one."""
        held = self._made.get(str(netns))
        if held is not None:
            sysctl.enable_ipv6(held, ifname, sysctl.IPV6_ON)
        else:
            sysctl.enable_static_ipv6(ifname, inherited=str(netns) in self._made)

    def _disable_ipv6_inside(self, netns: Path, ifname: str) -> None:
        if str(netns) not in self._made:  # a runtime's namespace, or made before
            with netns_mod.entered(netns):  # this daemon started
                sysctl.disable_ipv6(ifname)

    def attach_routed(self, endpoint: RoutedEndpoint, netns: Path) -> None:
        """A veth with no bridge, its container end in NETNS, as plan/routed.py planned:
        see kernel/routed.py (eight netlink round trips and four sysctl writes, v4-only)."""
        with self.lock, Rtnetlink(netns) as inside:
            routed.add_veth(self._host, self._device_conf, endpoint, netns)
            routed.container_ipv6(netns, endpoint, str(netns) in self._made,
                                  self._made.get(str(netns)))
            routed.configure(self._host, inside, endpoint, netns)

    def detach_routed(self, host_ifname: str) -> bool:
        """The endpoint's veth gone, and with it the host's /32 route and neighbour entry
        for the container (the kernel drops them before it unlists the link, so they are
        gone when this returns); False if there was no such veth."""
        return self.remove_link(host_ifname)

    def hold_block(self, held: BlockRoute) -> bool:
        """The block's blackhole route, for BGP to export (see kernel/routed.py)."""
        with self.lock:
            return routed.hold_block(self._host, held)

    def release_block(self, held: BlockRoute) -> bool:
        with self.lock:
            return routed.release_block(self._host, held)

    def hold_local_address(self, address: IPv4Address) -> None:
        """ADDRESS/32 on lo: a local address the host answers on whichever link a packet
        came in by (a routed network's DNS, for containers that have no bridge to reach).
        Scope host: the kernel never picks it as the source towards a link with no address
        of its own (a routed veth, a tunnel), as it would a global one on lo."""
        with self.lock:
            self._host.ensure_address(self._loopback(), IPv4Interface((address, 32)),
                                      RT_SCOPE_HOST)

    def release_local_address(self, address: IPv4Address) -> bool:
        with self.lock:
            return self._host.remove_address(self._loopback(), IPv4Interface((address, 32)))

    def _loopback(self) -> int:
        return self._host.require_index("lo", "the host has no loopback device")

    def set_hairpin(self, port: str) -> None:
        with self.lock:
            self._host.set_hairpin(port)

    # --- the reconciler --------------------------------------------------------------
    def observe(self, sysctls: Iterable[tuple[str, str | None]]) -> Observed:
        """The host namespace as kernel/snapshot.py reads it, without the kernel lock."""
        with self._observing:
            return snapshot.snapshot(self._observer, sysctls)

    def set_link(
        self, name: str, *, master: str | None = None, up: bool = False,
        mtu: int | None = None, mac: str | None = None,
    ) -> None:
        """Change the existing link NAME: plug it into the bridge MASTER, set it up, its MTU,
        its MAC."""
        with self.lock:
            index = self._host.require_index(name, f"{name} does not exist")
            bridge = None
            if master is not None:
                bridge = self._host.require_index(master, f"bridge {master} does not exist")
            if bridge is not None or mtu is not None or mac is not None:
                self._host.set_link(index, master=bridge, mtu=mtu, mac=mac)
            if up:
                self._host.set_up(index)

    def add_address(self, name: str, address: IPv4Interface | IPv6Interface) -> None:
        """ADDRESS put back on the link NAME (an IPv6 one: with IPv6 on there, static, as
        ensure_bridge set it: disable_ipv6=1 would have taken the address away)."""
        with self.lock:
            index = self._host.require_index(name, f"{name} does not exist")
            if isinstance(address, IPv6Interface):
                sysctl.enable_ipv6(self._ipv6_conf, name, sysctl.BRIDGE_IPV6)
            self._host.ensure_address(index, address)

    def add_route(self, route: WantedRoute) -> None:
        with self.lock:
            index = self._host.require_index(route.device, f"{route.device} does not exist")
            snapshot.put_route(self._host, index, route)

    def write_sysctl(self, wanted: WantedSysctl) -> None:
        if wanted.device:
            sysctl.ensure_interface(wanted.device, wanted.key, wanted.value)
        else:
            sysctl.ensure(wanted.key, wanted.value)

    # --- namespaces -------------------------------------------------------------------
    def create_netns(self, path: Path) -> None:
        """A container's namespace: lo up, and IPv6 off for every interface born in it
        later (lo keeps ::1), and static once turned on (sysctl.STATIC_DEFAULT: a
        dual-stack attach turns it on with one write, not seven). Its one /proc/sys lookup
        from inside the new namespace costs O(namespaces) (see sysctl.ConfDir), here rather
        than in every attach."""
        netns_mod.create(path)
        with Rtnetlink(path) as inside:
            inside.set_up(1)  # lo
        with netns_mod.entered(path):
            conf = sysctl.ConfDir.open()
        sysctl.enable_ipv6(conf, "default", sysctl.STATIC_DEFAULT)
        if len(self._made) >= HELD_CONF:
            conf.close()
            self._made[str(path)] = None
        else:
            self._made[str(path)] = conf

    def delete_netns(self, path: Path) -> None:
        with self.lock:  # not while an attach writes through it
            held = self._made.pop(str(path), None)
        if held is not None:
            held.close()
        netns_mod.delete(path)

    def ensure_netns_dir(self, directory: Path) -> None:
        netns_mod.ensure_shared_dir(directory)

    def loopback_up(self, path: Path) -> None:
        with Rtnetlink(path) as inside:
            inside.set_up(1)

    def move_to_host(self, path: Path, ifname: str) -> None:
        """IFNAME of the namespace at PATH moved into netbayd's own namespace (the main
        thread's: a worker may be inside another one for a moment)."""
        with self.lock, Rtnetlink(path) as inside:
            inside.move_link(ifname, "/proc/self/ns/net")

    def addresses_in(self, path: Path, ifname: str) -> set[IPv4Interface] | None:
        """The addresses of IFNAME inside the namespace at PATH (None: no such link)."""
        with Rtnetlink(path) as inside:
            index = inside.index(ifname)
            if index is None:
                return None
            return set(inside.addresses(index))

    def addresses6_in(self, path: Path, ifname: str) -> set[IPv6Interface] | None:
        """The IPv6 addresses of IFNAME inside the namespace at PATH (None: no such link)."""
        with Rtnetlink(path) as inside:
            index = inside.index(ifname)
            if index is None:
                return None
            return {a.address for a in inside.addresses6(index)}

