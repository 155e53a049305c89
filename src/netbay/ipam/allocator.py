"""Subnet validation and lowest-free address picking; pure functions over plain values."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network

from ..errors import ConfigError, ConflictError, IPAMExhaustedError
from ..model import SubnetConfig
from .leases import Leases


def default_gateway(subnet: IPv4Network) -> IPv4Address:
    return subnet.network_address + 1


def complete(config: SubnetConfig, with_gateway: bool = True) -> SubnetConfig:
    """Check one pool's fields against each other and fill in the gateway."""
    subnet = config.subnet
    if subnet.prefixlen > 30:
        raise ConfigError("subnet", str(subnet), "too small for containers (at most /30)")
    gateway = config.gateway
    if gateway is None and with_gateway:
        gateway = default_gateway(subnet)
    if gateway is not None and (
        gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address)
    ):
        raise ConfigError("gateway", str(gateway), f"not a host address of subnet {subnet}")
    if config.ip_range is not None and not config.ip_range.subnet_of(subnet):
        raise ConfigError("ip-range", str(config.ip_range), f"not inside subnet {subnet}")
    for name, aux in config.aux_addresses.items():
        if aux not in subnet:
            raise ConfigError("aux-address", f"{name}={aux}", f"not inside subnet {subnet}")
    return SubnetConfig(subnet, gateway, config.ip_range, dict(config.aux_addresses))


def check_no_overlap(
    configs: Sequence[SubnetConfig], others: Mapping[str, Iterable[IPv4Network]]
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
    configs: Sequence[SubnetConfig], used: Collection[int], requested: IPv4Address | None = None
) -> tuple[SubnetConfig, IPv4Address]:
    """A static address if asked (checked), else the lowest free one of the first pool with room."""
    if requested is not None:
        for config in configs:
            if requested in config.subnet:
                if int(requested) in reserved(config):
                    raise ConflictError(
                        f"invalid ip {str(requested)!r}: reserved in subnet {config.subnet}"
                    )
                if int(requested) in used:
                    raise ConflictError(f"invalid ip {str(requested)!r}: already in use")
                return config, requested
        subnets = ", ".join(str(c.subnet) for c in configs) or "none"
        raise ConfigError("ip", str(requested), f"not inside the network's subnets ({subnets})")
    leases = used if isinstance(used, Leases) else Leases(used)  # a store's: no copy
    for config in configs:
        span = config.ip_range or config.subnet
        value = leases.lowest_free(
            int(span.network_address), int(span.broadcast_address), reserved(config)
        )
        if value is not None:
            return config, IPv4Address(value)
    raise IPAMExhaustedError("no free address left in the network's subnets")


def has_free_address(configs: Sequence[SubnetConfig], used: Collection[int]) -> bool:
    """Whether pick_address would find an address in CONFIGS (none requested)."""
    try:
        pick_address(configs, used)
    except IPAMExhaustedError:
        return False
    return True
