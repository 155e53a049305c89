"""Network modes rather than networks: `host` (containers share the host's network
namespace) and `none` (the null driver: a namespace with only `lo`). Nothing to make."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..model import Endpoint, Network, NetworkSpec
from .base import Capabilities, NoKernelObjects

if TYPE_CHECKING:
    from .base import DriverKernel


class _ModeDriver(NoKernelObjects):
    """A network that is a namespace mode rather than kernel objects (host, none)."""

    name = ""
    caps = Capabilities()
    mode = ""

    def validate(self, spec: NetworkSpec, network_id: str) -> Network:
        raise ConfigError("driver", self.name, f"only the built-in {self.mode!r} network uses it")

    def attach(
        self,
        kernel: DriverKernel,
        network: Network,
        endpoint: Endpoint,
        netns: Path,
        default_route: bool,
    ) -> None:
        raise ConfigError("network", network.name, "containers join it by network mode, not attach")


class HostDriver(_ModeDriver):
    name = "host"
    mode = "host"


class NullDriver(_ModeDriver):
    name = "null"
    mode = "none"


DRIVERS = (HostDriver(), NullDriver())
