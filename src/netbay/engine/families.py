"""The address families of a new network (Docker's EnableIPv4 / EnableIPv6) and the default
subnets of the families it has without one given."""

from __future__ import annotations

from collections.abc import Callable

from ..drivers.base import Driver
from ..errors import ConfigError
from ..ipam.pools import choose_subnet, choose_subnet6
from ..model import IPNetwork, NetworkSpec, SubnetConfig


def families(spec: NetworkSpec, driver: Driver) -> tuple[bool, bool]:
    """(IPv4, IPv6): the families SPEC's network has. A subnet given switches its family on;
    `--ipv6` on a driver that cannot, or `--ipv4=false` with an IPv4 subnet, is refused
    here, before anything is recorded."""
    given = {s.subnet.version for s in spec.subnets}
    ipv6 = spec.ipv6 or 6 in given
    if ipv6 and not driver.caps.ipv6:
        raise ConfigError("ipv6", True, f"the {driver.name} driver has no IPv6 networks")
    if not spec.ipv4 and 4 in given:
        subnet = next(s.subnet for s in spec.subnets if s.subnet.version == 4)
        raise ConfigError("subnet", str(subnet), "an IPv4 subnet, but IPv4 is off (--ipv4=false)")
    if not spec.ipv4 and not ipv6:
        raise ConfigError("ipv4", False, "a network needs IPv4 or IPv6 (add --ipv6)")
    return spec.ipv4, ipv6


def with_default_subnets(
    subnets: tuple[SubnetConfig, ...], ipv4: bool, ipv6: bool,
    taken: Callable[[], list[IPNetwork]],
) -> tuple[SubnetConfig, ...]:
    """SUBNETS, and a free subnet of the default pools for each family wanted that has none
    (IPv4: Docker's pools; IPv6: a /64 of this host's ULA /48), IPv4 first. TAKEN: what
    the host and the other networks use, read only when a subnet is to be chosen."""
    wanted = [v for v, on in ((4, ipv4), (6, ipv6)) if on]
    missing = [v for v in wanted if not any(s.subnet.version == v for s in subnets)]
    if missing:
        used = taken()
        subnets += tuple(
            SubnetConfig(choose_subnet(used) if v == 4 else choose_subnet6(used))
            for v in missing
        )
    return tuple(sorted(subnets, key=lambda s: s.version))
