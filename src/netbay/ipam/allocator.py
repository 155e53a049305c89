"""Subnet validation and lowest-free address picking, for either family; pure functions over
plain values. IPv4 and IPv6 pools are picked from separately (an endpoint of a dual-stack
network holds one lease of each)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from ..errors import ConfigError, ConflictError, IPAMExhaustedError
from ..model import IPAddress, IPNetwork, SubnetConfig
from .leases import Leases

# the longest prefixes that leave room for a gateway and a container
_SMALLEST = {4: 30, 6: 126}


def default_gateway(subnet: IPNetwork) -> IPAddress:
    return subnet.network_address + 1


def complete(config: SubnetConfig, with_gateway: bool = True) -> SubnetConfig:
    """Check one pool's fields against each other and fill in the gateway."""
    subnet = config.subnet
    smallest = _SMALLEST[subnet.version]
    if subnet.prefixlen > smallest:
        raise ConfigError("subnet", str(subnet), f"too small for containers (at most /{smallest})")
    for name, value in (("gateway", config.gateway), ("ip-range", config.ip_range),
                        *(("aux-address", a) for a in config.aux_addresses.values())):
        if value is not None and value.version != subnet.version:
            raise ConfigError(name, str(value), f"not of the family of subnet {subnet}")
    gateway = config.gateway
    if gateway is None and with_gateway:
        gateway = default_gateway(subnet)
    if gateway is not None and (
        gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address)
    ):
        raise ConfigError("gateway", str(gateway), f"not a host address of subnet {subnet}")
    if config.ip_range is not None and not _inside(config.ip_range, subnet):
        raise ConfigError("ip-range", str(config.ip_range), f"not inside subnet {subnet}")
    for name, aux in config.aux_addresses.items():
        if aux not in subnet:
            raise ConfigError("aux-address", f"{name}={aux}", f"not inside subnet {subnet}")
    return SubnetConfig(subnet, gateway, config.ip_range, dict(config.aux_addresses))


def _inside(inner: IPNetwork, outer: IPNetwork) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def check_no_overlap(
    configs: Sequence[SubnetConfig], others: Mapping[str, Iterable[IPNetwork]]
) -> None:
    """Subnets may overlap neither each other nor another network's."""
    for i, config in enumerate(configs):
        for earlier in configs[:i]:
            if config.subnet.overlaps(earlier.subnet):
                raise ConflictError(
                    f"invalid subnet {str(config.subnet)!r}: overlaps {earlier.subnet} "
                    "of the same network"
                )
        for name, subnets in others.items():
            for other in subnets:
                if config.subnet.overlaps(other):
                    raise ConflictError(
                        f"invalid subnet {str(config.subnet)!r}: overlaps {other} of network {name}"
                    )


def reserved(config: SubnetConfig) -> set[int]:
    subnet = config.subnet
    out = {int(subnet.network_address), int(subnet.broadcast_address)}
    if config.gateway is not None:
        out.add(int(config.gateway))
    out.update(int(a) for a in config.aux_addresses.values())
    return out


def pick_address(
    configs: Sequence[SubnetConfig], used: Collection[int], requested: IPAddress | None = None,
    field: str = "ip",
) -> tuple[SubnetConfig, IPAddress]:
    """A static address if asked (checked), else the lowest free one of the first pool with
    room. CONFIGS and USED are of one family (a network's subnets4 or subnets6, and the
    leases of that family)."""
    if requested is not None:
        for config in configs:
            if requested in config.subnet:
                if int(requested) in reserved(config):
                    raise ConflictError(
                        f"invalid {field} {str(requested)!r}: reserved in subnet {config.subnet}"
                    )
                if int(requested) in used:
                    raise ConflictError(f"invalid {field} {str(requested)!r}: already in use")
                return config, requested
        subnets = ", ".join(str(c.subnet) for c in configs) or "none"
        raise ConfigError(field, str(requested), f"not inside the network's subnets ({subnets})")
    leases = used if isinstance(used, Leases) else Leases(used)  # a store's: no copy
    for config in configs:
        span = config.ip_range or config.subnet
        value = leases.lowest_free(
            int(span.network_address), int(span.broadcast_address), reserved(config)
        )
        if value is not None:
            return config, type(span.network_address)(value)
    family = "IPv6 " if configs and configs[0].version == 6 else ""
    raise IPAMExhaustedError(f"no free {family}address left in the network's subnets")


def has_free_address(configs: Sequence[SubnetConfig], used: Collection[int]) -> bool:
    """Whether pick_address would find an address in CONFIGS (none requested)."""
    try:
        pick_address(configs, used)
    except IPAMExhaustedError:
        return False
    return True
