"""The BGP side of a routed network in `netbay topology`: this node's block of it (what its
BIRD announces) and its BIRD's sessions, each with the blocks its peer holds there and
whether BGP's route to them is in the kernel (protocol bird, 12: plan/bird.py). Pure: the
daemon reads the sessions (cluster/bgp_status.py, from birdc), the kernel (facts.py) and
the cluster agent's nodes; `netbay topology` draws the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .tree import mark

if TYPE_CHECKING:
    from ipaddress import IPv4Network

    from ..model import Network
    from .facts import Namespace
    from .peers import ClusterNode

Json = dict[str, Any]


class BgpSession(Protocol):
    """One session of this node's BIRD (netbay.cluster.bgp_status.SessionStatus)."""

    @property
    def peer(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def asn(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def imported(self) -> int: ...
    @property
    def exported(self) -> int: ...
    @property
    def established(self) -> bool: ...


BgpSessions = Callable[[], Sequence[BgpSession] | None]  # None: BIRD is not running


@dataclass(frozen=True)
class BgpFacts:
    """What this node's BIRD said: its sessions (None: it is not running), or why it said
    nothing."""

    sessions: Sequence[BgpSession] | None = None
    error: str = ""


def read_bgp(source: BgpSessions | None) -> BgpFacts:
    """SOURCE's sessions now; a BIRD that does not answer is a problem to show, not a
    picture that fails."""
    from ..errors import NetbayError

    if source is None:
        return BgpFacts()
    try:
        return BgpFacts(source())
    except NetbayError as exc:
        return BgpFacts(error=str(exc))


def bgp_section(network: Network, host: Namespace, bgp: BgpFacts,
                nodes: Sequence[ClusterNode]) -> Json:
    """NETWORK's block here and the sessions of BGP (read with HOST's routes and NODES)."""
    from ..plan.bird import RTPROT_BIRD

    learned = {r.destination for r in host.routes
               if r.protocol == RTPROT_BIRD and r.destination is not None}
    holders = [n for n in nodes if network.name in n.blocks]
    problems = ([f"bird does not answer: {bgp.error}"] if bgp.error
                else ["bird is not running"] if bgp.sessions is None else [])
    return {
        "block": str(network.subnets[0].subnet) if network.subnets else "",
        "running": bgp.sessions is not None,
        "blocks": [str(s.subnet) for s in network.subnets],
        "sessions": [_session(s, [b for n in holders if str(n.address) == s.address
                                  for b in n.blocks[network.name]], learned)
                     for s in bgp.sessions or ()],
        "problems": problems,
    }


def _session(session: BgpSession, blocks: list[IPv4Network],
             learned: set[IPv4Network]) -> Json:
    """SESSION, with the BLOCKS its peer holds and what of them BGP has not put in the
    kernel (LEARNED: the destinations of BGP's routes)."""
    if not session.established:
        problems = [f"session {session.state}, not Established"]
    else:
        problems = [f"no route from BGP to its block {b}" for b in blocks if b not in learned]
    return {
        "peer": session.peer, "address": session.address, "asn": session.asn,
        "state": session.state, "imported": session.imported, "exported": session.exported,
        "blocks": [str(b) for b in sorted(blocks)], "problems": problems,
    }


def bgp_problems(net: Json) -> list[str]:
    section = net.get("bgp")
    if not section:
        return []
    found = [f"bgp: {p}" for p in section["problems"]]
    for session in section["sessions"]:
        found += [f"bgp session {session['peer']}: {p}" for p in session["problems"]]
    return found


def bgp_lines(net: Json) -> list[tuple[int, str]]:
    """The block and the sessions, as lines of the topology tree (depth 1: the network's own
    devices' depth)."""
    section = net.get("bgp")
    if not section:
        return []
    lines = [(1, f"block {section['block'] or '-'}  announced by bgp")]
    if not section["running"]:
        lines.append((1, "bird  not running" + mark(section["problems"])))
    for session in section["sessions"]:
        blocks = "  block " + ", ".join(session["blocks"]) if session["blocks"] else ""
        lines.append((1, f"session {session['peer']}  {session['address']}  AS {session['asn']}"
                         f"  {session['state']}  routes {session['imported']}/"
                         f"{session['exported']}{blocks}" + mark(session["problems"])))
    return lines
