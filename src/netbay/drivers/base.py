"""The driver verbs: validate (pure), setup/teardown of a network, attach/detach of an endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import ConfigError
from ..model import Endpoint, Network, NetworkSpec

if TYPE_CHECKING:
    from ..kernel.host import HostKernel


class Driver(Protocol):
    name: str
    # "private": containers get their own netns and endpoints; "host"/"none": a network mode.
    mode: str

    def validate(self, spec: NetworkSpec, network_id: str) -> Network:
        """Parse and check the spec into the record to create; no I/O, raises ConfigError."""

    def claim(self, kernel: HostKernel, network: Network) -> Network:
        """Note in the record which devices netbay is about to create (before it does, so a
        crash mid-setup still knows what to remove); reads the kernel, changes nothing."""

    def setup(self, kernel: HostKernel, network: Network) -> Network:
        """Make the network's kernel objects; returns the record with what was made."""

    def teardown(self, kernel: HostKernel, network: Network) -> None:
        """Remove what setup made; missing objects are success."""

    def attach(
        self,
        kernel: HostKernel,
        network: Network,
        endpoint: Endpoint,
        netns: Path,
        default_route: bool,
    ) -> None: ...

    def detach(self, kernel: HostKernel, network: Network, endpoint: Endpoint) -> None: ...


def parse_bool(field: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(field, value, "expected true or false")


def parse_int(field: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(field, value, "expected a whole number") from None
    if not low <= number <= high:
        raise ConfigError(field, value, f"out of range {low}-{high}")
    return number


def check_known_options(options: Mapping[str, str], known: frozenset[str], driver: str) -> None:
    for key in options:
        if key not in known:
            raise ConfigError("opt", key, f"unknown option for driver {driver}")
