"""What macvlan and ipvlan share: containers get a link of their own on a parent interface of
the host (its NIC, an 802.1q sub-interface netbay makes, or a dummy for internal networks),
and sit on the parent's network directly: no bridge, no NAT, no firewall rules.

The parent is the network's `device`; `device_created` says netbay made it (a VLAN
sub-interface `NAME.VID` that did not exist, or the dummy), so only then does netbay remove
it. `-o host_link=true` adds the host's own "shim" link on the parent, with an address of the
network (the aux address `host_link`) in each subnet, IPv4 and IPv6 alike, and a route to
the containers' range through it.

IPv6 (caps.ipv6): an endpoint with an IPv6 lease gets IPv6 switched on on its link only
(no router advertisements, autoconfiguration or DAD: netbay gives the address); one
without keeps IPv6 off on its link, as before.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface
from pathlib import Path
from typing import TYPE_CHECKING

from .. import faults
from ..errors import ConfigError, ConflictError, KernelError, NetbayError
from ..ipam.allocator import reserved
from ..kernel import sublinks
from ..model import READY, Endpoint, IPAddress, Network, NetworkSpec, SubnetConfig
from ..plan.naming import IFNAME_RULE, valid_ifname
from ..reconcile.state import Desired, WantedLink, WantedRoute
from .base import (
    DEFAULT_ROUTE,
    Capabilities,
    Route,
    RuntimeOptions,
    check_known_options,
    network_record,
    parse_bool,
)

if TYPE_CHECKING:
    from .base import DriverKernel

OPT_PARENT = "parent"
OPT_HOST_LINK = "host_link"
HOST_LINK_AUX = "host_link"  # the aux address name of the shim's address in each subnet
_VLAN_NAME = re.compile(r"^(?P<lower>.+)\.(?P<vid>[0-9]+)$")
log = logging.getLogger("netbay.parent")


def vlan_parent(name: str) -> tuple[str, int] | None:
    """(lower device, VLAN id) of a sub-interface name like eth0.10, or None."""
    match = _VLAN_NAME.match(name)
    if match is None:
        return None
    vid = int(match["vid"])
    return (match["lower"], vid) if 1 <= vid <= 4094 else None


def shim_name(network_id: str) -> str:
    return f"nbs{network_id[:12]}"


def host_link_addresses(network: Network) -> list[sublinks.ShimRoute]:
    """(containers' range, the shim's address in that subnet) of each subnet of either
    family; none without `-o host_link=true`."""
    if not parse_bool(f"opt {OPT_HOST_LINK}", network.options.get(OPT_HOST_LINK, "false")):
        return []
    out: list[sublinks.ShimRoute] = []
    for config in network.subnets:
        address = config.aux_addresses.get(HOST_LINK_AUX)
        if address is not None:
            span = config.ip_range or config.subnet
            prefix = config.subnet.prefixlen
            shim = (IPv4Interface((address, prefix)) if isinstance(address, IPv4Address)
                    else IPv6Interface((address, prefix)))
            out.append((span, shim))
    return out


def _pick_host_link_address(config: SubnetConfig) -> IPAddress:
    """The highest address of the subnet that is neither reserved nor in the containers'
    range (when the range leaves room), so IPAM never hands it out. Each stretch is
    scanned from its top past the reserved addresses only (an IPv6 /64 is 2^64 long)."""
    taken = reserved(config)
    subnet, span = config.subnet, config.ip_range
    low, high = int(subnet.network_address), int(subnet.broadcast_address)
    stretches = [(high - 1, low)]  # (top, exclusive bottom)
    if span is not None:
        first, last = int(span.network_address), int(span.broadcast_address)
        stretches = [(high - 1, last), (first - 1, low), (min(last, high - 1), max(first - 1, low))]
    for top, bottom in stretches:
        value = next((v for v in range(top, bottom, -1) if v not in taken), None)
        if value is not None:
            return type(subnet.network_address)(value)
    raise ConfigError("subnet", str(config.subnet), "no address left for the host_link shim")


class ParentDriver:
    """Shared verbs; subclasses say which link kind and which options."""

    name = ""
    mode = "private"
    caps = Capabilities(makes_links=True, parent_link=True, ipv6=True)
    runtime: RuntimeOptions | None = None  # a subclass may offer its networks to runtimes
    dummy_prefix = ""
    known: frozenset[str] = frozenset()

    # --- what subclasses provide -------------------------------------------------------
    def link_kind(self, options: Mapping[str, str]) -> sublinks.LinkKind:
        """The link to make (checks the mode options: ConfigError); no I/O."""
        raise NotImplementedError

    def check_options(self, options: Mapping[str, str]) -> None:
        """Driver-specific option checks (ConfigError); no I/O."""

    def port_settings(self, network: Network) -> tuple[tuple[str, str], ...]:
        """(option, value) pairs that must agree among the networks sharing a parent
        (ipvlan: mode and flag belong to the parent, not to each link)."""
        return ()

    def exclusive(self, network: Network) -> bool:
        """The network needs its parent to itself (macvlan passthru)."""
        return False

    def endpoint_mac(self, network: Network, endpoint: Endpoint) -> str | None:
        return endpoint.mac

    def device_route(self, network: Network) -> bool:
        """The default route goes straight out of eth0 (no gateway, nothing answers ARP)."""
        return False

    def upstream_routes(self, kernel: DriverKernel, network: Network) -> list[Route]:
        """None where the containers sit on the parent's L2 network."""
        return []

    def parent_routes_ipv6(self, network: Network) -> bool:
        """The host routes the network's IPv6 traffic out of the parent (ipvlan L3), so a
        parent netbay makes keeps IPv6 on; elsewhere the parent only carries frames."""
        return self.device_route(network) and network.ipv6 and not network.internal

    # --- the Driver verbs --------------------------------------------------------------
    def validate(self, spec: NetworkSpec, network_id: str) -> Network:
        options = dict(spec.options)
        check_known_options(options, self.known, self.name)
        host_link = parse_bool(f"opt {OPT_HOST_LINK}", options.get(OPT_HOST_LINK, "false"))
        self.check_options(options)
        self.link_kind(options)
        parent = options.get(OPT_PARENT, "")
        if parent:
            if not valid_ifname(parent):
                raise ConfigError(f"opt {OPT_PARENT}", parent,
                                  f"not a valid interface name ({IFNAME_RULE})")
            if spec.internal:
                raise ConfigError(
                    f"opt {OPT_PARENT}", parent,
                    "an internal network gets a dummy parent of its own: leave parent out",
                )
            device = parent
        else:
            device = f"{self.dummy_prefix}{network_id[:12]}"
        if host_link and not parent:
            raise ConfigError(f"opt {OPT_HOST_LINK}", options[OPT_HOST_LINK],
                              "needs a parent (an internal network has no one to reach)")
        return network_record(spec, network_id, self.name, internal=spec.internal or not parent,
                              options=options, device=device)

    def is_dummy(self, network: Network) -> bool:
        return network.device == f"{self.dummy_prefix}{network.id[:12]}"

    def claim(self, kernel: DriverKernel, network: Network) -> Network:
        parent = network.device
        assert parent is not None
        if kernel.link_exists(parent):
            return dataclasses.replace(network, device_created=False)
        if not self.is_dummy(network):
            sub = vlan_parent(parent)
            if sub is None:
                raise ConfigError(
                    f"opt {OPT_PARENT}", parent,
                    "no such interface (a missing NAME.VLAN is made as an 802.1q sub-interface)",
                )
            if not kernel.link_exists(sub[0]):
                raise ConfigError(
                    f"opt {OPT_PARENT}", parent,
                    f"no such interface, and no {sub[0]} to make VLAN {sub[1]} on",
                )
        return dataclasses.replace(network, device_created=True)

    def fit(self, network: Network, others: Sequence[Network]) -> Network:
        """Refuse what clashes with the other networks on the same parent; reserve the
        host_link shim's address in each subnet."""
        check_parent_neighbours(self, network, others)
        if parse_bool(f"opt {OPT_HOST_LINK}", network.options.get(OPT_HOST_LINK, "false")):
            subnets = []
            for config in network.subnets:
                aux = dict(config.aux_addresses)
                if HOST_LINK_AUX not in aux:
                    aux[HOST_LINK_AUX] = _pick_host_link_address(config)
                subnets.append(dataclasses.replace(config, aux_addresses=aux))
            network = dataclasses.replace(network, subnets=tuple(subnets))
        return network

    def setup(self, kernel: DriverKernel, network: Network) -> Network:
        parent = network.device
        assert parent is not None
        with kernel.lock:
            if network.device_created:
                sublinks.ensure_parent(parent, *self._made_parent(network),
                                       ipv6=self.parent_routes_ipv6(network))
                faults.point("network:parent")
            routes = host_link_addresses(network)
            if routes:
                sublinks.ensure_shim(
                    shim_name(network.id), parent=parent, kind=self.link_kind(network.options),
                    routes=routes,
                )
        return network

    def _made_parent(self, network: Network) -> tuple[sublinks.LinkKind, str | None]:
        """The kind of parent netbay makes for NETWORK, and the link it hangs off: a dummy
        (internal networks) or an 802.1q sub-interface NAME.VID of NAME."""
        if self.is_dummy(network):
            return sublinks.DUMMY, None
        sub = vlan_parent(network.device or "")
        assert sub is not None
        return sublinks.vlan(sub[1]), sub[0]

    def restore(self, kernel: DriverKernel, network: Network) -> Network:
        """The VLAN or dummy parent netbay made, and the host shim. A parent that is not
        netbay's and is gone is left to its owner (attach says so)."""
        try:
            return self.setup(kernel, network)
        except NetbayError as exc:
            log.warning("network %s: cannot re-make its links: %s", network.name, exc)
            return network

    def teardown(self, kernel: DriverKernel, network: Network) -> None:
        with kernel.lock:
            if host_link_addresses(network):
                kernel.remove_link(shim_name(network.id))
            if network.device and network.device_created:
                kernel.remove_link(network.device)

    def audit(self, network: Network, links: set[str]) -> list[str]:
        if network.state != READY:
            return []
        problems = []
        if network.device not in links:
            problems.append(f"network {network.name}: parent {network.device} missing")
        shim = shim_name(network.id)
        if host_link_addresses(network) and shim not in links:
            problems.append(f"network {network.name}: host link {shim} missing")
        return problems

    def orphan_ports(self, kernel: DriverKernel, network: Network, recorded: set[str]) -> list[str]:
        return []  # the containers' links live in their namespaces, none on the host

    def desired(self, network: Network, endpoints: Sequence[Endpoint]) -> Desired:
        """The parent (up and re-made if netbay made it; a user's is only checked to be
        there) and the host shim with its addresses and routes. The containers' links live
        in their namespaces: nothing of them is on the host."""
        if network.device is None:
            return Desired()
        owner = f"network {network.name}"
        made = network.device_created
        parent = WantedLink(
            network.device, owner, role="parent", up=made,
            kind=self._made_parent(network)[0].kind if made else None,
            remake=network.id if made else None,
        )
        routes = host_link_addresses(network)
        if not routes:
            return Desired((parent,))
        shim = WantedLink(
            shim_name(network.id), owner, role="host link",
            kind=self.link_kind(network.options).kind,
            addresses=frozenset(sublinks.host_address(s) for _, s in routes),
            remake=network.id, lower=network.device,
        )
        # an IPv6 route carries no source, as setup made it (sublinks.ensure_shim)
        wanted = tuple(
            WantedRoute(d, shim.name, owner, source=s.ip if isinstance(d, IPv4Network) else None)
            for d, s in routes
        )
        return Desired((parent, shim), wanted)

    def plan_endpoint(self, network: Network, endpoint: Endpoint) -> Endpoint:
        """No host side: the container's link hangs off the parent itself."""
        return dataclasses.replace(
            endpoint, host_ifname=None, mac=self.endpoint_mac(network, endpoint)
        )

    def container_routes(self, network: Network, endpoint: Endpoint) -> list[Route]:
        if endpoint.gateway is None:
            return []
        return [(DEFAULT_ROUTE, None if self.device_route(network) else endpoint.gateway)]

    def attach(
        self,
        kernel: DriverKernel,
        network: Network,
        endpoint: Endpoint,
        netns: Path,
        default_route: bool,
    ) -> None:
        assert network.device is not None
        device_route = self.device_route(network)
        # IPv6's default route: on the endpoint the engine gave a gateway6 (see model.Endpoint)
        route6 = endpoint.address6 is not None and endpoint.gateway6 is not None
        with kernel.lock:
            try:
                sublinks.attach_sublink(
                    parent=network.device,
                    kind=self.link_kind(network.options),
                    ifname=endpoint.ifname,
                    netns=netns,
                    mac=endpoint.mac,
                    address=endpoint.address,
                    gateway=endpoint.gateway if default_route and not device_route else None,
                    device_route=default_route and device_route,
                    address6=endpoint.address6,
                    gateway6=endpoint.gateway6 if route6 and not device_route else None,
                    device_route6=route6 and device_route,
                )
            except KernelError as exc:
                if self.exclusive(network) and exc.errno == errno.EINVAL:
                    raise ConflictError(
                        f"network {network.name} is in passthru mode: parent "
                        f"{network.device} takes a single link, and has one"
                    ) from exc
                raise

    def detach(
        self, kernel: DriverKernel, network: Network, endpoint: Endpoint, netns: Path | None
    ) -> None:
        if netns is not None:
            with kernel.lock:
                sublinks.remove_link(endpoint.ifname, netns)


def check_parent_neighbours(
    driver: ParentDriver, network: Network, others: Iterable[Network]
) -> None:
    """A parent carries links of one kind; passthru takes it whole; ipvlan's mode belongs to
    the parent (the kernel would silently switch the other network's containers); two
    networks on one L2 segment must not overlap."""
    from . import capabilities  # the registry imports this module

    parent = network.device
    for other in others:
        if other.device != parent or not capabilities(other.driver).parent_link:
            continue
        if other.driver != network.driver:
            raise ConflictError(
                f"invalid opt parent {parent!r}: used by {other.driver} network {other.name} "
                f"(a parent carries macvlan or ipvlan links, not both)"
            )
        if driver.exclusive(other):
            raise ConflictError(
                f"invalid opt parent {parent!r}: network {other.name} uses it in passthru mode"
            )
        if driver.exclusive(network):
            raise ConflictError(
                f"invalid opt macvlan_mode 'passthru': parent {parent} is used by network "
                f"{other.name}"
            )
        theirs = dict(driver.port_settings(other))
        for option, value in driver.port_settings(network):
            if theirs.get(option) != value:
                raise ConflictError(
                    f"invalid opt {option} {value!r}: parent {parent} carries network "
                    f"{other.name} with {option} {theirs.get(option)}, and the kernel would "
                    f"switch its containers over"
                )
        for config in network.subnets:
            for theirs_config in other.subnets:
                if config.subnet.overlaps(theirs_config.subnet):
                    raise ConflictError(
                        f"invalid subnet {str(config.subnet)!r}: overlaps "
                        f"{theirs_config.subnet} of network {other.name} on parent {parent}"
                    )
