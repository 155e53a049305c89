"""The macvlan driver: each container gets a macvlan link on the parent, with its own MAC on
the parent's L2 network (Docker's `-d macvlan`)."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ConfigError
from ..kernel import sublinks
from ..model import Endpoint, Network
from .base import RuntimeOptions, parse_bool
from .parent import OPT_HOST_LINK, OPT_PARENT, ParentDriver

OPT_MODE = "macvlan_mode"
DEFAULT_MODE = "bridge"


class MacvlanDriver(ParentDriver):
    name = "macvlan"
    dummy_prefix = "dm-"  # Docker's name for the dummy parent of an internal network
    known = frozenset({OPT_PARENT, OPT_MODE, OPT_HOST_LINK})
    runtime: RuntimeOptions | None = RuntimeOptions(device=OPT_PARENT, mode=OPT_MODE)

    def link_kind(self, options: Mapping[str, str]) -> sublinks.LinkKind:
        mode = options.get(OPT_MODE) or DEFAULT_MODE
        if mode not in sublinks.MACVLAN_MODES:
            known = "|".join(sublinks.MACVLAN_MODES)
            raise ConfigError(f"opt {OPT_MODE}", mode, f"expected {known}")
        return sublinks.macvlan(mode)

    def check_options(self, options: Mapping[str, str]) -> None:
        if options.get(OPT_MODE) == "passthru" and parse_bool(
            f"opt {OPT_HOST_LINK}", options.get(OPT_HOST_LINK, "false")
        ):
            raise ConfigError(
                f"opt {OPT_HOST_LINK}", options[OPT_HOST_LINK],
                "passthru gives the parent to one container: no room for a host shim",
            )

    def exclusive(self, network: Network) -> bool:
        return network.options.get(OPT_MODE) == "passthru"

    def endpoint_mac(self, network: Network, endpoint: Endpoint) -> str | None:
        """Docker's MAC from the address; passthru keeps the parent's own."""
        return None if self.exclusive(network) else endpoint.mac


DRIVERS = (MacvlanDriver(),)
