"""This node's BGP speaker for its routed shares: one BIRD 2, configured from the shares' blocks
and the peers the cluster view delivered (plan/bird.py plans the text, kernel/bird.py runs
BIRD). It starts with the first routed share and stops with the last; every sync plans the
configuration again and reloads BIRD only when the text changed.

Which nodes are BGP peers follows each network's encapsulation: with cross-subnet, the nodes
on this node's own subnet (the others are reached through VXLAN, which the overlay plane
programs from the cluster record); with never, every node; with always, none (every node is
behind the tunnel). The session's address is each node's cluster address: the one it joined
with (--address/--interface, or its source address towards etcd), never "first found".
"""

from __future__ import annotations

import logging
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from ipaddress import IPv4Address
from pathlib import Path
from typing import Protocol

from ..drivers.routed import DEFAULT_ASN, OPT_ASN, OPT_ENCAP, block_of, parse_encap
from ..errors import ConfigError, NetbayError
from ..kernel.bird import BgpSession, BirdSupervisor
from ..model import Network
from ..plan.bird import BgpSettings, MeshPeer, render
from ..plan.routed import Encapsulation

log = logging.getLogger("netbay.bgp")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class BgpPeer(Protocol):
    """A node holding a block of a routed network, as the cluster view delivers it."""

    @property
    def node(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def address(self) -> IPv4Address: ...


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


def plan_settings(
    address: IPv4Address, shares: Sequence[Network],
    peers: Mapping[str, Sequence[BgpPeer]], same_segment: Callable[[IPv4Address], bool],
) -> BgpSettings | None:
    """This node's speaker for its routed SHARES; None when it has none (no BIRD)."""
    if not shares:
        return None
    asn = int(shares[0].options.get(OPT_ASN, DEFAULT_ASN))
    mesh: dict[IPv4Address, BgpPeer] = {}
    for network in shares:
        encap = parse_encap(network.options[OPT_ENCAP])
        for peer in peers.get(network.name, ()):
            if encap is Encapsulation.ALWAYS or (
                    encap is Encapsulation.CROSS_SUBNET and not same_segment(peer.address)):
                continue
            if peer.address != address:
                mesh.setdefault(peer.address, peer)
    names = Counter(session_name(p) for p in mesh.values())
    return BgpSettings(
        router_id=address, asn=asn, blocks=tuple(sorted(block_of(n) for n in shares)),
        mesh=tuple(
            MeshPeer(_unique_name(p, names), p.address, asn)
            for p in sorted(mesh.values(), key=lambda p: p.address)),
    )


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

    @property
    def running(self) -> bool:
        return self.supervisor.pid is not None

    def sync(self, settings: BgpSettings | None) -> None:
        """BIRD configured as SETTINGS say (None: stopped)."""
        if settings is None:
            if self._applied is not None:
                log.info("bgp: no routed network on this node any more; stopping bird")
                self.supervisor.stop()
                self._applied = None
            return
        text = render(settings)
        try:
            if text != self._applied:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                self.supervisor.apply(text)
                self._applied = text
                log.info("bgp: bird configured: AS %d, blocks %s, %d peers", settings.asn,
                         ", ".join(map(str, settings.blocks)), len(settings.peers))
            self.supervisor.start()  # nothing if it runs (or its watcher restarts it)
        except NetbayError as exc:
            log.warning("bgp: %s", exc)

    def sessions(self) -> list[BgpSession]:
        return self.supervisor.sessions() if self.running else []

    def close(self) -> None:
        self.supervisor.stop()
