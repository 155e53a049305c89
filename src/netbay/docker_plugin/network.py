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
from ipaddress import IPv4Interface, IPv6Interface, ip_network
from pathlib import Path
from typing import Any

from ..drivers import get_driver
from ..drivers.base import DEFAULT_ROUTE, DEFAULT_ROUTE6
from ..engine import Host
from ..engine.firewall import can_publish
from ..engine.sandboxes import SandboxRequest
from ..errors import ConfigError, NotFoundError
from ..ipam.allocator import pick_address
from ..model import Endpoint, Network, NetworkSpec
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
    address: IPv4Interface | None
    mac: str
    address6: IPv6Interface | None = None


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
        options = body.get("Options") or {}
        generic = p.strings(options.get(p.GENERIC), "opt")
        driver = generic.pop(p.OPT_DRIVER, "bridge")
        name = generic.pop(p.OPT_NAME, f"docker-{docker_id[:12]}")
        # the families are the pools Docker's IPAM gave (IPv6Data: `--ipv6`); the engine
        # refuses IPv6 on a driver without it
        v4 = p.subnet_configs(body.get("IPv4Data"))
        v6 = p.subnet_configs(body.get("IPv6Data"), 6)
        spec = NetworkSpec(
            name=name, driver=driver, subnets=v4 + v6, internal=bool(options.get(p.INTERNAL)),
            options=generic, ipv4=bool(v4) or not v6, ipv6=bool(v6),
        )
        if get_driver(driver).caps.cluster:
            # every host's dockerd has an id of its own for it: kept on this node, not as
            # the cluster network's label. Dual stack with IPv6Data: netbay's IPAM hands out
            # each family's addresses from this node's blocks
            self.clusters.create(docker_id, spec)
            self.ipam.pool_made([s.subnet for s in spec.subnets])
            return {}
        labelled = dataclasses.replace(spec, labels={p.DOCKER_NETWORK_ID: docker_id})
        network = self.host.create_network(labelled)
        self.ipam.pool_made([s.subnet for s in network.subnets])
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
        ip, ip6 = _addresses(network, interface)
        if ip is not None:
            pick_address(network.subnets4, self.host.store.leases(network.id), ip.ip)
        if ip6 is not None:
            pick_address(network.subnets6, self.host.store.leases(network.id, 6), ip6.ip,
                         field="ip6")
        mac = str(interface.get("MacAddress") or "")
        derived = mac_for(ip.ip if ip else ip6.ip if ip6 else None)
        created = Created(network.id, ip, _mac(mac) if mac else derived or "", ip6)
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
            ip=created.address.ip if created.address else None, mac=created.mac,
            tag=p.text(body, "NetworkID"), links_in=self.staging,
            ip6=created.address6.ip if created.address6 else None,
        )
        _, endpoint = self.host.attach_sandbox(network, request)
        try:
            self.host.move_to_host(self.staging, ifname)
        except BaseException:
            self.host.detach_sandbox(endpoint_id, ifname)
            raise
        with self._lock:
            self._created.pop(endpoint_id, None)
        reply: Reply = {
            "InterfaceName": {"SrcName": ifname, "DstPrefix": p.CONTAINER_PREFIX},
            "Gateway": str(endpoint.gateway or ""),
            "StaticRoutes": _static_routes(network, endpoint),
            # netbay's networks reach out by themselves: no docker_gwbridge
            "DisableGatewayService": True,
        }
        if endpoint.gateway6 is not None:  # Docker adds the IPv6 default route through it
            reply["GatewayIPv6"] = str(endpoint.gateway6)
        return reply

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


def _addresses(
    network: Network, interface: Mapping[str, Any]
) -> tuple[IPv4Interface | None, IPv6Interface | None]:
    """Interface.Address and .AddressIPv6: the endpoint's address of each family NETWORK
    has, given by an IPAM driver (netbay's or Docker's default)."""
    found: list[Any] = []
    for field, has in (("Address", network.subnets4), ("AddressIPv6", network.subnets6)):
        given = interface.get(field)
        if has and not given:
            raise ConfigError(f"Interface.{field}", given, "an address from an IPAM driver "
                              "is required (netbay's or Docker's default)")
        parse = p.address if field == "Address" else p.address6
        found.append(parse(str(given), f"Interface.{field}") if given and has else None)
    return found[0], found[1]


def _mac(value: str) -> str:
    parts = value.lower().split(":")
    if len(parts) != 6 or not all(len(x) == 2 and all(c in "0123456789abcdef" for c in x)
                                  for x in parts):
        raise ConfigError("mac address", value, "expected six hex pairs (02:42:0a:00:00:02)")
    return ":".join(parts)


def _static_routes(network: Network, endpoint: Endpoint) -> list[dict[str, Any]]:
    """The endpoint's routes but the defaults (Docker adds them, through Gateway and
    GatewayIPv6). A gateway outside the endpoint's prefix (a routed network's /32 with
    169.254.1.1, its /128 with fe80::ecee:eeff:feee:eeee) gets a route on the link first,
    IPv4's then IPv6's: Docker finds the gateway's link by a route to it."""
    routes = get_driver(network.driver).container_routes(network, endpoint)
    out = [_static_route(dest, via) for dest, via in routes
           if dest not in (DEFAULT_ROUTE, DEFAULT_ROUTE6)]
    onlink = [
        _static_route(ip_network((gateway, gateway.max_prefixlen)), None)
        for gateway, address in ((endpoint.gateway, endpoint.address),
                                 (endpoint.gateway6, endpoint.address6))
        if gateway is not None and address is not None and gateway not in address.network
    ]
    return onlink + out


def _static_route(destination: object, via: object) -> dict[str, Any]:
    """RouteType 1: on the link (connected), 0: through NextHop."""
    if via is None:
        return {"Destination": str(destination), "RouteType": 1}
    return {"Destination": str(destination), "RouteType": 0, "NextHop": str(via)}
