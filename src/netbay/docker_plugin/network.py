"""NetworkDriver: Docker's networks and endpoints as netbay's.

A network Docker creates is a netbay network labelled with Docker's id. An endpoint is
only checked at CreateEndpoint (Docker has no namespace for it yet) and made at Join: a
sandbox record of runtime "docker" keyed by Docker's endpoint id, its link made in netbay's
staging namespace and handed to the host's, where Docker takes it, moves it into the
container and names it ethN (remote.md: the driver makes the interface, Docker moves it).
Docker calls Leave before it moves the link back out, so the endpoint goes at
DeleteEndpoint. docs/docker-plugin.md has the whole sequence."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from ..drivers import get_driver
from ..drivers.base import DEFAULT_ROUTE
from ..engine import Host
from ..engine.firewall import can_publish
from ..engine.sandboxes import SandboxRequest
from ..errors import ConfigError, NotFoundError
from ..ipam.allocator import pick_address
from ..model import Endpoint, Network, NetworkSpec, only_v4
from ..plan.naming import mac_for
from ..plan.ports import container_ports
from . import protocol as p
from .cluster import DockerClusterNetworks
from .ipam import Ipam

RUNTIME = "docker"
Reply = dict[str, Any]


def src_name(endpoint_id: str) -> str:
    """The link netbay hands Docker: unique on the host, at most 15 characters."""
    return f"nbd{endpoint_id[:12]}"


@dataclass(frozen=True)
class Created:
    """An endpoint Docker created and has not joined yet."""

    network_id: str  # netbay's
    address: IPv4Interface
    mac: str


class NetworkDriver:
    def __init__(
        self, host: Host, ipam: Ipam, staging: Path, clusters: DockerClusterNetworks
    ) -> None:
        self.host = host
        self.ipam = ipam
        self.staging = staging  # where links are made before Docker takes them
        self.clusters = clusters
        self._created: dict[str, Created] = {}
        self._lock = threading.Lock()

    def capabilities(self, body: Mapping[str, Any]) -> Reply:
        """Docker keeps its state per host ("local"); a netbay cluster's networks connect
        containers across hosts ("global")."""
        return {"Scope": "local",
                "ConnectivityScope": "global" if self.clusters.joined() else "local"}

    def network(self, docker_id: str) -> Network:
        """The netbay network Docker calls DOCKER_ID: its own, or this node's share of a
        cluster-wide one (made now if need be)."""
        for network in self.host.networks():
            if network.labels.get(p.DOCKER_NETWORK_ID) == docker_id:
                return network
        share = self.clusters.share(docker_id)
        if share is None:
            raise NotFoundError(f"network {docker_id} not found")
        return share

    # --- networks ------------------------------------------------------------------------
    def create_network(self, body: Mapping[str, Any]) -> Reply:
        docker_id = p.text(body, "NetworkID")
        if body.get("IPv6Data"):
            raise ConfigError("ipv6", True, "netbay's networks are IPv4-only")
        options = body.get("Options") or {}
        generic = p.strings(options.get(p.GENERIC), "opt")
        driver = generic.pop(p.OPT_DRIVER, "bridge")
        name = generic.pop(p.OPT_NAME, f"docker-{docker_id[:12]}")
        spec = NetworkSpec(
            name=name, driver=driver, subnets=p.subnet_configs(body.get("IPv4Data")),
            internal=bool(options.get(p.INTERNAL)), options=generic,
        )
        if get_driver(driver).caps.cluster:
            # every host's dockerd has an id of its own for it: kept on this node, not as
            # the cluster network's label
            self.clusters.create(docker_id, spec)
            self.ipam.pool_made([only_v4(s.subnet) for s in spec.subnets])
            return {}
        labelled = dataclasses.replace(spec, labels={p.DOCKER_NETWORK_ID: docker_id})
        network = self.host.create_network(labelled)
        self.ipam.pool_made([only_v4(s.subnet) for s in network.subnets4])
        return {}

    def delete_network(self, body: Mapping[str, Any]) -> Reply:
        """A cluster-wide network stays in the cluster (docker_plugin/cluster.py)."""
        docker_id = p.text(body, "NetworkID")
        if self.clusters.forget(docker_id):
            return {}
        try:
            network = self.network(docker_id)
        except NotFoundError:
            return {}  # gone already: Docker may ask again after a restart
        self.host.remove_network(network.id)
        return {}

    # --- endpoints -----------------------------------------------------------------------
    def create_endpoint(self, body: Mapping[str, Any]) -> Reply:
        """Checked against the record now (the address free, the MAC well-formed), made at
        Join. Docker gives the address (its IPAM's); netbay gives the MAC unless Docker
        has one (--mac-address), and may not name a field Docker gave."""
        network = self.network(p.text(body, "NetworkID"))
        endpoint_id = p.text(body, "EndpointID")
        interface = body.get("Interface") or {}
        given = interface.get("Address")
        if not given:
            raise ConfigError("Interface.Address", given, "an address from an IPAM driver is "
                              "required (netbay's or Docker's default)")
        ip = p.address(str(given), "Interface.Address")
        pick_address(network.subnets4, self.host.store.leases(network.id), ip.ip)
        mac = str(interface.get("MacAddress") or "")
        created = Created(network.id, ip, _mac(mac) if mac else mac_for(ip.ip) or "")
        with self._lock:
            self._created[endpoint_id] = created
        return {} if mac else {"Interface": {"MacAddress": created.mac}}

    def endpoint_info(self, body: Mapping[str, Any]) -> Reply:
        sandbox = self.host.sandbox(p.text(body, "EndpointID"))
        if sandbox is None:
            return {"Value": {}}
        return {"Value": {"netbay.container": sandbox.id,
                          "netbay.ports": p.port_bindings(container_ports(sandbox))}}

    def join(self, body: Mapping[str, Any]) -> Reply:
        endpoint_id = p.text(body, "EndpointID")
        netns = Path(p.text(body, "SandboxKey"))
        with self._lock:
            created = self._created.get(endpoint_id)
        if created is None:
            raise NotFoundError(f"endpoint {endpoint_id} not found")
        network = self.host.network(created.network_id)
        ifname = src_name(endpoint_id)
        request = SandboxRequest(
            external_id=endpoint_id, runtime=RUNTIME, netns=netns, ifname=ifname,
            ip=created.address.ip, mac=created.mac, tag=p.text(body, "NetworkID"),
            links_in=self.staging,
        )
        _, endpoint = self.host.attach_sandbox(network, request)
        try:
            self.host.move_to_host(self.staging, ifname)
        except BaseException:
            self.host.detach_sandbox(endpoint_id, ifname)
            raise
        with self._lock:
            self._created.pop(endpoint_id, None)
        return {
            "InterfaceName": {"SrcName": ifname, "DstPrefix": p.CONTAINER_PREFIX},
            "Gateway": str(endpoint.gateway or ""),
            "StaticRoutes": _static_routes(network, endpoint),
            # netbay's networks reach out by themselves: no docker_gwbridge
            "DisableGatewayService": True,
        }

    def leave(self, body: Mapping[str, Any]) -> Reply:
        """Docker moves the link back out only after this: DeleteEndpoint removes it."""
        p.text(body, "EndpointID")
        return {}

    def delete_endpoint(self, body: Mapping[str, Any]) -> Reply:
        endpoint_id = p.text(body, "EndpointID")
        with self._lock:
            self._created.pop(endpoint_id, None)
        ifname = src_name(endpoint_id)
        self.host.detach_sandbox(endpoint_id, ifname)
        self.host.remove_host_link(ifname)  # a sub-link Docker handed back (a veth is gone)
        return {}

    # --- published ports -----------------------------------------------------------------
    def program_external(self, body: Mapping[str, Any]) -> Reply:
        """`docker run -p`: Docker's port map published by netbay's nftables maps. Networks
        netbay publishes nothing on (macvlan, ipvlan, internal) ignore it, as Docker's own
        drivers of those kinds do."""
        network = self.network(p.text(body, "NetworkID"))
        specs = p.publish_specs(body.get("Options") or {})
        if specs and can_publish(network):
            endpoint_id = p.text(body, "EndpointID")
            self.host.publish_sandbox_ports(endpoint_id, src_name(endpoint_id), specs)
        return {}

    def revoke_external(self, body: Mapping[str, Any]) -> Reply:
        endpoint_id = p.text(body, "EndpointID")
        self.host.unpublish_sandbox_ports(endpoint_id, src_name(endpoint_id))
        return {}


def _mac(value: str) -> str:
    parts = value.lower().split(":")
    if len(parts) != 6 or not all(len(x) == 2 and all(c in "0123456789abcdef" for c in x)
                                  for x in parts):
        raise ConfigError("mac address", value, "expected six hex pairs (02:42:0a:00:00:02)")
    return ":".join(parts)


def _static_routes(network: Network, endpoint: Endpoint) -> list[dict[str, Any]]:
    """The endpoint's routes but the default (Docker adds it, through Gateway). A gateway
    outside the endpoint's prefix (a routed network's /32 with 169.254.1.1) gets a route on
    the link first: Docker finds the gateway's link by a route to it."""
    routes = get_driver(network.driver).container_routes(network, endpoint)
    out = [_static_route(dest, via) for dest, via in routes if dest != DEFAULT_ROUTE]
    gateway, address = endpoint.gateway, endpoint.address
    if gateway is not None and address is not None and gateway not in address.network:
        out.insert(0, _static_route(IPv4Network((gateway, 32)), None))
    return out


def _static_route(destination: object, via: object) -> dict[str, Any]:
    """RouteType 1: on the link (connected), 0: through NextHop."""
    if via is None:
        return {"Destination": str(destination), "RouteType": 1}
    return {"Destination": str(destination), "RouteType": 0, "NextHop": str(via)}
