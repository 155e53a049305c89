"""The drivers' registry names every driver of the package, and the daemon's start loads
none of the drivers a bridge network does not use (issue 18: the first operation after boot)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

from netbay import drivers
from netbay.errors import ConfigError

# what serve() in daemon/__main__.py imports before it serves, then the bridge driver the
# first CNI ADD or netavark setup uses
DAEMON_START = """
import sys
import netbay.daemon.__main__
from netbay.dns.supervisor import DnsSupervisor
from netbay.engine import Host
from netbay.engine.cluster import ClusterAgent
from netbay.kernel.linux import LinuxKernel
from netbay.reconcile.loop import Reconciler
from netbay.daemon.api import Api
from netbay.daemon.cluster_api import ClusterRoutes
from netbay.daemon.reaper import Reaper
from netbay.daemon.listener import ApiSocket
from netbay.daemon.server import ApiServer
from netbay.drivers import capabilities, get_driver
capabilities("bridge")
get_driver("bridge")
print(" ".join(sorted(name for name in sys.modules if name.startswith("netbay.drivers."))))
"""


def test_every_module_listing_drivers_is_in_the_registry() -> None:
    listed: dict[str, str] = {}
    for module in pkgutil.iter_modules(drivers.__path__):
        for driver in getattr(importlib.import_module(f"netbay.drivers.{module.name}"),
                              "DRIVERS", ()):
            listed[driver.name] = module.name
    assert listed == drivers.MODULES


def test_each_name_gives_its_own_driver() -> None:
    for name in drivers.MODULES:
        assert drivers.get_driver(name).name == name
    assert drivers.find_driver("nosuch") is None
    assert drivers.capabilities("nosuch") == drivers.Capabilities()
    with pytest.raises(ConfigError, match="unknown driver"):
        drivers.get_driver("nosuch")


def test_daemon_start_loads_no_driver_a_bridge_network_does_not_use() -> None:
    out = subprocess.run([sys.executable, "-c", DAEMON_START], capture_output=True,
                         text=True, check=True)
    loaded = set(out.stdout.split())
    assert "netbay.drivers.bridge" in loaded
    assert not loaded & {"netbay.drivers.macvlan", "netbay.drivers.ipvlan",
                         "netbay.drivers.parent", "netbay.drivers.external",
                         "netbay.drivers.modes"}
