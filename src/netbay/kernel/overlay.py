"""Make one node's kernel hold what plan/overlay.py planned for an overlay network, by diff.

    result = sync_overlay(rtnl, plan_overlay(settings, node, peers))

What is this network's (and nothing else): routes of netbay's protocol (RTPROT_NETBAY) to
destinations in the network's pool or through its VXLAN device, and the neighbours and FDB
entries of that device. Of those, what the plan does not back is removed, what it lacks is
added and what differs is replaced in place, so a peer whose address or VTEP MAC changed
leaves nothing stale. New entries go in as flannel orders them (neighbour, FDB, then the
route, so the kernel never has to resolve the gateway); stale ones leave in the reverse order
once the new ones are in. With nothing to change a sync is three dumps (routes, and the
device's neighbours and FDB entries, both filtered by the kernel) and a few lookups: no
writes, so a reconciler can run it on a timer.

A dual-stack network (the plan has pool6) gets the same for IPv6: routes of netbay's in
pool6 or through the device, the device's IPv6 neighbours, and IPv6 on the device (no
link-local address: addr_gen_mode none, set before the device first comes up) holding the
plan's address6 alone; three more dumps. An IPv4-only plan makes exactly the requests it
made before IPv6 existed: nothing of IPv6 is read or written.
"""

from __future__ import annotations

import errno
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Generic, TypeVar

from ..errors import KernelError
from ..model import IPNetwork
from ..plan.overlay import BridgePlan, OverlayState, VxlanPlan
from .rtnetlink import Rtnetlink
from .rtnl_wire import RTPROT_NETBAY, FdbEntry, Neighbour, Route
from .rtnl_wire6 import IN6_ADDR_GEN_MODE_NONE, Neighbour6, Route6
from .sysctl import BRIDGE_IPV6, ConfDir, enable_ipv6

T = TypeVar("T", Neighbour, FdbEntry, Route, Neighbour6, Route6)
Entry = Neighbour | FdbEntry | Route | Neighbour6 | Route6


@dataclass(frozen=True)
class OverlaySync:
    """What a sync did: each change one object written, in the order made ("add route
    10.244.3.0/24 via 10.244.3.0 dev nbx0123456789ab onlink": one netlink write; making a
    link takes two or three); each conflict a planned object that someone else's object
    stands in the way of (left alone)."""

    changes: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()


@dataclass
class _Journal:
    names: dict[int, str]  # ifindex -> name, for the descriptions
    changes: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def describe(self, item: Entry) -> str:
        if isinstance(item, Neighbour | Neighbour6):
            return f"neighbour {item.address} lladdr {item.lladdr} dev {self._name(item.index)}"
        if isinstance(item, FdbEntry):
            return f"fdb {item.lladdr} dst {item.destination} dev {self._name(item.index)}"
        via = f" via {item.gateway}" if item.gateway is not None else ""
        onlink = " onlink" if item.onlink else ""
        return f"route {item.destination}{via} dev {self._name(item.index)}{onlink}"

    def _name(self, index: int | None) -> str:
        return self.names.get(index, f"#{index}") if index is not None else "?"

    def result(self) -> OverlaySync:
        return OverlaySync(tuple(self.changes), tuple(self.conflicts))


@dataclass
class _Diff(Generic[T]):
    """Writes that make HAVE into WANT: (wanted, the stale entry it replaces in place or
    None), then the stale entries to remove."""

    writes: list[tuple[T, T | None]]
    stale: list[T]


def _diff(have: Iterable[T], want: Sequence[T], key: Callable[[T], Hashable]) -> _Diff[T]:
    present = set(have)
    wanted = set(want)
    stale_by_key: defaultdict[Hashable, list[T]] = defaultdict(list)
    for item in present - wanted:
        stale_by_key[key(item)].append(item)
    writes: list[tuple[T, T | None]] = []
    for item in want:
        if item in present:
            continue
        same_key = stale_by_key.get(key(item), [])
        # one stale entry under the same key is rewritten by the replace itself
        writes.append((item, same_key.pop() if len(same_key) == 1 else None))
    return _Diff(writes, [item for items in stale_by_key.values() for item in items])


def sync_overlay(
    rtnl: Rtnetlink, desired: OverlayState, conf: ConfDir | None = None
) -> OverlaySync:
    """Make the namespace of RTNL hold DESIRED; see the module's docstring. CONF: that
    namespace's net/ipv6/conf, to switch IPv6 on where a dual-stack plan needs it (None:
    left as the namespace's default has it)."""
    underlay = rtnl.require_index(desired.underlay,
                                  f"underlay link {desired.underlay} does not exist")
    journal = _Journal({underlay: desired.underlay})
    wanted: dict[int, set[IPv4Interface]] = {}
    bridge = None
    if desired.bridge is not None:
        bridge = _ensure_bridge(rtnl, desired.bridge, journal)
        wanted[bridge] = {desired.bridge.gateway}
    tunnel = _ensure_vxlan(rtnl, desired.vxlan, underlay, journal, conf)
    if desired.vxlan is not None and tunnel is not None:
        wanted[tunnel] = {desired.vxlan.address}
    _sync_addresses(rtnl, wanted, journal)
    if desired.pool6 is not None:
        _sync_addresses6(rtnl, desired, bridge, tunnel, journal, conf)
    _sync_peers(rtnl, desired, tunnel, journal)
    return journal.result()


def remove_overlay(rtnl: Rtnetlink, desired: OverlayState) -> OverlaySync:
    """Remove what sync_overlay made for the network: its routes, its VXLAN device (with its
    neighbours and FDB entries) and its bridge; what is gone already is success."""
    tunnel_name = desired.vxlan.name if desired.vxlan is not None else None
    tunnel = rtnl.index(tunnel_name) if tunnel_name is not None else None
    underlay = rtnl.index(desired.underlay)
    journal = _Journal({i: name for i, name in ((tunnel, tunnel_name),
                                                 (underlay, desired.underlay))
                        if i is not None and name is not None})
    for route in rtnl.routes(protocol=RTPROT_NETBAY):
        if _in_scope(route, desired, tunnel) and rtnl.remove_route(route):
            journal.changes.append(f"remove {journal.describe(route)}")
    for route6 in rtnl.routes6(protocol=RTPROT_NETBAY) if desired.pool6 is not None else []:
        if _in_scope(route6, desired, tunnel) and rtnl.remove_route6(route6):
            journal.changes.append(f"remove {journal.describe(route6)}")
    bridge = [desired.bridge.name] if desired.bridge is not None else []
    for name in ([tunnel_name] if tunnel_name else []) + bridge:
        if rtnl.delete_link(name):
            journal.changes.append(f"remove link {name}")
    return journal.result()


def _ensure_bridge(rtnl: Rtnetlink, plan: BridgePlan, journal: _Journal) -> int:
    index, created = rtnl.ensure_bridge(plan.name, plan.mtu)
    journal.names[index] = plan.name
    if created:
        journal.changes.append(f"add link {plan.name} (bridge, mtu {plan.mtu})")
    return index


def _ensure_vxlan(
    rtnl: Rtnetlink, plan: VxlanPlan | None, underlay: int, journal: _Journal,
    conf: ConfDir | None = None,
) -> int | None:
    """The index of the network's VXLAN device, made (or made again, when a setting the plan
    fixes differs) if need be; None when the plan has none."""
    if plan is None:
        return None
    found = rtnl.vxlan(plan.name)
    if found is not None:
        link, info = found
        expected = (plan.vni, plan.local, underlay, plan.port, False, plan.mac, plan.mtu)
        if (info.vni, info.local, info.underlay, info.port, info.learning, link.mac,
                link.mtu) == expected:
            journal.names[link.index] = plan.name
            if not link.up:
                rtnl.set_up(link.index)
                journal.changes.append(f"set link {plan.name} up")
            return link.index
        rtnl.delete_link(plan.name)  # takes its neighbours, FDB entries and routes along
        journal.changes.append(f"remove link {plan.name} (its settings changed)")
    static6 = plan.address6 is not None  # IPv6 on, without a link-local address
    index = rtnl.add_vxlan(plan.name, vni=plan.vni, local=plan.local, underlay=plan.underlay,
                           port=plan.port, mtu=plan.mtu, mac=plan.mac, up=not static6)
    journal.names[index] = plan.name
    journal.changes.append(f"add link {plan.name} (vxlan id {plan.vni} local {plan.local} "
                           f"dev {plan.underlay} dstport {plan.port} nolearning "
                           f"address {plan.mac} mtu {plan.mtu}{' addrgenmode none' * static6})")
    if static6:
        _static_ipv6(rtnl, index, plan.name, conf)
        rtnl.set_up(index)
    return index


def _static_ipv6(rtnl: Rtnetlink, index: int, name: str, conf: ConfDir | None) -> None:
    """IPv6 on the VXLAN device NAME with no address of the kernel's making: no link-local
    (so nothing to solicit for), no duplicate address detection, no router's advertisement;
    its one address is the plan's, added after."""
    rtnl.set_addr_gen_mode(index, IN6_ADDR_GEN_MODE_NONE)
    if conf is not None:
        enable_ipv6(conf, name, BRIDGE_IPV6)  # the settings of a bridge holding a gateway6


def _sync_addresses(
    rtnl: Rtnetlink, wanted: dict[int, set[IPv4Interface]], journal: _Journal
) -> None:
    """Exactly the planned addresses on netbay's own devices: an old gateway left on the
    bridge would keep a connected route to a subnet that is now a peer's."""
    for index, addresses in wanted.items():
        have = set(rtnl.addresses(index))
        for address in sorted(addresses - have):
            rtnl.ensure_address(index, address)
            journal.changes.append(f"add address {address} dev {journal.names[index]}")
        for address in sorted(have - addresses):
            rtnl.remove_address(index, address)
            journal.changes.append(f"remove address {address} dev {journal.names[index]}")


def _sync_addresses6(
    rtnl: Rtnetlink, desired: OverlayState, bridge: int | None, tunnel: int | None,
    journal: _Journal, conf: ConfDir | None,
) -> None:
    """The plan's IPv6 addresses: the bridge's gateway6 (other addresses of the bridge in
    pool6 go: an old block's gateway; its link-local stays), and on the VXLAN device its
    address6 alone (a link-local the kernel made before addr_gen_mode was none goes too)."""
    assert desired.pool6 is not None
    pool6 = desired.pool6
    wanted: list[tuple[int, IPv6Interface | None, bool]] = []
    if bridge is not None and desired.bridge is not None:
        wanted.append((bridge, desired.bridge.gateway6, False))
    if tunnel is not None and desired.vxlan is not None:
        wanted.append((tunnel, desired.vxlan.address6, True))
    for index, address, exact in wanted:
        have = {a.address for a in rtnl.addresses6(index)}
        if address is not None and address not in have:
            if exact:
                _static_ipv6(rtnl, index, journal.names[index], conf)
            elif conf is not None:
                enable_ipv6(conf, journal.names[index], BRIDGE_IPV6)
            rtnl.ensure_address(index, address)
            journal.changes.append(f"add address {address} dev {journal.names[index]}")
        for old in sorted(have - {address}):
            if exact or old.network.subnet_of(pool6):
                rtnl.remove_address(index, old)
                journal.changes.append(f"remove address {old} dev {journal.names[index]}")


def _in_scope(route: Route | Route6, desired: OverlayState, tunnel: int | None) -> bool:
    # subnet_of() in other words, at a third of its cost (paid for every route of netbay's)
    pool: IPNetwork | None = (desired.pool if isinstance(route.destination, IPv4Network)
                              else desired.pool6)
    inside = pool is not None and _within(route.destination, pool)
    if inside and any(_within(route.destination, own) for own in desired.own_blocks):
        inside = False
    return inside or (tunnel is not None and route.index == tunnel)


def _within(destination: IPNetwork, block: IPNetwork) -> bool:
    """DESTINATION is BLOCK or inside it (False across families)."""
    return (destination.version == block.version and destination.prefixlen >= block.prefixlen
            and destination.network_address in block)


@dataclass
class _PeerDiffs:
    """The writes and removals of one sync's peer entries, of both families."""

    routes: _Diff[Route]
    routes6: _Diff[Route6]
    neighbours: _Diff[Neighbour]
    neighbours6: _Diff[Neighbour6]
    fdb: _Diff[FdbEntry]


def _planned_routes(
    desired: OverlayState, index: dict[str, int]
) -> tuple[list[Route], list[Route6]]:
    """The plan's routes as the kernel reports them, IPv4's and IPv6's."""
    routes: list[Route] = []
    routes6: list[Route6] = []
    for r in desired.routes:
        if isinstance(r.destination, IPv4Network) and isinstance(r.gateway, IPv4Address):
            routes.append(Route(r.destination, gateway=r.gateway, index=index[r.device],
                                protocol=RTPROT_NETBAY, onlink=r.onlink))
        elif isinstance(r.destination, IPv6Network) and isinstance(r.gateway, IPv6Address):
            routes6.append(Route6(r.destination, r.gateway, index[r.device], RTPROT_NETBAY,
                                  onlink=r.onlink))
    return routes, routes6


def _peer_diffs(rtnl: Rtnetlink, desired: OverlayState, tunnel: int | None,
                index: dict[str, int]) -> _PeerDiffs:
    routes, routes6 = _planned_routes(desired, index)
    diffs = _PeerDiffs(_diff(
        [r for r in rtnl.routes(protocol=RTPROT_NETBAY) if _in_scope(r, desired, tunnel)],
        routes, key=lambda r: r.destination),
        _Diff([], []), _Diff([], []), _Diff([], []), _Diff([], []))
    if tunnel is not None:
        diffs.neighbours = _diff(rtnl.neighbours(tunnel), [
            Neighbour(tunnel, n.address, n.lladdr) for n in desired.neighbours
            if isinstance(n.address, IPv4Address)], key=lambda n: n.address)
        diffs.fdb = _diff([e for e in rtnl.fdb(tunnel) if e.destination is not None],
                          [FdbEntry(tunnel, f.lladdr, f.destination) for f in desired.fdb],
                          key=lambda e: e.lladdr)
    if desired.pool6 is None:
        return diffs
    diffs.routes6 = _diff(
        [r for r in rtnl.routes6(protocol=RTPROT_NETBAY) if _in_scope(r, desired, tunnel)],
        routes6, key=lambda r: r.destination)
    if tunnel is not None:
        diffs.neighbours6 = _diff(  # the kernel's own multicast entries are not ours
            [n for n in rtnl.neighbours6(tunnel) if not n.address.is_multicast],
            [Neighbour6(tunnel, n.address, n.lladdr) for n in desired.neighbours
             if not isinstance(n.address, IPv4Address)], key=lambda n: n.address)
    return diffs


def _sync_peers(
    rtnl: Rtnetlink, desired: OverlayState, tunnel: int | None, journal: _Journal
) -> None:
    diffs = _peer_diffs(rtnl, desired, tunnel, {name: i for i, name in journal.names.items()})
    for neighbour, old_neighbour in diffs.neighbours.writes:
        assert neighbour.lladdr is not None
        rtnl.ensure_neighbour(neighbour.index, neighbour.address, neighbour.lladdr)
        _wrote(journal, neighbour, old_neighbour)
    for neighbour6, old_neighbour6 in diffs.neighbours6.writes:
        assert neighbour6.lladdr is not None
        rtnl.ensure_neighbour6(neighbour6.index, neighbour6.address, neighbour6.lladdr)
        _wrote(journal, neighbour6, old_neighbour6)
    for entry, old_entry in diffs.fdb.writes:
        assert entry.destination is not None
        rtnl.ensure_fdb(entry.index, entry.lladdr, entry.destination)
        _wrote(journal, entry, old_entry)
    for route, old_route in diffs.routes.writes:
        _set_route(rtnl, route, old_route, journal)
    for route6, old_route6 in diffs.routes6.writes:
        _set_route(rtnl, route6, old_route6, journal)
    _remove_stale(rtnl, diffs, journal)


def _wrote(journal: _Journal, item: Entry, old: object) -> None:
    journal.changes.append(f"{'replace' if old is not None else 'add'} {journal.describe(item)}")


def _set_route(
    rtnl: Rtnetlink, route: Route | Route6, old: Route | Route6 | None, journal: _Journal
) -> None:
    """Add ROUTE, or replace OLD (netbay's, to the same destination) with it. A route to the
    destination that is not netbay's stays: a conflict, reported."""
    try:
        if isinstance(route, Route):
            rtnl.add_route(route, replace=old is not None)
        else:
            rtnl.add_route6(route, replace=old is not None)
    except KernelError as exc:
        if exc.errno != errno.EEXIST:
            raise
        journal.conflicts.append(f"{journal.describe(route)}: a route to "
                                 f"{route.destination} that is not netbay's is in the way")
        return
    _wrote(journal, route, old)


def _remove_stale(rtnl: Rtnetlink, diffs: _PeerDiffs, journal: _Journal) -> None:
    """Routes first, so that no route is left pointing at a gateway whose entries are gone."""
    for route in diffs.routes.stale:
        if rtnl.remove_route(route):
            journal.changes.append(f"remove {journal.describe(route)}")
    for route6 in diffs.routes6.stale:
        if rtnl.remove_route6(route6):
            journal.changes.append(f"remove {journal.describe(route6)}")
    for entry in diffs.fdb.stale:
        assert entry.destination is not None
        if rtnl.delete_fdb(entry.index, entry.lladdr, entry.destination):
            journal.changes.append(f"remove {journal.describe(entry)}")
    for neighbour in diffs.neighbours.stale:
        if rtnl.remove_neighbour(neighbour.index, neighbour.address):
            journal.changes.append(f"remove {journal.describe(neighbour)}")
    for neighbour6 in diffs.neighbours6.stale:
        if rtnl.remove_neighbour6(neighbour6.index, neighbour6.address):
            journal.changes.append(f"remove {journal.describe(neighbour6)}")
