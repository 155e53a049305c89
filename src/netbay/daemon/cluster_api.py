"""Routes of `netbay cluster ...` and the cluster-wide side of the network routes: thin
handlers over engine/cluster.py's ClusterAgent, with the JSON shapes of their answers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from ..engine.cluster import ClusterAgent
from ..engine.cluster_join import JoinRequest
from ..errors import ConfigError
from ..model import Network, SubnetConfig
from .bgp_api import with_routing
from .json_shape import Shape, check

if TYPE_CHECKING:
    from ..cluster import ClusterStatus, GlobalNetwork, NodeStatus

Response = tuple[int, Any]
JOIN: Shape = {
    "Etcd": [str], "Node": str, "Address": str, "Interface": str, "EtcdCA": str,
    "EtcdCert": str, "EtcdKey": str, "TTL": int, "Grace": int,
}
BGP_PEER: Shape = {"Address": str, "ASN": int, "Node": str}


def _time(stamp: float | None) -> str | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, UTC).isoformat()


def node_json(node: NodeStatus) -> dict[str, Any]:
    return {
        "Id": node.id, "Name": node.name, "Address": str(node.address), "State": node.state,
        "Version": node.version, "Subnets": {k: str(v) for k, v in sorted(node.subnets.items())},
        # every block of each network ("Subnets": the first only, as older readers take it)
        "Blocks": {k: [str(b) for b in v] for k, v in sorted(node.blocks.items())},
        "Address6": None if node.address6 is None else str(node.address6),
        "Blocks6": {k: [str(b) for b in v] for k, v in sorted(node.blocks6.items())},
        "VtepMacs": dict(sorted(node.vteps.items())), "LastSeen": _time(node.last_seen),
    }


def status_json(name: str, status: ClusterStatus) -> dict[str, Any]:
    lease = status.lease
    return {
        "Node": name,
        "Endpoints": [{
            "Url": m.url, "Healthy": m.healthy, "Error": m.error, "Version": m.version,
            "Revision": m.revision, "Leader": bool(m.leader) and m.leader == m.member_id,
        } for m in status.members],
        "Revision": status.revision, "Seen": status.seen, "Lag": status.lag,
        "Watching": status.watching,
        "Lease": {"LastRenewal": _time(lease.last_renewal), "Failures": lease.failures,
                  "Error": lease.error},
    }


def join_request(body: dict[str, Any]) -> JoinRequest:
    check(body, JOIN)
    etcd = tuple(body.get("Etcd") or ())
    if not etcd:
        raise ConfigError("etcd", "", "at least one etcd endpoint is required")
    address = body.get("Address")
    if address and body.get("Interface"):
        raise ConfigError("address", address, "give --address or --interface, not both")
    try:
        parsed = IPv4Address(address) if address else None
    except ValueError:
        raise ConfigError("address", address, "not an IPv4 address") from None
    for field in ("TTL", "Grace"):
        if body.get(field) is not None and body[field] < (1 if field == "Grace" else 3):
            raise ConfigError(field.lower(), body[field], "too short")
    return JoinRequest(
        etcd=etcd, name=body.get("Node") or None, address=parsed,
        interface=body.get("Interface") or None, ca=body.get("EtcdCA"),
        cert=body.get("EtcdCert"), key=body.get("EtcdKey"), ttl=body.get("TTL"),
        grace=body.get("Grace"),
    )


def as_network(network: GlobalNetwork) -> Network:
    """A global network as a record, for the listings of a node that holds no share of it."""
    from ..drivers.base import OPT_POOL

    return Network(
        id=network.id, name=network.name, driver=network.driver, created=network.created,
        subnets=(SubnetConfig(network.subnet),), internal=network.internal,
        options={OPT_POOL: str(network.subnet), **network.options}, labels=network.labels,
    )


class ClusterRoutes:
    def __init__(self, agent: ClusterAgent) -> None:
        self.agent = agent

    def routes(self) -> list[tuple[str, str, Callable[..., Response]]]:
        return [
            ("POST", r"/netbay/cluster/join", self.join),
            ("POST", r"/netbay/cluster/leave", self.leave),
            ("GET", r"/netbay/cluster/nodes", self.nodes),
            ("GET", r"/netbay/cluster/status", self.status),
            ("GET", r"/netbay/cluster/bgp/reflectors", self.reflectors),
            ("POST", r"/netbay/cluster/bgp/reflectors/(?P<name>[^/]+)", self.add_reflector),
            ("DELETE", r"/netbay/cluster/bgp/reflectors/(?P<name>[^/]+)", self.remove_reflector),
            ("GET", r"/netbay/cluster/bgp/peers", self.bgp_peers),
            ("POST", r"/netbay/cluster/bgp/peers", self.add_bgp_peer),
            ("DELETE", r"/netbay/cluster/bgp/peers/(?P<address>[^/]+)", self.remove_bgp_peer),
        ]

    def join(self, body: dict[str, Any], **_: Any) -> Response:
        return 200, node_json(self.agent.join(join_request(body)))

    def leave(self, **_: Any) -> Response:
        self.agent.leave()
        return 204, None

    def nodes(self, **_: Any) -> Response:
        return 200, [node_json(n) for n in with_routing(self.agent, self.agent.nodes())]

    def status(self, **_: Any) -> Response:
        return 200, status_json(*self.agent.status())

    def reflectors(self, **_: Any) -> Response:
        return 200, [node_json(n) for n in self.agent.bgp_config.reflectors()]

    def add_reflector(self, name: str, **_: Any) -> Response:
        return 200, node_json(self.agent.bgp_config.set_reflector(name, True))

    def remove_reflector(self, name: str, **_: Any) -> Response:
        self.agent.bgp_config.set_reflector(name, False)
        return 204, None

    def bgp_peers(self, **_: Any) -> Response:
        return 200, [{"Address": str(peer.address), "ASN": peer.asn, "Node": node}
                     for peer, node in self.agent.bgp_config.peers()]

    def add_bgp_peer(self, body: dict[str, Any], **_: Any) -> Response:
        check(body, BGP_PEER)
        for field in ("Address", "ASN"):
            if body.get(field) is None:
                raise ConfigError(field.lower(), "", "required")
        self.agent.bgp_config.add_peer(body["Address"], body["ASN"], body.get("Node") or None)
        return 201, {"Address": body["Address"], "ASN": body["ASN"], "Node": body.get("Node")}

    def remove_bgp_peer(self, address: str, params: dict[str, str], **_: Any) -> Response:
        self.agent.bgp_config.remove_peer(address, params.get("node") or None)
        return 204, None

    def cluster_details(self, network: Network) -> dict[str, Any]:
        """What `network inspect` adds for a global network: every node's block, and the
        containers the other nodes publish on it (this node's are in Containers)."""
        found = self.agent.global_network(network.name)
        if found is None:
            return {}
        remote: dict[str, list[dict[str, str]]] = {}
        for entry in self.agent.remote_names(network.name):
            remote.setdefault(entry.node, []).append(
                {"Name": entry.name, "IPv4Address": str(entry.address)})
        blocks = [
            {"Node": n.name, "Address": str(n.address), "State": n.state,
             "Subnet": str(n.subnets[network.name]), "Containers": remote.get(n.id, [])}
            for n in with_routing(self.agent, self.agent.nodes()) if network.name in n.subnets
        ]
        return {"Subnet": str(found.subnet), "SubnetSize": found.subnet_size, "VNI": found.vni,
                "Backend": found.options.get("backend", "auto"),
                "VxlanPort": int(found.options.get("vxlan_port", 4789)),
                "Nodes": sorted(blocks, key=lambda b: b["Node"])}
