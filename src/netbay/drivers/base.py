"""The driver verbs: validate (pure), setup/teardown of a network, attach/detach of an endpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

    def fit(self, network: Network, others: Sequence[Network]) -> Network:
        """Check the completed record against the other networks (a shared bridge or parent)
        and fill in what depends on them; pure, raises ConflictError or ConfigError."""

    def setup(self, kernel: HostKernel, network: Network) -> Network:
        """Make the network's kernel objects; returns the record with what was made."""

    def teardown(self, kernel: HostKernel, network: Network) -> None:
        """Remove what setup made; missing objects are success."""

    def plan_endpoint(self, network: Network, endpoint: Endpoint) -> Endpoint:
        """The endpoint record as this driver will make it (its host-side link name, MAC),
        from the engine's default; pure."""

    def attach(
        self,
        kernel: HostKernel,
        network: Network,
        endpoint: Endpoint,
        netns: Path,
        default_route: bool,
    ) -> None: ...

    def detach(
        self, kernel: HostKernel, network: Network, endpoint: Endpoint, netns: Path | None
    ) -> None:
        """Remove the endpoint's links; NETNS is the container's (None: it has none left)."""


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


class NoKernelObjects:
    """Network-level verbs of a driver that makes nothing in the kernel for the network
    itself (host and none modes, address-only networks): each is a no-op."""

    def claim(self, kernel: HostKernel, network: Network) -> Network:
        return network

    def fit(self, network: Network, others: Sequence[Network]) -> Network:
        return network

    def setup(self, kernel: HostKernel, network: Network) -> Network:
        return network

    def teardown(self, kernel: HostKernel, network: Network) -> None:
        return None

    def plan_endpoint(self, network: Network, endpoint: Endpoint) -> Endpoint:
        return endpoint

    def detach(
        self, kernel: HostKernel, network: Network, endpoint: Endpoint, netns: Path | None
    ) -> None:
        return None
