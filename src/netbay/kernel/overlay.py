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
"""

from __future__ import annotations

import errno
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Interface
from typing import Generic, TypeVar

from ..errors import KernelError
from ..plan.overlay import BridgePlan, OverlayState, VxlanPlan
from .rtnetlink import Rtnetlink
from .rtnl_wire import RTPROT_NETBAY, FdbEntry, Neighbour, Route

T = TypeVar("T", Neighbour, FdbEntry, Route)


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

    def describe(self, item: Neighbour | FdbEntry | Route) -> str:
        if isinstance(item, Neighbour):
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


def sync_overlay(rtnl: Rtnetlink, desired: OverlayState) -> OverlaySync:
    """Make the namespace of RTNL hold DESIRED; see the module's docstring."""
    underlay = rtnl.require_index(desired.underlay,
                                  f"underlay link {desired.underlay} does not exist")
    journal = _Journal({underlay: desired.underlay})
    wanted: dict[int, set[IPv4Interface]] = {}
    if desired.bridge is not None:
        wanted[_ensure_bridge(rtnl, desired.bridge, journal)] = {desired.bridge.gateway}
    tunnel = _ensure_vxlan(rtnl, desired.vxlan, underlay, journal)
    if desired.vxlan is not None and tunnel is not None:
        wanted[tunnel] = {desired.vxlan.address}
    _sync_addresses(rtnl, wanted, journal)
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
    rtnl: Rtnetlink, plan: VxlanPlan | None, underlay: int, journal: _Journal
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
    index = rtnl.add_vxlan(plan.name, vni=plan.vni, local=plan.local, underlay=plan.underlay,
                           port=plan.port, mtu=plan.mtu, mac=plan.mac)
    journal.names[index] = plan.name
    journal.changes.append(f"add link {plan.name} (vxlan id {plan.vni} local {plan.local} "
                           f"dev {plan.underlay} dstport {plan.port} nolearning "
                           f"address {plan.mac} mtu {plan.mtu})")
    return index


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


def _in_scope(route: Route, desired: OverlayState, tunnel: int | None) -> bool:
    # subnet_of() in other words, at a third of its cost (paid for every route of netbay's)
    inside = (route.destination.prefixlen >= desired.pool.prefixlen
              and route.destination.network_address in desired.pool)
    if inside and any(route.destination.prefixlen >= own.prefixlen
                      and route.destination.network_address in own for own in desired.own_blocks):
        inside = False
    return inside or (tunnel is not None and route.index == tunnel)


def _sync_peers(
    rtnl: Rtnetlink, desired: OverlayState, tunnel: int | None, journal: _Journal
) -> None:
    index = {name: i for i, name in journal.names.items()}
    routes = _diff(
        [r for r in rtnl.routes(protocol=RTPROT_NETBAY) if _in_scope(r, desired, tunnel)],
        [Route(r.destination, gateway=r.gateway, index=index[r.device], protocol=RTPROT_NETBAY,
               onlink=r.onlink) for r in desired.routes],
        key=lambda r: r.destination)
    neighbours: _Diff[Neighbour] = _Diff([], [])
    fdb: _Diff[FdbEntry] = _Diff([], [])
    if tunnel is not None:
        neighbours = _diff(rtnl.neighbours(tunnel),
                           [Neighbour(tunnel, n.address, n.lladdr) for n in desired.neighbours],
                           key=lambda n: n.address)
        fdb = _diff([e for e in rtnl.fdb(tunnel) if e.destination is not None],
                    [FdbEntry(tunnel, f.lladdr, f.destination) for f in desired.fdb],
                    key=lambda e: e.lladdr)
    for neighbour, old_neighbour in neighbours.writes:
        assert neighbour.lladdr is not None
        rtnl.ensure_neighbour(neighbour.index, neighbour.address, neighbour.lladdr)
        _wrote(journal, neighbour, old_neighbour)
    for entry, old_entry in fdb.writes:
        assert entry.destination is not None
        rtnl.ensure_fdb(entry.index, entry.lladdr, entry.destination)
        _wrote(journal, entry, old_entry)
    for route, old_route in routes.writes:
        _set_route(rtnl, route, old_route, journal)
    _remove_stale(rtnl, routes.stale, fdb.stale, neighbours.stale, journal)


def _wrote(journal: _Journal, item: Neighbour | FdbEntry | Route, old: object) -> None:
    journal.changes.append(f"{'replace' if old is not None else 'add'} {journal.describe(item)}")


def _set_route(rtnl: Rtnetlink, route: Route, old: Route | None, journal: _Journal) -> None:
    """Add ROUTE, or replace OLD (netbay's, to the same destination) with it. A route to the
    destination that is not netbay's stays: a conflict, reported."""
    try:
        rtnl.add_route(route, replace=old is not None)
    except KernelError as exc:
        if exc.errno != errno.EEXIST:
            raise
        journal.conflicts.append(f"{journal.describe(route)}: a route to "
                                 f"{route.destination} that is not netbay's is in the way")
        return
    _wrote(journal, route, old)


def _remove_stale(
    rtnl: Rtnetlink, routes: list[Route], fdb: list[FdbEntry], neighbours: list[Neighbour],
    journal: _Journal,
) -> None:
    """Routes first, so that no route is left pointing at a gateway whose entries are gone."""
    for route in routes:
        if rtnl.remove_route(route):
            journal.changes.append(f"remove {journal.describe(route)}")
    for entry in fdb:
        assert entry.destination is not None
        if rtnl.delete_fdb(entry.index, entry.lladdr, entry.destination):
            journal.changes.append(f"remove {journal.describe(entry)}")
    for neighbour in neighbours:
        if rtnl.remove_neighbour(neighbour.index, neighbour.address):
            journal.changes.append(f"remove {journal.describe(neighbour)}")
