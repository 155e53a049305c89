"""The ipvlan driver: containers' links share the parent's MAC (Docker's `-d ipvlan`).

L2: the containers sit on the parent's network and answer ARP for their own addresses.
L3/L3S: the parent routes for them: several subnets on one parent, no ARP or broadcast,
the default route is `dev eth0` (IPv6's `::/0 dev eth0`); a router upstream of the host
reaches them by routes via the host's address on the parent, of each subnet's family, which
`network inspect` lists (UpstreamRoutes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..kernel import sublinks
from ..model import Endpoint, Network
from .base import Route
from .parent import OPT_HOST_LINK, OPT_PARENT, ParentDriver

if TYPE_CHECKING:
    from .base import DriverKernel

OPT_MODE = "ipvlan_mode"
OPT_FLAG = "ipvlan_flag"
DEFAULT_MODE = "l2"
DEFAULT_FLAG = "bridge"


def _choice(options: Mapping[str, str], key: str, default: str, known: Mapping[str, int]) -> str:
    value = options.get(key) or default
    if value not in known:
        raise ConfigError(f"opt {key}", value, f"expected {'|'.join(known)}")
    return value


class IpvlanDriver(ParentDriver):
    name = "ipvlan"
    dummy_prefix = "di-"  # Docker's name for the dummy parent of an internal network
    known = frozenset({OPT_PARENT, OPT_MODE, OPT_FLAG, OPT_HOST_LINK})

    def link_kind(self, options: Mapping[str, str]) -> sublinks.LinkKind:
        return sublinks.ipvlan(*self._mode_and_flag(options))

    @staticmethod
    def _mode_and_flag(options: Mapping[str, str]) -> tuple[str, str]:
        return (
            _choice(options, OPT_MODE, DEFAULT_MODE, sublinks.IPVLAN_MODES),
            _choice(options, OPT_FLAG, DEFAULT_FLAG, sublinks.IPVLAN_FLAGS),
        )

    def port_settings(self, network: Network) -> tuple[tuple[str, str], ...]:
        mode, flag = self._mode_and_flag(network.options)
        return (OPT_MODE, mode), (OPT_FLAG, flag)

    def routed(self, network: Network) -> bool:
        return self._mode_and_flag(network.options)[0] != "l2"

    def endpoint_mac(self, network: Network, endpoint: Endpoint) -> str | None:
        return None  # the parent's: ipvlan links cannot have their own

    def device_route(self, network: Network) -> bool:
        return self.routed(network)

    def upstream_routes(self, kernel: DriverKernel, network: Network) -> list[Route]:
        """L3/L3S: each subnet via the host's address of its family on the parent (None
        when the parent has none to route via), IPv4 first. An IPv6 link-local address
        is no next hop to name: a router needs it with its own interface's name."""
        if not self.routed(network) or network.internal or network.device is None:
            return []
        with kernel.lock:
            addresses4 = sublinks.ipv4_addresses(network.device) if network.subnets4 else []
            addresses6 = sublinks.ipv6_addresses(network.device) if network.subnets6 else []
        via4 = addresses4[0].ip if addresses4 else None
        via6 = next((a.ip for a in addresses6 if not a.ip.is_link_local), None)
        routes: list[Route] = [(config.subnet, via4) for config in network.subnets4]
        return routes + [(config.subnet, via6) for config in network.subnets6]


DRIVERS = (IpvlanDriver(),)
