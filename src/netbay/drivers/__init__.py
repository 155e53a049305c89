"""Network drivers: the same verbs for every kind of network, picked by name."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Driver
from .bridge import BridgeDriver
from .external import ExternalDriver
from .host import HostDriver
from .ipvlan import IpvlanDriver
from .macvlan import MacvlanDriver
from .null import NullDriver
from .parent import ParentDriver

_DRIVERS: dict[str, Driver] = {
    d.name: d
    for d in (
        BridgeDriver(), HostDriver(), NullDriver(), MacvlanDriver(), IpvlanDriver(),
        ExternalDriver(),
    )
}


def get_driver(name: str) -> Driver:
    try:
        return _DRIVERS[name]
    except KeyError:
        known = ", ".join(sorted(_DRIVERS))
        raise ConfigError("driver", name, f"unknown driver (known: {known})") from None


__all__ = ["Driver", "ParentDriver", "get_driver"]
