"""The external driver: netbay keeps only the addresses; another program makes the links.

This is what `netbay-ipam` serves: the CNI reference `bridge` plugin (or any interface plugin)
asks netbay for an address and builds the veth pair and bridge itself. The network record
holds the subnets and each endpoint record is a lease, so leases are unique, survive restarts
and are released by DEL or GC from the record; nothing is made in the kernel.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from ..model import Endpoint, Network, NetworkSpec
from .base import Capabilities, NoKernelObjects, check_known_options, network_record

if TYPE_CHECKING:
    from .base import DriverKernel


class ExternalDriver(NoKernelObjects):
    name = "external"
    caps = Capabilities()
    mode = "private"

    def validate(self, spec: NetworkSpec, network_id: str) -> Network:
        check_known_options(spec.options, frozenset(), self.name)
        return network_record(spec, network_id, self.name, options={})

    def plan_endpoint(self, network: Network, endpoint: Endpoint) -> Endpoint:
        """A lease: no host-side link and no MAC of netbay's choosing."""
        return dataclasses.replace(endpoint, host_ifname=None, mac=None)

    def attach(
        self,
        kernel: DriverKernel,
        network: Network,
        endpoint: Endpoint,
        netns: Path,
        default_route: bool,
    ) -> None:
        return None


DRIVERS = (ExternalDriver(),)
