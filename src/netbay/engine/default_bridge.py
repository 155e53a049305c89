"""netbayd's settings for the default bridge, as Docker's daemon.json `ipv6` and
`fixed-cidr-v6`: IPv4 only unless asked; with --ipv6 it is dual stack, its IPv6 subnet
--fixed-cidr-v6, else a /64 of this host's ULA /48. The settings are netbayd's options
(--ipv6, --fixed-cidr-v6) or its environment (NETBAY_IPV6, NETBAY_FIXED_CIDR_V6: what a
systemd drop-in sets), read at start-up; the bridge's record follows them while no
container uses it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network

from ..drivers import get_driver
from ..errors import ConfigError
from ..ipam.allocator import complete
from ..ipam.pools import DEFAULT_BRIDGE_POOL, choose_subnet, choose_subnet6, overlaps_any
from ..model import IPNetwork, NetworkSpec, SubnetConfig
from ..store.base import Store
from .families import families

log = logging.getLogger("netbay.networks")

ENV_IPV6 = "NETBAY_IPV6"
ENV_FIXED_CIDR_V6 = "NETBAY_FIXED_CIDR_V6"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class BridgeDefaults:
    ipv6: bool = False
    fixed_cidr_v6: IPv6Network | None = None


def bridge_defaults(environ: Mapping[str, str]) -> BridgeDefaults:
    """The settings in ENVIRON, checked: a refusal names the setting and its value."""
    flag = environ.get(ENV_IPV6, "").strip().lower()
    if flag not in _TRUE + _FALSE:
        raise ConfigError("ipv6", environ[ENV_IPV6], "expected true or false")
    ipv6 = flag in _TRUE
    text = environ.get(ENV_FIXED_CIDR_V6, "").strip()
    if not text:
        fixed = None
    elif not ipv6:
        raise ConfigError("fixed-cidr-v6", text, "needs --ipv6 (the default bridge is IPv4 "
                          "only without it)")
    else:
        fixed = _cidr6(text)
    if ipv6:  # refused now, not at the bridge's first container
        families(NetworkSpec("bridge", ipv6=True), get_driver("bridge"))
    return BridgeDefaults(ipv6, fixed)


def _cidr6(text: str) -> IPv6Network:
    try:
        network = ip_network(text, strict=True)
    except ValueError:
        network = None
    if not isinstance(network, IPv6Network):
        raise ConfigError("fixed-cidr-v6", text, "not an IPv6 subnet in CIDR form")
    complete(SubnetConfig(network))  # room for a gateway and containers
    return network


def _subnet4(taken: list[IPNetwork]) -> IPv4Network:
    if overlaps_any(DEFAULT_BRIDGE_POOL, taken):
        return choose_subnet(taken)
    return DEFAULT_BRIDGE_POOL


def _subnet6(defaults: BridgeDefaults, taken: list[IPNetwork]) -> IPv6Network:
    if defaults.fixed_cidr_v6 is None:
        return choose_subnet6(taken)
    if overlaps_any(defaults.fixed_cidr_v6, taken):
        others = ", ".join(dict.fromkeys(str(t) for t in taken
                                         if t.overlaps(defaults.fixed_cidr_v6)))
        raise ConfigError("fixed-cidr-v6", str(defaults.fixed_cidr_v6), f"overlaps {others}")
    return defaults.fixed_cidr_v6


def default_bridge_subnets(
    defaults: BridgeDefaults, taken: list[IPNetwork]
) -> tuple[SubnetConfig, ...]:
    """The default bridge's subnets, of what TAKEN leaves: 172.17.0.0/16 (or the first free
    default pool), and with --ipv6 its IPv6 one."""
    subnets: tuple[SubnetConfig, ...] = (complete(SubnetConfig(_subnet4(taken))),)
    if defaults.ipv6:
        subnets += (complete(SubnetConfig(_subnet6(defaults, taken))),)
    return subnets


def followed(
    subnets: tuple[SubnetConfig, ...], defaults: BridgeDefaults, taken: list[IPNetwork]
) -> tuple[SubnetConfig, ...]:
    """SUBNETS of the recorded default bridge as the settings now want them: its IPv4 ones
    as they are, the IPv6 one added, kept, moved to --fixed-cidr-v6, or removed."""
    v4 = tuple(s for s in subnets if s.version == 4)
    v6 = [s for s in subnets if s.version == 6]
    if not defaults.ipv6:
        return v4
    if v6 and defaults.fixed_cidr_v6 in (None, v6[0].subnet):
        return (*v4, v6[0])
    return (*v4, complete(SubnetConfig(_subnet6(defaults, taken))))


def follow_defaults(
    store: Store, defaults: BridgeDefaults, host_taken: Callable[[], Sequence[IPNetwork]]
) -> None:
    """The recorded default bridge's IPv6 subnet as the settings now say, while no
    container holds an address of it (else as recorded, until the last one leaves).
    HOST_TAKEN: what the host's own addresses and routes take, read only if need be."""
    bridge = store.find_network("bridge")
    if bridge is None or not bridge.builtin or bridge.name != "bridge":
        return
    if not defaults.ipv6 and all(s.version == 4 for s in bridge.subnets):
        return  # the common case: no IPv6 asked, none recorded
    taken = [s.subnet for n in store.networks() if n.id != bridge.id for s in n.subnets]
    wanted = followed(bridge.subnets, defaults, [*taken, *host_taken()])
    if wanted == bridge.subnets:
        return
    if store.endpoint_count(bridge.id):
        log.warning("default bridge kept as it is (%s): containers use it",
                    ", ".join(str(s.subnet) for s in bridge.subnets))
        return
    store.update_network(bridge.id, subnets=wanted)
