"""IpamDriver: Docker asks netbay for a network's pool and gateway before CreateNetwork, and
for each container's address before CreateEndpoint.

A pool is only a subnet until CreateNetwork makes it a netbay network's (its PoolID names
the subnet, so nothing but the pools still being made is kept); a container's address comes
from that network's record, like any other netbay lease (a cluster-wide network's pool is
the whole cluster's, of each family; its addresses come from this node's share:
docker_plugin/cluster.py).
Between RequestAddress and the Join that records the endpoint, the address is held here
(in memory: Docker asks and joins within one call of its own, and releases it after
DeleteEndpoint or a failure)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_network
from typing import Any

from ..daemon import addresses
from ..drivers import get_driver
from ..engine import Host
from ..errors import NotFoundError
from ..ipam.allocator import check_no_overlap, complete, pick_address
from ..ipam.pools import choose_subnet, choose_subnet6
from ..model import (
    Endpoint,
    IPAddress,
    IPNetwork,
    Network,
    SubnetConfig,
    only_v4,
    only_v4_address,
)
from .cluster import DockerClusterNetworks
from .protocol import ADDRESS_SPACE, DOCKER_NETWORK_ID, GATEWAY_REQUEST, text

Reply = dict[str, Any]


def pool_id(subnet: IPNetwork) -> str:
    return f"{ADDRESS_SPACE}/{subnet}"


def pool_subnet(body: Mapping[str, Any]) -> IPNetwork:
    value = text(body, "PoolID")
    space, _, subnet = value.partition("/")
    try:
        if space == ADDRESS_SPACE:
            return ip_network(subnet)
    except ValueError:
        pass
    raise NotFoundError(f"pool {value} not found (not one of netbay's)")


class Ipam:
    def __init__(self, host: Host, clusters: DockerClusterNetworks) -> None:
        self.host = host
        self.clusters = clusters
        self._lock = threading.Lock()
        self._pending_pools: set[IPNetwork] = set()  # requested, no network made yet
        self._held: dict[IPNetwork, set[int]] = {}  # addresses handed out, not yet released

    def capabilities(self, body: Mapping[str, Any]) -> Reply:
        return {"RequiresMACAddress": False, "RequiresRequestReplay": False}

    def address_spaces(self, body: Mapping[str, Any]) -> Reply:
        return {"LocalDefaultAddressSpace": ADDRESS_SPACE,
                "GlobalDefaultAddressSpace": ADDRESS_SPACE}

    def request_pool(self, body: Mapping[str, Any]) -> Reply:
        """The subnet asked for (checked against every netbay network not Docker's: those
        are checked again, with the network, by CreateNetwork; a cluster network's pool is
        taken as it is, CreateNetwork adopts the network), or a free one. V6: an IPv6 pool
        (`--ipv6`), a /64 of this host's ULA /48 by default."""
        version = 6 if body.get("V6") else 4
        requested = body.get("Pool")
        networks = self.host.networks()
        with self._lock:
            if requested:
                subnet = addresses.subnet("subnet", str(requested), version)
                if self.clusters.is_cluster_pool(subnet):
                    return {"PoolID": pool_id(subnet), "Pool": str(subnet), "Data": {}}
                check_no_overlap((SubnetConfig(subnet),), {
                    n.name: [s.subnet for s in n.subnets]
                    for n in networks if DOCKER_NETWORK_ID not in n.labels
                })
            else:
                taken = [s.subnet for n in networks for s in n.subnets]
                taken += [*self.host.kernel.taken_networks(), *self._pending_pools]
                subnet = choose_subnet(taken) if version == 4 else choose_subnet6(taken)
            self._pending_pools.add(subnet)
        return {"PoolID": pool_id(subnet), "Pool": str(subnet), "Data": {}}

    def release_pool(self, body: Mapping[str, Any]) -> Reply:
        subnet = pool_subnet(body)
        with self._lock:
            self._pending_pools.discard(subnet)
            self._held.pop(subnet, None)
        self.clusters.pool_released(subnet)
        return {}

    def pool_made(self, subnets: list[IPNetwork]) -> None:
        """CreateNetwork made the network: its record holds the pools now."""
        with self._lock:
            self._pending_pools.difference_update(subnets)

    def request_address(self, body: Mapping[str, Any]) -> Reply:
        subnet = pool_subnet(body)
        options = body.get("Options") or {}
        wanted = body.get("Address")
        requested = _ip(str(wanted), subnet.version) if wanted else None
        if options.get("RequestAddressType") == GATEWAY_REQUEST:
            gateway = self._gateway(subnet, requested)
            return {"Address": f"{gateway}/{subnet.prefixlen}", "Data": {}}
        network = self._network_of(subnet)
        with self._lock:
            held = self._held.setdefault(subnet, set())
            used = self.host.store.used_addresses(network.id, subnet.version) | held
            pools = network.subnets4 if subnet.version == 4 else network.subnets6
            config, chosen = pick_address(pools, used, requested,
                                          field="ip" if subnet.version == 4 else "ip6")
            held.add(int(chosen))
        return {"Address": _interface(network, config, chosen), "Data": {}}

    def release_address(self, body: Mapping[str, Any]) -> Reply:
        subnet = pool_subnet(body)
        released = _ip(text(body, "Address").partition("/")[0], subnet.version)
        with self._lock:
            self._held.get(subnet, set()).discard(int(released))
        return {}

    def _gateway(self, subnet: IPNetwork, requested: IPAddress | None) -> IPAddress | None:
        """The network's gateway, as Docker shows it (libnetwork routes a remote driver's
        container by Join's): REQUESTED, or the pool's first address. A cluster network's
        IPv6 pool: the gateway this node's containers get (its share, made now: on an
        overlay the first address of this node's /64, on a routed network Calico's
        link-local)."""
        if requested is None and subnet.version == 6:
            share = self.clusters.pool_share(subnet)
            gateway = None if share is None else _share_gateway6(share)
            if gateway is not None:
                return gateway
        return complete(SubnetConfig(subnet, gateway=requested)).gateway

    def _network_of(self, subnet: IPNetwork) -> Network:
        for network in self.host.networks():
            if any(s.subnet == subnet for s in network.subnets):
                return network
        share = self.clusters.pool_share(subnet)
        if share is not None:
            return share
        raise NotFoundError(
            f"pool {subnet} belongs to no netbay network (netbay's IPAM serves networks of "
            "netbay's driver: docker network create -d netbay --ipam-driver netbay)"
        )


def _interface(network: Network, config: SubnetConfig, address: IPAddress) -> str:
    """ADDRESS with the prefix the container holds it by on NETWORK (its driver's: a
    routed network's endpoint has a /32 or a /128, a bridge's the subnet's prefix)."""
    planned = _planned(network, config, address)
    held = planned.address6 if isinstance(address, IPv6Address) else planned.address
    assert held is not None
    return str(held)


def _share_gateway6(share: Network) -> IPAddress | None:
    """The IPv6 gateway SHARE's driver gives a container (None: it gives none)."""
    config = next((s for s in share.subnets6 if s.gateway is not None), None)
    if config is None or config.gateway is None:
        return None
    return _planned(share, config, config.gateway).gateway6


def _planned(network: Network, config: SubnetConfig, address: IPAddress) -> Endpoint:
    """NETWORK's driver's plan of an endpoint holding ADDRESS of CONFIG, with CONFIG's
    gateway. A driver plans both families at once: an IPv6 address gets a stand-in IPv4
    one (the first subnet's, if NETWORK has IPv4), never read."""
    prefix = config.subnet.prefixlen
    if isinstance(address, IPv6Address):
        gateway6 = config.gateway if isinstance(config.gateway, IPv6Address) else None
        v4 = only_v4(network.subnets4[0].subnet) if network.subnets4 else None
        stand_in = None if v4 is None else IPv4Interface((v4.network_address, v4.prefixlen))
        endpoint = _endpoint(network, stand_in, None, IPv6Interface((address, prefix)),
                             gateway6)
    else:
        endpoint = _endpoint(network, IPv4Interface((address, prefix)),
                             only_v4_address(config.gateway), None, None)
    return get_driver(network.driver).plan_endpoint(network, endpoint)


def _endpoint(
    network: Network, address: IPv4Interface | None, gateway: IPv4Address | None,
    address6: IPv6Interface | None, gateway6: IPv6Address | None,
) -> Endpoint:
    return Endpoint(id="", network_id=network.id, container_id="", ifname="",
                    host_ifname=None, mac=None, address=address, gateway=gateway,
                    address6=address6, gateway6=gateway6)


def _ip(value: str, version: int) -> IPAddress:
    return addresses.address("address", value.partition("/")[0], version)
