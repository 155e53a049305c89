"""The overlay driver: one node's share of a cluster-wide network.

Every node that runs a container of a global network (netbay.cluster) holds a local record
of it with the same id and name: its subnet is the block this node leased from the
network's pool, held by a bridge like the bridge driver's (whose verbs it reuses), and its
veths get the tunnel's MTU. The tunnel, the neighbours, FDB entries and routes towards the
other nodes are the cluster agent's (engine/overlay.py): they follow the peers, which the
record of one node does not know. What the local record holds of the cluster (the pool,
VNI, backend, port) comes in as options the agent sets; a user never writes them.

Dual stack: the share also holds one v6 block of the global network's IPv6 subnet
(OPT_POOL6), its bridge the block's first address; the same tunnel carries it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from ..errors import ConfigError
from ..model import Endpoint, Network, NetworkSpec, SubnetConfig
from ..plan.naming import bridge_device
from ..plan.overlay import (
    DEFAULT_VXLAN_PORT,
    VXLAN_OVERHEAD,
    Backend,
    OverlaySettings,
    vxlan_device,
)
from .base import (
    OPT_POOL,
    OPT_POOL6,
    Capabilities,
    DriverKernel,
    GlobalOptions,
    parse_choice,
    parse_int,
)
from .bridge import OPT_MTU, BridgeDriver

OPT_VNI = "netbay.overlay.vni"
OPT_BACKEND = "netbay.overlay.backend"
OPT_PORT = "netbay.overlay.port"
LOCAL_OPTIONS = frozenset({OPT_POOL, OPT_POOL6, OPT_VNI, OPT_BACKEND, OPT_PORT, OPT_MTU})
# what `network create -d overlay -o ...` may set (the global record keeps them)
USER_OPTIONS = frozenset({"backend", "vni", "vxlan_port", "subnet_size", "subnet_size6"})
# a node's v6 block is its bridge's subnet: one IPv6 link, /64 at most (RFC 7421), and room
# for a gateway and a container
SHORTEST_BLOCK6, LONGEST_BLOCK6, DEFAULT_BLOCK6 = 64, 124, 64


def parse_backend(value: str) -> Backend:
    return parse_choice(Backend, "opt backend", value)


def settings_of(network: Network) -> OverlaySettings:
    """The overlay settings a local record of a global network holds."""
    options = network.options
    return OverlaySettings(
        network_id=network.id,
        pool=IPv4Network(options[OPT_POOL]),
        vni=int(options[OPT_VNI]),
        port=int(options.get(OPT_PORT, DEFAULT_VXLAN_PORT)),
        backend=parse_backend(options.get(OPT_BACKEND, Backend.AUTO.value)),
        pool6=IPv6Network(options[OPT_POOL6]) if OPT_POOL6 in options else None,
    )


def local_options(
    pool: IPv4Network, vni: int, backend: str, port: int, mtu: int,
    pool6: IPv6Network | None = None,
) -> Mapping[str, str]:
    options = {OPT_POOL: str(pool), OPT_VNI: str(vni), OPT_BACKEND: backend,
               OPT_PORT: str(port), OPT_MTU: str(mtu)}
    if pool6 is not None:
        options[OPT_POOL6] = str(pool6)
    return options


def _check_blocks(subnets: tuple[SubnetConfig, ...], pool: IPv4Network,
                  pool6: IPv6Network | None) -> None:
    """One v4 block of POOL, then at most one v6 block of POOL6 (when there is one)."""
    v4 = [c.subnet for c in subnets if isinstance(c.subnet, IPv4Network)]
    v6 = [c.subnet for c in subnets if isinstance(c.subnet, IPv6Network)]
    fine = len(v4) == 1 and v4[0].subnet_of(pool) and isinstance(subnets[0].subnet, IPv4Network)
    if v6:
        fine = fine and pool6 is not None and len(v6) == 1 and v6[0].subnet_of(pool6)
    if not fine:
        of6 = f" and at most one of {pool6}" if pool6 is not None else ""
        raise ConfigError("subnet", [str(s.subnet) for s in subnets],
                          f"an overlay node holds one block of {pool}{of6}")


class OverlayDriver(BridgeDriver):
    name = "overlay"
    user_options = USER_OPTIONS
    caps = Capabilities(makes_links=True, host_bridge=True, firewall=True, publish=True,
                        dns=True, cluster=True, ipv6=True)
    runtime = None  # a runtime names an overlay network; only `network create` makes one

    def validate(self, spec: NetworkSpec, network_id: str) -> Network:
        unknown = sorted(set(spec.options) - LOCAL_OPTIONS)
        if unknown or OPT_POOL not in spec.options or OPT_VNI not in spec.options:
            raise ConfigError("driver", self.name, "overlay networks are cluster-wide: "
                              "create them through netbayd on a node that joined a cluster")
        pool = IPv4Network(spec.options[OPT_POOL])
        pool6 = IPv6Network(spec.options[OPT_POOL6]) if OPT_POOL6 in spec.options else None
        parse_int(f"opt {OPT_VNI}", spec.options[OPT_VNI], 1, (1 << 24) - 1)
        parse_backend(spec.options.get(OPT_BACKEND, Backend.AUTO.value))
        _check_blocks(spec.subnets, pool, pool6)
        bridge_options = {k: v for k, v in spec.options.items() if k == OPT_MTU}
        record = super().validate(dataclasses.replace(spec, options=bridge_options), network_id)
        return dataclasses.replace(record, driver=self.name, options=dict(spec.options),
                                   device=bridge_device(network_id))

    def attach(
        self, kernel: DriverKernel, network: Network, endpoint: Endpoint, netns: Path,
        default_route: bool,
    ) -> None:
        super().attach(kernel, network, endpoint, netns, default_route)
        # other nodes send to a new container as soon as they can route to it, often before
        # it exists: without this its first reply waits for the kernel's ARP retry (1 s)
        if endpoint.address is not None and endpoint.mac is not None:
            assert network.device is not None
            kernel.learn_neighbour(network.id, network.device, endpoint.address.ip,
                                   endpoint.mac)

    def teardown(self, kernel: DriverKernel, network: Network) -> None:
        kernel.remove_link(vxlan_device(network.id))  # the agent's tunnel, if it made one
        super().teardown(kernel, network)

    def global_options(
        self, given: Mapping[str, str], subnet: IPv4Network | None
    ) -> GlobalOptions:
        backend = parse_backend(given.get("backend", Backend.AUTO.value))
        port = parse_int("opt vxlan_port", given.get("vxlan_port", str(DEFAULT_VXLAN_PORT)),
                         1, 65535)
        size = parse_int("opt subnet_size", given.get("subnet_size", "24"), 8, 30)
        size6 = parse_int("opt subnet_size6", given.get("subnet_size6", str(DEFAULT_BLOCK6)),
                          SHORTEST_BLOCK6, LONGEST_BLOCK6)
        if "vni" in given:
            parse_int("opt vni", given["vni"], 1, (1 << 24) - 1)
        return GlobalOptions({"backend": backend.value, "vxlan_port": str(port)}, size,
                             block_size6=size6)

    def share_options(
        self, pool: IPv4Network, vni: int, options: Mapping[str, str], underlay_mtu: int,
        pool6: IPv6Network | None = None,
    ) -> Mapping[str, str]:
        backend = parse_backend(options.get("backend", Backend.AUTO.value))
        port = int(options.get("vxlan_port", DEFAULT_VXLAN_PORT))
        return local_options(pool, vni, backend.value, port, veth_mtu(backend, underlay_mtu),
                             pool6)


def veth_mtu(backend: Backend, underlay_mtu: int) -> int:
    """The MTU of a share's bridge and veths: the tunnel's unless the network never tunnels."""
    return underlay_mtu if backend is Backend.HOST_GW else underlay_mtu - VXLAN_OVERHEAD


DRIVERS = (OverlayDriver(),)
