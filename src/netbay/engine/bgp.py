"""This node's BGP speaker for its routed shares: one BIRD 2, configured from the shares' blocks
and the peers the cluster view delivered (plan/bird.py plans the text, kernel/bird.py runs
BIRD). It starts with the first routed share and stops with the last (or when the node leaves
the cluster), not with netbayd: a daemon restart leaves the routes announced, and the next
netbayd adopts the BIRD once its cluster view has listed the record (the agent syncs no BGP
before: a view that knows no reflector, network or peer yet would stop a reflector's BIRD or
drop its sessions). Every sync plans the configuration again and reloads BIRD only when the
text changed.

Which nodes are BGP peers follows each network's encapsulation: with cross-subnet, the nodes
on this node's own subnet (the others are reached through VXLAN, which the overlay plane
programs from the cluster record); with never, every node; with always, none (every node is
behind the tunnel). The session's address is each node's cluster address: the one it joined
with (--address/--interface, or its source address towards etcd), never "first found".

With route reflectors (`netbay cluster bgp reflector NODE`) the full mesh is replaced, on
every subnet: a node peers with the reflectors only; a reflector with the other reflectors
and, as its route reflector clients, with every other node holding a block (and it runs BIRD
without a block of its own). A reflected route keeps its next hop (the node it came from), so
traffic on one subnet stays direct; a route whose next hop is on another subnet is not put
into the kernel where VXLAN carries that traffic (plan/bird.py's netbay_install).
External peers (a top-of-rack router) come from the cluster's BGP configuration as well.

IPv6: a node with an IPv6 underlay address (its node record's address6) carries its IPv6
blocks over the same sessions (plan/bird6.py), next hop that address; one without has no
IPv6 channel, and its IPv6 blocks (and those of peers it cannot reach by IPv6 on its segment)
go through VXLAN, which the overlay plane plans (plan/routed.py routed_tunnels).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

from ..drivers.base import OPT_POOL, OPT_POOL6
from ..drivers.routed import (
    DEFAULT_ASN,
    OPT_ASN,
    OPT_ENCAP,
    blocks6_of,
    blocks_of,
    parse_encap,
)
from ..errors import ConfigError, NetbayError
from ..kernel.bird import BgpSession, BirdSupervisor
from ..kernel.routed import remove_learnt_routes
from ..model import IPNetwork, Network
from ..plan.bird import BgpSettings, ExternalPeer, MeshPeer, render
from ..plan.routed import Encapsulation
from .overlay import NodeAddress as BgpPeer

log = logging.getLogger("netbay.bgp")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class NodeRef:
    """A node of the cluster record (a route reflector), as a BgpPeer."""

    node: str
    name: str
    address: IPv4Address


@dataclass(frozen=True)
class NodeBgp:
    """What this node's speaker is planned from."""

    node: str  # this node's id
    address: IPv4Address  # its cluster address: the router id and the sessions' source
    underlay: tuple[IPv4Network, ...]  # the subnets on the link that holds it
    shares: Sequence[Network]  # this node's routed shares: their blocks are what it announces
    # the cluster's routed networks by name, as their shares' options (pool, encap, ASN)
    networks: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    peers: Mapping[str, Sequence[BgpPeer]] = field(default_factory=dict)  # by network
    reflectors: Sequence[BgpPeer] = ()  # the route reflectors whose node the record has
    external: Sequence[ExternalPeer] = ()  # this node's external peers, checked
    address6: IPv6Address | None = None  # its IPv6 underlay address: None, no IPv6 by BGP
    underlay6: tuple[IPv6Network, ...] = ()  # the IPv6 subnets on the link that holds ADDRESS


@dataclass(frozen=True)
class _Routed:
    pool: IPv4Network
    encap: Encapsulation
    asn: int
    pool6: IPv6Network | None = None

    @classmethod
    def of(cls, options: Mapping[str, str]) -> _Routed:
        pool6 = options.get(OPT_POOL6)
        return cls(IPv4Network(options[OPT_POOL]), parse_encap(options[OPT_ENCAP]),
                   int(options.get(OPT_ASN, DEFAULT_ASN)),
                   None if pool6 is None else IPv6Network(pool6))

    @property
    def by_bgp(self) -> bool:
        """Some node's blocks of it come by BGP (with always, all come by VXLAN)."""
        return self.encap is not Encapsulation.ALWAYS


def require_bird(program: str = "bird") -> None:
    """ConfigError when BIRD 2 is not installed: a routed network cannot work without it."""
    if shutil.which(program) is None:
        raise ConfigError("driver", "routed", f"needs BIRD 2 ({program} not found): "
                          "install Debian's bird2 (scripts/install.sh --cluster)")


def routed_shares(shares: Iterable[Network]) -> list[Network]:
    return [n for n in shares if OPT_ENCAP in n.options]


def session_name(peer: BgpPeer) -> str:
    """The peer's name as BIRD's session description: its node name, made safe."""
    safe = _UNSAFE.sub("-", peer.name).strip("-._")[:63]
    return safe or peer.node[:12]


def plan_settings(plan: NodeBgp) -> BgpSettings | None:
    """This node's speaker; None when it needs none (no routed share, and no reflector's
    work to do): no BIRD."""
    routed = {name: _Routed.of(options) for name, options in plan.networks.items()}
    routed.update((share.name, _Routed.of(share.options)) for share in plan.shares)
    reflector = any(r.node == plan.node for r in plan.reflectors)
    if not plan.shares and not (reflector and any(r.by_bgp for r in routed.values())):
        return None
    first = plan.shares[0].name if plan.shares else next(n for n, r in routed.items() if r.by_bgp)
    asn = routed[first].asn
    mesh: dict[IPv4Address, tuple[BgpPeer, bool]] = {}
    for peer, client in _mesh(plan, routed, reflector):
        if peer.address != plan.address:
            mesh.setdefault(peer.address, (peer, client))
    names = Counter(session_name(p) for p, _ in mesh.values())
    blocks = sorted(block for share in plan.shares for block in blocks_of(share))
    return _with_ipv6(plan, routed, BgpSettings(
        router_id=plan.address, asn=asn, blocks=tuple(blocks),
        mesh=tuple(
            MeshPeer(_unique_name(p, names), p.address, asn, rr_client=client)
            for p, client in sorted(mesh.values(), key=lambda pair: pair[0].address)),
        # two reflectors of one cluster share its id (the lowest reflector's address)
        cluster_id=min(r.address for r in plan.reflectors) if reflector else None,
        external=tuple(plan.external), underlay=plan.underlay,
        cross_subnet=_pools(routed, Encapsulation.CROSS_SUBNET),
        tunnelled=_pools(routed, Encapsulation.ALWAYS),
        pools=tuple(sorted({r.pool for r in routed.values()})),
    ))


def _with_ipv6(plan: NodeBgp, routed: Mapping[str, _Routed],
               settings: BgpSettings) -> BgpSettings:
    """SETTINGS with the IPv6 channels, when this node has an IPv6 underlay address and a
    routed network is dual-stack (a node of IPv4-only networks configures BIRD as before)."""
    pools6 = _pools6(routed)
    if plan.address6 is None or not pools6:
        return settings
    return dataclasses.replace(
        settings, address6=plan.address6,
        blocks6=tuple(sorted(b for share in plan.shares for b in blocks6_of(share))),
        pools6=pools6, underlay6=plan.underlay6,
        cross_subnet6=_pools6(routed, Encapsulation.CROSS_SUBNET),
        tunnelled6=_pools6(routed, Encapsulation.ALWAYS),
    )


def _mesh(plan: NodeBgp, routed: Mapping[str, _Routed],
          reflector: bool) -> Iterator[tuple[BgpPeer, bool]]:
    """The other nodes to peer with, each with whether it is this reflector's client."""
    if not plan.reflectors:
        for network in plan.shares:
            encap = routed[network.name].encap
            for peer in plan.peers.get(network.name, ()):
                if encap is Encapsulation.NEVER or (
                        encap is Encapsulation.CROSS_SUBNET and _on_underlay(plan, peer)):
                    yield peer, False
        return
    if reflector or any(routed[share.name].by_bgp for share in plan.shares):
        yield from ((r, False) for r in plan.reflectors if r.node != plan.node)
    if reflector:
        reflectors = {r.node for r in plan.reflectors}
        for name, record in routed.items():
            clients = plan.peers.get(name, ()) if record.by_bgp else ()
            yield from ((peer, True) for peer in clients if peer.node not in reflectors)


def _on_underlay(plan: NodeBgp, peer: BgpPeer) -> bool:
    return any(peer.address in subnet for subnet in plan.underlay)


def _pools(routed: Mapping[str, _Routed], encap: Encapsulation) -> tuple[IPv4Network, ...]:
    return tuple(sorted({r.pool for r in routed.values() if r.encap is encap}))


def _pools6(routed: Mapping[str, _Routed],
            encap: Encapsulation | None = None) -> tuple[IPv6Network, ...]:
    """The routed networks' IPv6 subnets (of ENCAP only, if given)."""
    return tuple(sorted({r.pool6 for r in routed.values()
                         if r.pool6 is not None and encap in (None, r.encap)}))


def _unique_name(peer: BgpPeer, names: Counter[str]) -> str:
    name = session_name(peer)
    return name if names[name] == 1 else f"{name[:50]}-{peer.node[:12]}"


class BgpSpeaker:
    """The BIRD of this node, in DIRECTORY (its configuration, control socket, log)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.supervisor = BirdSupervisor(directory / "bird.conf", directory / "bird.ctl",
                                         directory / "bird.log")
        self._applied: str | None = None
        self._pools: tuple[IPNetwork, ...] = ()  # the last configuration's (IPv4 and IPv6)

    @property
    def running(self) -> bool:
        return self.supervisor.pid is not None

    def sync(self, settings: BgpSettings | None) -> None:
        """BIRD configured as SETTINGS say (None: stopped)."""
        if settings is None:
            # the PID file: a BIRD an earlier netbayd left running counts too
            if self._applied is not None or self.supervisor.pid_file.exists():
                log.info("bgp: no routed network on this node any more; stopping bird")
                self.supervisor.stop()
                self._applied = None
            if self._pools:  # its persisted routes: stale now that it announces nothing
                remove_learnt_routes(self._pools)
                self._pools = ()
            return
        text = render(settings)
        self._pools = (*settings.pools, *settings.pools6)
        try:
            if text != self._applied:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                self.supervisor.apply(text)
                self._applied = text
                log.info("bgp: bird configured: AS %d, blocks %s, %d peers", settings.asn,
                         ", ".join(map(str, (*settings.blocks, *settings.blocks6))),
                         len(settings.peers))
            self.supervisor.start()  # nothing if it runs (or its watcher restarts it)
        except NetbayError as exc:
            log.warning("bgp: %s", exc)

    def sessions(self) -> list[BgpSession]:
        return self.supervisor.sessions() if self.running else []

    def close(self) -> None:
        """netbayd stopping: BIRD goes on (announcing, the kernel's routes kept) until the
        next netbayd adopts it; leaving the cluster or the last routed share stops it."""
        self.supervisor.detach()
