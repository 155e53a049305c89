"""The links a flowtable may hook in the caller's namespace: those that exist (a kernel of
before 6.16 refuses a flowtable device that does not), and the uplinks, the devices of
the default routes of both families, where forwarded flows leave for the rest of the world
(an IPv6 uplink may be another link than IPv4's)."""

from __future__ import annotations

from dataclasses import dataclass

from .rtnetlink import Rtnetlink
from .rtnl_wire import DEFAULT
from .rtnl_wire6 import DEFAULT6


@dataclass(frozen=True)
class ForwardingLinks:
    names: frozenset[str]  # every link of the namespace
    uplinks: frozenset[str]


def forwarding_links() -> ForwardingLinks:
    """One link dump and a route dump of each family, of the calling thread's namespace."""
    with Rtnetlink() as rtnl:
        names = {link.index: link.name for link in rtnl.links()}
        defaults = {r.index for r in rtnl.routes() if r.destination == DEFAULT}
        defaults |= {r.index for r in rtnl.routes6() if r.destination == DEFAULT6}
    return ForwardingLinks(frozenset(names.values()),
                           frozenset(names[i] for i in defaults if i in names))
