"""A request for a cluster-wide network checked on this node, before anything is written:
its driver's options, its address families (IPv4 always: the nodes reach each other over
the IPv4 underlay; IPv6 besides when asked), at most one subnet of each, none overlapping
a network of this node. The cluster record's own checks (overlap with the other global
networks, room for every node) are netbay.cluster.networks'."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import TYPE_CHECKING

from ..drivers import cluster_driver
from ..errors import ConfigError, ConflictError
from ..model import IPNetwork, NetworkSpec, only_v4
from .bgp import require_bird
from .families import families

if TYPE_CHECKING:
    from ..cluster import GlobalNetworkSpec
    from .host import Host


def global_spec(host: Host, spec: NetworkSpec) -> GlobalNetworkSpec:
    """SPEC as the cluster record's request; one-line refusals (ConfigError, ConflictError)."""
    from ..cluster import GlobalNetworkSpec

    driver = cluster_driver(spec.driver)
    if driver.caps.bgp:
        require_bird()
    unknown = sorted(set(spec.options) - driver.user_options)
    if unknown:
        raise ConfigError("opt", unknown[0], f"unknown option for driver {driver.name} "
                          f"(known: {', '.join(sorted(driver.user_options))})")
    subnet, subnet6 = _one_subnet_per_family(spec)
    ipv4, ipv6 = families(spec, driver)
    if not ipv4:
        raise ConfigError("ipv4", False, "a cluster-wide network needs IPv4: its nodes "
                          "reach each other over the IPv4 underlay")
    if host.find_network(spec.name) is not None:
        raise ConflictError(f"network with name {spec.name} already exists")
    checked = driver.global_options(spec.options, subnet)
    for given in (subnet, subnet6):
        if given is not None:
            _check_local_overlap(host, given)
    vni = int(spec.options["vni"]) if "vni" in spec.options else None
    return GlobalNetworkSpec(
        name=spec.name, subnet=subnet, subnet_size=checked.block_size, vni=vni,
        internal=spec.internal, options=dict(checked.options), labels=dict(spec.labels),
        driver=driver.name, ipv6=ipv6, subnet6=subnet6, subnet_size6=checked.block_size6,
    )


def _check_local_overlap(host: Host, subnet: IPNetwork) -> None:
    for network in host.networks():
        for config in network.subnets:
            if config.subnet.version == subnet.version and config.subnet.overlaps(subnet):
                raise ConflictError(f"subnet {subnet} overlaps network {network.name} "
                                    f"({config.subnet}) on this node")


def _one_subnet_per_family(spec: NetworkSpec) -> tuple[IPv4Network | None, IPv6Network | None]:
    """SPEC's IPv4 and IPv6 subnets (None: the cluster chooses); more than one of a family
    is refused."""
    for version in (4, 6):
        given = [str(s.subnet) for s in spec.subnets if s.subnet.version == version]
        if len(given) > 1:
            raise ConfigError("subnet", given, "a cluster-wide network has one subnet of "
                              "each address family")
    v4 = next((only_v4(s.subnet) for s in spec.subnets if s.subnet.version == 4), None)
    v6 = next((s.subnet for s in spec.subnets if isinstance(s.subnet, IPv6Network)), None)
    return v4, v6
