"""The ipvlan driver: containers' links share the parent's MAC (Docker's `-d ipvlan`).

L2: the containers sit on the parent's network and answer ARP for their own addresses.
L3/L3S: the parent routes for them: several subnets on one parent, no ARP or broadcast,
the default route is `dev eth0`; a router upstream of the host reaches them by routes via
the host's address on the parent, which `network inspect` lists (UpstreamRoutes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..kernel import sublinks
from ..model import Endpoint, Network, only_v4
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
        """L3/L3S: each subnet via the host's address on the parent (None when the parent
        has no IPv4 address to route via)."""
        if not self.routed(network) or network.internal or network.device is None:
            return []
        with kernel.lock:
            addresses = sublinks.ipv4_addresses(network.device)
        via = addresses[0].ip if addresses else None
        return [(only_v4(config.subnet), via) for config in network.subnets4]


DRIVERS = (IpvlanDriver(),)
