"""Network drivers: the same verbs for every kind of network, picked by name."""

from __future__ import annotations

import importlib
from typing import cast

from ..errors import ConfigError
from .base import Capabilities, ClusterDriver, Driver, GlobalOptions, Route, RuntimeOptions

# Each driver's name and the module that lists it in DRIVERS, imported on the first use of
# one of its names: the daemon's start loads only the drivers its networks use (the cluster
# drivers and their planning modules were ~1/4 of its imports). tests/unit/
# test_driver_registry.py checks this against every module of the package.
MODULES = {
    "bridge": "bridge",
    "external": "external",
    "host": "modes",
    "ipvlan": "ipvlan",
    "macvlan": "macvlan",
    "null": "modes",
    "overlay": "overlay",
    "routed": "routed",
}

_DRIVERS: dict[str, Driver] = {}


def _lookup(name: str) -> Driver | None:
    if name not in _DRIVERS and name in MODULES:
        module = importlib.import_module(f"{__name__}.{MODULES[name]}")
        for driver in getattr(module, "DRIVERS", ()):
            _DRIVERS[driver.name] = driver
    return _DRIVERS.get(name)


def get_driver(name: str) -> Driver:
    found = _lookup(name)
    if found is None:
        known = ", ".join(sorted(MODULES))
        raise ConfigError("driver", name, f"unknown driver (known: {known})")
    return found


def cluster_driver(name: str) -> ClusterDriver:
    """The driver of cluster-wide networks NAME; ConfigError for any other driver."""
    driver = get_driver(name)
    if not driver.caps.cluster:
        raise ConfigError("driver", name, "not a driver of cluster-wide networks")
    return cast(ClusterDriver, driver)


def find_driver(name: str) -> Driver | None:
    """The driver of a recorded network; None for a name this netbay does not know (a record
    of another version), which has nothing netbay could restore, audit or clean up."""
    return _lookup(name)


def capabilities(driver: str) -> Capabilities:
    """What networks of DRIVER take from netbay (an unknown driver, from an old record: none)."""
    found = _lookup(driver)
    return found.caps if found is not None else Capabilities()


def runtime_options(driver: str) -> RuntimeOptions | None:
    """The options a runtime may set on networks of DRIVER; None: runtimes cannot make them."""
    found = _lookup(driver)
    return found.runtime if found is not None else None


def runtime_drivers() -> list[str]:
    """The drivers runtimes may make networks of."""
    return [name for name in MODULES if get_driver(name).runtime is not None]


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
