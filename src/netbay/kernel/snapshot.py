"""The reconciler's side of the kernel: one snapshot of the host namespace as reconcile/
state.py's Observed (links, addresses and main-table routes of both families, sysctls), and
a wanted route put back in the family it is of.

Both families' routes are read: a routed network's /128s and IPv6 blocks, a shim's IPv6
range are repaired like their IPv4 twins. A route's device is named (the reconciler wants
names); a blackhole has none.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface

from ..model import IPNetwork
from ..reconcile.state import LinkState, Observed, RouteState, WantedRoute
from . import sysctl
from .rtnetlink import Rtnetlink
from .rtnl_wire import RTN_BLACKHOLE, Route
from .rtnl_wire6 import Route6


def snapshot(rtnl: Rtnetlink, sysctls: Iterable[tuple[str, str | None]]) -> Observed:
    """Five dumps (links, both families' addresses, both families' routes) and the values
    of SYSCTLS ((key, device) pairs)."""
    links = rtnl.links()
    addresses: list[tuple[int, IPv4Interface | IPv6Interface]] = [
        *rtnl.indexed_addresses(), *((a.index, a.address) for a in rtnl.addresses6())]
    routes: list[Route | Route6] = [*rtnl.routes(), *rtnl.routes6()]
    names = {link.index: link.name for link in links}
    by_name: dict[str, set[IPv4Interface | IPv6Interface]] = {}
    for index, address in addresses:
        by_name.setdefault(names.get(index, ""), set()).add(address)
    blackholes: frozenset[IPNetwork] = frozenset(
        r.destination for r in routes if r.type == RTN_BLACKHOLE)
    return Observed(
        links={
            link.name: LinkState(link.name, link.index, link.kind, names.get(link.master or 0),
                                 link.up, link.mtu, link.mac, link.hairpin)
            for link in links
        },
        addresses={name: frozenset(found) for name, found in by_name.items()},
        routes=frozenset(
            RouteState(r.destination, names.get(r.index or 0), r.gateway) for r in routes),
        sysctls={(key, device): sysctl.current(key, device) for key, device in sysctls},
        blackholes=blackholes,
    )


def put_route(rtnl: Rtnetlink, index: int, route: WantedRoute) -> None:
    """ROUTE added out of the device INDEX, as an IPv4 or an IPv6 route."""
    gateway, source = route.gateway, route.source
    if isinstance(route.destination, IPv4Network):
        assert not isinstance(gateway, IPv6Address) and not isinstance(source, IPv6Address)
        rtnl.add_route(Route(route.destination, gateway=gateway, index=index, source=source,
                             protocol=route.protocol))
    else:
        assert not isinstance(gateway, IPv4Address)
        rtnl.add_route6(Route6(route.destination, gateway=gateway, index=index,
                               protocol=route.protocol))
