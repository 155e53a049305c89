"""Network drivers: the same verbs for every kind of network, picked by name."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Capabilities, Driver, Route, RuntimeOptions
from .bridge import BridgeDriver
from .external import ExternalDriver
from .host import HostDriver
from .ipvlan import IpvlanDriver
from .macvlan import MacvlanDriver
from .null import NullDriver

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


def find_driver(name: str) -> Driver | None:
    """The driver of a recorded network; None for a name this netbay does not know (a record
    of another version), which has nothing netbay could restore, audit or clean up."""
    return _DRIVERS.get(name)


def capabilities(driver: str) -> Capabilities:
    """What networks of DRIVER take from netbay (an unknown driver, from an old record: none)."""
    found = _DRIVERS.get(driver)
    return found.caps if found is not None else Capabilities()


def runtime_options(driver: str) -> RuntimeOptions | None:
    """The options a runtime may set on networks of DRIVER; None: runtimes cannot make them."""
    found = _DRIVERS.get(driver)
    return found.runtime if found is not None else None


def runtime_drivers() -> list[str]:
    """The drivers runtimes may make networks of."""
    return [name for name, driver in _DRIVERS.items() if driver.runtime is not None]


__all__ = [
    "Capabilities",
    "Driver",
    "Route",
    "RuntimeOptions",
    "capabilities",
    "find_driver",
    "get_driver",
    "runtime_drivers",
    "runtime_options",
]
