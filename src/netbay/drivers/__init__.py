"""Network drivers: the same verbs for every kind of network, picked by name."""

from __future__ import annotations

import importlib
import pkgutil
from typing import cast

from ..errors import ConfigError
from .base import Capabilities, ClusterDriver, Driver, GlobalOptions, Route, RuntimeOptions


def _registry() -> dict[str, Driver]:
    """Every module of this package that lists DRIVERS: adding a driver is adding a module."""
    found: dict[str, Driver] = {}
    for module in pkgutil.iter_modules(__path__):
        for driver in getattr(importlib.import_module(f"{__name__}.{module.name}"), "DRIVERS", ()):
            found[driver.name] = driver
    return found


_DRIVERS = _registry()


def get_driver(name: str) -> Driver:
    try:
        return _DRIVERS[name]
    except KeyError:
        known = ", ".join(sorted(_DRIVERS))
        raise ConfigError("driver", name, f"unknown driver (known: {known})") from None


def cluster_driver(name: str) -> ClusterDriver:
    """The driver of cluster-wide networks NAME; ConfigError for any other driver."""
    driver = get_driver(name)
    if not driver.caps.cluster:
        raise ConfigError("driver", name, "not a driver of cluster-wide networks")
    return cast(ClusterDriver, driver)


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
    "ClusterDriver",
    "Driver",
    "GlobalOptions",
    "Route",
    "RuntimeOptions",
    "capabilities",
    "cluster_driver",
    "find_driver",
    "get_driver",
    "runtime_drivers",
    "runtime_options",
]
