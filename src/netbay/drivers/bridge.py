"""The bridge driver: a Linux bridge holding the gateway address, one veth pair per endpoint."""

from __future__ import annotations

import dataclasses
import errno
import logging
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, ConflictError, KernelError
from ..kernel import netsysfs
from ..model import Endpoint, Network, NetworkSpec
from ..plan.firewall import OPT_GATEWAY_MODE6, routed6
from ..plan.naming import IFNAME_RULE, bridge_device, valid_ifname
from ..plan.rps import OPT_RPS, OPT_RPS_FLOWS, network_setting, parse_cpu_list
from ..reconcile.state import RTPROT_KERNEL, Desired, WantedLink, WantedRoute, WantedSysctl
from .base import (
    Capabilities,
    Route,
    RuntimeOptions,
    check_known_options,
    gateway_route,
    network_record,
    parse_bool,
    parse_int,
)

if TYPE_CHECKING:
    from .base import DriverKernel

log = logging.getLogger("netbay.bridge")
OPT_NAME = "com.docker.network.bridge.name"
MAX_BRIDGE_PORTS = 1023  # the kernel numbers bridge ports 1..1023 (BR_MAX_PORTS = 1024)
OPT_MTU = "com.docker.network.driver.mtu"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
FORWARDING6 = "net.ipv6.conf.all.forwarding"  # on while a network has an IPv6 subnet
BOOL_OPTIONS = frozenset(
    {
        OPT_MASQ,
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
    OPT_GATEWAY_MODE6,  # nat (NAT66, the default) or routed
}


class BridgeDriver:
    name = "bridge"
    caps = Capabilities(makes_links=True, host_bridge=True, firewall=True, publish=True, dns=True,
                        ipv6=True)
    runtime: RuntimeOptions | None = RuntimeOptions(
        device=OPT_NAME, mtu=OPT_MTU, masquerade=OPT_MASQ
    )
    mode = "private"

    def validate(self, spec: NetworkSpec, network_id: str) -> Network:
        check_known_options(spec.options, KNOWN, self.name)
        routed6(spec.options)  # nat or routed
        _check_rps_syntax(spec.options)
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
        if not valid_ifname(device):
            raise ConfigError(f"opt {OPT_NAME}", device,
                              f"not a valid interface name ({IFNAME_RULE})")
        mtu = None
        if OPT_MTU in spec.options:
            mtu = parse_int(f"opt {OPT_MTU}", spec.options[OPT_MTU], 68, 65535)
        return network_record(spec, network_id, self.name, device=device, mtu=mtu)

    def claim(self, kernel: DriverKernel, network: Network) -> Network:
        assert network.device is not None
        if OPT_RPS in network.options or OPT_RPS_FLOWS in network.options:
            network_setting(dict(network.options), netsysfs.online_cpus())  # the CPUs exist
        return dataclasses.replace(network, device_created=not kernel.link_exists(network.device))

    def fit(self, network: Network, others: Sequence[Network]) -> Network:
        for config in network.subnets6:
            if config.subnet.prefixlen < 64:  # one bridge is one link: RFC 7421's /64
                raise ConfigError("subnet", str(config.subnet),
                                  "larger than a /64: a bridge is one IPv6 link (give a /64 "
                                  "or a smaller subnet)")
        for other in others:
            if network.device and other.device == network.device:
                raise ConflictError(
                    f"invalid opt {OPT_NAME} {network.device!r}: used by network {other.name}"
                )
        return network

    def setup(self, kernel: DriverKernel, network: Network) -> Network:
        assert network.device is not None
        created = kernel.ensure_bridge(network.id, network.device, network.mtu,
                                       _gateways(network))
        kernel.enable_forwarding()
        if network.subnets6:
            kernel.enable_forwarding(6)
        kernel.allow_localnet(network.device)
        return dataclasses.replace(network, device_created=network.device_created or created)

    def restore(self, kernel: DriverKernel, network: Network) -> Network:
        return self.setup(kernel, network)  # each step of setup accepts what exists

    def teardown(self, kernel: DriverKernel, network: Network) -> None:
        if network.device and network.device_created:
            kernel.remove_link(network.device)
        kernel.forget_bridge(network.id)

    def audit(self, network: Network, links: set[str]) -> list[str]:
        if network.device in links:
            return []
        return [f"network {network.name}: bridge {network.device} missing"]

    def orphan_ports(self, kernel: DriverKernel, network: Network, recorded: set[str]) -> list[str]:
        """Veths on the bridge whose endpoint record was lost."""
        if not network.device:
            return []
        return sorted(kernel.bridge_ports(network.device) - recorded)

    def desired(self, network: Network, endpoints: Sequence[Endpoint]) -> Desired:
        """The bridge up with its gateways of both families (their subnets' routes come with
        them; the IPv4 ones are checked), MTU if asked for, re-made if netbay made it; each
        endpoint's veth on it, up; forwarding (IPv6's too with an IPv6 subnet), and
        route_localnet on the bridge (what setup and attach set)."""
        if not network.device:
            return Desired()
        owner = f"network {network.name}"
        gateways = _gateways(network)
        bridge = WantedLink(
            network.device, owner, role="bridge", kind="bridge", mtu=network.mtu,
            addresses=frozenset(gateways), remake=network.id if network.device_created else None,
        )
        ports = tuple(
            WantedLink(e.host_ifname, f"endpoint {e.id[:12]}", kind="veth",
                       master=network.device, mtu=network.mtu)
            for e in endpoints if e.host_ifname
        )
        routes = tuple(  # an IPv6 subnet's route has no source, as the kernel makes it
            WantedRoute(g.network, network.device, owner, protocol=RTPROT_KERNEL,
                        source=g.ip if isinstance(g, IPv4Interface) else None)
            for g in gateways
        )
        sysctls: tuple[WantedSysctl, ...] = (
            WantedSysctl("net.ipv4.ip_forward", "1", owner),
            WantedSysctl("route_localnet", "1", owner, device=network.device),
        )
        if network.subnets6:
            sysctls += (WantedSysctl(FORWARDING6, "1", owner),)
        return Desired((bridge, *ports), routes, sysctls)

    def upstream_routes(self, kernel: DriverKernel, network: Network) -> list[Route]:
        return []

    def plan_endpoint(self, network: Network, endpoint: Endpoint) -> Endpoint:
        return endpoint  # the engine's default: a veth named after the endpoint, MAC from IP

    def container_routes(self, network: Network, endpoint: Endpoint) -> list[Route]:
        return gateway_route(endpoint)

    def attach(
        self,
        kernel: DriverKernel,
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
                address6=endpoint.address6,
                gateway6=endpoint.gateway6 if default_route else None,
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
        self, kernel: DriverKernel, network: Network, endpoint: Endpoint, netns: Path | None
    ) -> None:
        if endpoint.host_ifname:
            kernel.remove_link(endpoint.host_ifname)


def _gateways(network: Network) -> list[IPv4Interface | IPv6Interface]:
    """The bridge's addresses: each subnet's gateway, IPv4's first."""
    return [
        *(IPv4Interface((s.gateway, s.subnet.prefixlen)) for s in network.subnets4 if s.gateway),
        *(IPv6Interface((s.gateway, s.subnet.prefixlen)) for s in network.subnets6 if s.gateway),
    ]


def _check_rps_syntax(options: Mapping[str, str]) -> None:
    """`-o rps=` and `-o rps_flows=` as text, without I/O: whether the CPUs named exist is
    claim's to check (it reads the kernel)."""
    named = options.get(OPT_RPS, "auto")
    if named.strip() == "auto":
        as_if_online: frozenset[int] = frozenset()  # 'auto' names no CPU
    else:
        as_if_online = parse_cpu_list(f"opt {OPT_RPS}", named)
    network_setting(dict(options), as_if_online)


DRIVERS = (BridgeDriver(),)
