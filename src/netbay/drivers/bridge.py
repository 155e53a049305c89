"""The bridge driver: a Linux bridge holding the gateway address, one veth pair per endpoint."""

from __future__ import annotations

import dataclasses
import errno
import logging
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, ConflictError, KernelError
from ..kernel import netsysfs
from ..model import Endpoint, Network, NetworkSpec
from ..plan.naming import bridge_device
from ..plan.rps import OPT_RPS, OPT_RPS_FLOWS, network_setting
from .base import check_known_options, parse_bool, parse_int

if TYPE_CHECKING:
    from ..kernel.host import HostKernel

log = logging.getLogger("netbay.bridge")
OPT_NAME = "com.docker.network.bridge.name"
MAX_BRIDGE_PORTS = 1023  # the kernel numbers bridge ports 1..1023 (BR_MAX_PORTS = 1024)
OPT_MTU = "com.docker.network.driver.mtu"
BOOL_OPTIONS = frozenset(
    {
        "com.docker.network.bridge.enable_ip_masquerade",
        "com.docker.network.bridge.enable_icc",
        "com.docker.network.bridge.default_bridge",
    }
)
KNOWN = BOOL_OPTIONS | {
    OPT_NAME,
    OPT_MTU,
    "com.docker.network.bridge.host_binding_ipv4",
    "com.docker.network.host_ipv4",
    "com.docker.network.container_iface_prefix",
    OPT_RPS,  # receive packet steering on every endpoint: auto or a CPU list
    OPT_RPS_FLOWS,
}
_IFNAME_BAD = set("/ \t\n:")


class BridgeDriver:
    name = "bridge"
    mode = "private"

    def validate(self, spec: NetworkSpec, network_id: str) -> Network:
        check_known_options(spec.options, KNOWN, self.name)
        if OPT_RPS in spec.options or OPT_RPS_FLOWS in spec.options:  # reads the online CPUs
            network_setting(dict(spec.options), netsysfs.online_cpus())
        for key in BOOL_OPTIONS & spec.options.keys():
            parse_bool(f"opt {key}", spec.options[key])
        host_ipv4 = spec.options.get("com.docker.network.host_ipv4")
        if host_ipv4 is not None:
            try:
                IPv4Address(host_ipv4)
            except ValueError:
                raise ConfigError("opt com.docker.network.host_ipv4", host_ipv4,
                                  "not an IPv4 address") from None
        device = spec.options.get(OPT_NAME) or bridge_device(network_id)
        if len(device) > 15 or not device or _IFNAME_BAD & set(device):
            raise ConfigError(f"opt {OPT_NAME}", device, "not a valid interface name (1-15 chars)")
        mtu = None
        if OPT_MTU in spec.options:
            mtu = parse_int(f"opt {OPT_MTU}", spec.options[OPT_MTU], 68, 65535)
        return Network(
            id=network_id,
            name=spec.name,
            driver=self.name,
            created="",
            subnets=spec.subnets,
            internal=spec.internal,
            attachable=spec.attachable,
            options=dict(spec.options),
            labels=dict(spec.labels),
            device=device,
            mtu=mtu,
        )

    def claim(self, kernel: HostKernel, network: Network) -> Network:
        assert network.device is not None
        return dataclasses.replace(network, device_created=not kernel.link_exists(network.device))

    def fit(self, network: Network, others: Sequence[Network]) -> Network:
        for other in others:
            if network.device and other.device == network.device:
                raise ConflictError(
                    f"invalid opt {OPT_NAME} {network.device!r}: used by network {other.name}"
                )
        return network

    def setup(self, kernel: HostKernel, network: Network) -> Network:
        assert network.device is not None
        gateways = [
            IPv4Interface((s.gateway, s.subnet.prefixlen)) for s in network.subnets if s.gateway
        ]
        created = kernel.ensure_bridge(network.id, network.device, network.mtu, gateways)
        kernel.enable_forwarding()
        kernel.allow_localnet(network.device)
        return dataclasses.replace(network, device_created=network.device_created or created)

    def teardown(self, kernel: HostKernel, network: Network) -> None:
        if network.device and network.device_created:
            kernel.remove_link(network.device)
        kernel.forget_bridge(network.id)

    def plan_endpoint(self, network: Network, endpoint: Endpoint) -> Endpoint:
        return endpoint  # the engine's default: a veth named after the endpoint, MAC from IP

    def attach(
        self,
        kernel: HostKernel,
        network: Network,
        endpoint: Endpoint,
        netns: Path,
        default_route: bool,
    ) -> None:
        assert network.device is not None and endpoint.host_ifname is not None
        try:
            kernel.attach_veth(
                bridge=network.device,
                bridge_key=network.id,
                host_ifname=endpoint.host_ifname,
                ifname=endpoint.ifname,
                netns=netns,
                mac=endpoint.mac,
                mtu=network.mtu,
                address=endpoint.address,
                gateway=endpoint.gateway if default_route else None,
            )
        except KernelError as exc:
            if exc.errno == errno.EXFULL:  # Docker passes on the kernel's "exchange full"
                raise ConflictError(
                    f"network {network.name} is full: a Linux bridge takes at most "
                    f"{MAX_BRIDGE_PORTS} ports, so {MAX_BRIDGE_PORTS} containers; use another "
                    "network for more"
                ) from exc
            raise
        if OPT_RPS in network.options:
            self._steer(network, endpoint, netns)

    def _steer(self, network: Network, endpoint: Endpoint, netns: Path) -> None:
        """`-o rps=...`: RPS on both ends of the endpoint's veth, RFS table sized."""
        rps = network_setting(dict(network.options), netsysfs.online_cpus())
        if rps is not None:
            note = netsysfs.apply_endpoint_rps(rps, endpoint.host_ifname, endpoint.ifname, netns)
            if note:
                log.info("network %s: %s", network.name, note)

    def detach(
        self, kernel: HostKernel, network: Network, endpoint: Endpoint, netns: Path | None
    ) -> None:
        if endpoint.host_ifname:
            kernel.remove_link(endpoint.host_ifname)
