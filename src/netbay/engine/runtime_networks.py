"""Networks netbay makes from a runtime's definition (a self-contained CNI config, a podman
network): labelled `netbay.runtime`, they go when their last endpoint does, as netavark
removes its bridge; networks made with netbay's own API are only ever used, never removed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..drivers import runtime_options
from ..errors import ConflictError, InUseError, NetbayError, NotFoundError
from ..model import READY, REMOVING, Network, NetworkSpec
from ..store.base import Store
from .kernel import Kernel
from .networks import Networks

RUNTIME_LABEL = "netbay.runtime"  # on networks made from a runtime's definition


class UnusableNetwork(NetbayError):
    """The network a runtime named is missing, or the one it defined could not be made or
    does not fit the existing one: nothing was attached. The cause's message."""

    http_status = 400


_DEFAULTS = {
    "com.docker.network.bridge.enable_ip_masquerade": "true",
    "com.docker.network.bridge.enable_icc": "true",
    "macvlan_mode": "bridge",
}


def network_differences(network: Network, spec: NetworkSpec) -> list[str]:
    """How an existing network differs from a runtime's definition of it (empty: it fits).
    What the definition leaves out (no subnet, no device name) is not compared."""
    out = []
    fields = runtime_options(spec.driver)
    device_option = fields.device if fields is not None else None
    if network.driver != spec.driver:
        out.append(f"driver {network.driver}, not {spec.driver}")
    if spec.subnets:
        # the record lists IPv4 first; a runtime may list the families either way
        have = [(s.subnet, s.gateway) for s in network.subnets]
        want = [(s.subnet, s.gateway) for s in sorted(spec.subnets, key=lambda s: s.version)]
        if any(gateway is None for _, gateway in want):  # a default gateway: compare subnets
            have, want = [(s, None) for s, _ in have], [(s, None) for s, _ in want]
        if have != want:
            out.append(
                "subnets " + ", ".join(str(s.subnet) for s in network.subnets)
                + ", not " + ", ".join(str(s) for s, _ in want)
            )
    if spec.internal != network.internal:
        out.append("internal" if network.internal else "not internal")
    for key, value in spec.options.items():
        if key == device_option:
            current = network.device
        else:
            current = network.options.get(key, _DEFAULTS.get(key))
        if current != value:
            out.append(f"option {key}={current}, not {value}")
    return out


@dataclass(frozen=True, eq=False)
class RuntimeNetworks:
    store: Store
    kernel: Kernel
    networks: Networks

    def ensure(self, spec: NetworkSpec, runtime: str) -> Network:
        """The network SPEC defines: the existing one if it fits (ConflictError if it does
        not), else made now, labelled as the runtime's."""
        with self.kernel.lock:
            existing = self.networks.named(spec.name)
            if existing is not None and existing.state != REMOVING:
                if existing.state != READY:
                    raise ConflictError(f"network {spec.name} is being {existing.state[:-3]}ed")
                differences = network_differences(existing, spec)
                if differences:
                    raise ConflictError(
                        f"network {spec.name} exists with other settings: "
                        + "; ".join(differences)
                    )
                return existing
            labels = {**spec.labels, RUNTIME_LABEL: runtime}
            return self.networks.create(dataclasses.replace(spec, labels=labels))

    def resolve(self, wanted: str | NetworkSpec, runtime: str) -> Network:
        """The ready network of that name, or the one a runtime's definition describes;
        UnusableNetwork if there is none or it cannot be made."""
        if isinstance(wanted, str):
            network = self.networks.named(wanted)
            if network is None:
                try:
                    network = self.networks.usable(wanted)  # a cluster-wide network's share
                except NetbayError as exc:
                    raise UnusableNetwork(str(exc) if not isinstance(exc, NotFoundError)
                                          else f"network {wanted} not found") from exc
            if network.state != READY:
                raise UnusableNetwork(f"network {wanted} not found")
            return network
        try:
            return self.ensure(wanted, runtime)
        except NetbayError as exc:  # a subnet clash, a bad option: nothing was made
            raise UnusableNetwork(str(exc)) from exc

    def release(self, network: Network) -> bool:
        """Remove a network netbay made for a runtime once nothing is attached to it."""
        if RUNTIME_LABEL not in network.labels:
            return False
        with self.kernel.lock:
            if self.store.endpoint_count(network.id):
                return False
            try:
                self.networks.remove(network.id)
            except (InUseError, NotFoundError):
                return False
        return True
