"""The route of `netbay bgp status` and the BGP side of `netbay cluster nodes`: thin handlers
over the cluster agent (this node's BIRD, read live) and its view (what every node
published, cluster/bgp_status.py).

A node is READY in the cluster record as long as it is alive, which is what the overlay
plane needs. For people and schedulers that is too early on a routed network (kops #2661:
a node Ready before its routes are): here a ready node that holds a block of a routed
network is shown ROUTING until its BGP sessions are all Established and each session with
a node that holds a block has received a route.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..drivers import capabilities
from ..errors import NotFoundError, NotJoinedError

if TYPE_CHECKING:
    from ..cluster import ClusterNode, NodeStatus
    from ..cluster.bgp_status import SessionStatus
    from ..engine.cluster import ClusterAgent

Response = tuple[int, Any]
ROUTING = "routing"


def routing_state(
    node: NodeStatus, sessions: Sequence[SessionStatus] | None, routed: Set[str],
    holders: Set[str],
) -> str:
    """NODE's state with its routes counted. SESSIONS: what it published (None: nothing);
    ROUTED: the names of the routed networks; HOLDERS: the addresses of the nodes that hold
    a block of one (they announce it, so a session with one that received nothing is not
    done yet)."""
    from ..cluster import READY

    if node.state != READY or routed.isdisjoint(node.subnets):
        return node.state
    if sessions is None:
        return ROUTING
    waiting = [s for s in sessions
               if not s.established or (s.address in holders and s.imported < 1)]
    return ROUTING if waiting else READY


def with_routing(agent: ClusterAgent, nodes: Sequence[NodeStatus]) -> list[NodeStatus]:
    """NODES (the agent's), each in its state with its routes counted."""
    from ..cluster.bgp_status import sessions_of

    joined = agent.node
    routed = {n.name for n in agent.global_networks() if capabilities(n.driver).bgp}
    if joined is None or not routed:
        return list(nodes)
    holders = {str(n.address) for n in nodes if not routed.isdisjoint(n.subnets)}
    return [replace(n, state=routing_state(n, sessions_of(joined.view.bgp_status(n.id)),
                                           routed, holders)) for n in nodes]


def session_json(session: SessionStatus) -> dict[str, Any]:
    return {"Peer": session.peer, "Address": session.address, "Asn": session.asn,
            "State": session.state, "Since": session.since, "Imported": session.imported,
            "Exported": session.exported}


def status_json(node: str, live: bool, sessions: Sequence[SessionStatus] | None) -> dict[
        str, Any]:
    """LIVE: read from this node's BIRD now, else what NODE published; SESSIONS None: its
    BIRD is not running."""
    return {"Node": node, "Live": live, "Running": sessions is not None,
            "Sessions": [session_json(s) for s in sessions or ()]}


class BgpRoutes:
    def __init__(self, agent: ClusterAgent) -> None:
        self.agent = agent

    def routes(self) -> list[tuple[str, str, Callable[..., Response]]]:
        return [("GET", r"/netbay/bgp/status", self.status)]

    def status(self, params: dict[str, str], **_: Any) -> Response:
        """This node's sessions, read from its BIRD; with ?node=NAME (or id), what that node
        published."""
        from ..cluster.bgp_status import sessions_of

        joined = self._joined()
        wanted = params.get("node")
        if not wanted:
            return 200, status_json(joined.settings.name, True, self.live())
        found = next((n for n in joined.view.nodes() if wanted in (n.name, n.id)), None)
        if found is None:
            raise NotFoundError(f"no node named {wanted} in the cluster")
        return 200, status_json(found.name, False,
                                sessions_of(joined.view.bgp_status(found.id)))

    def live(self) -> tuple[SessionStatus, ...] | None:
        """This node's sessions from its BIRD now (None: not running); for `topology` too."""
        from ..cluster.bgp_status import read_sessions

        return read_sessions(self.agent.bgp)

    def _joined(self) -> ClusterNode:
        joined = self.agent.node
        if joined is None:
            raise NotJoinedError
        return joined
