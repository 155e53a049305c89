"""netbay's nftables ruleset, computed from the record; pure, no I/O.

One table `inet netbay` holds NAT, isolation and port publishing; one table `bridge netbay`
holds anti-spoofing and inter-container (ICC) blocking. Rules never grow with containers or
ports: every per-network, per-endpoint and per-port fact is an element of a set or map, so
attach, detach and publish are element changes in one transaction. Both address families:
each set of addresses has its IPv6 twin (plan/ruleset.py), filled from the same facts.

The fast path (docs/design.md, "nftables"): a forwarded flow is decided on its first packet
and every later one is accepted by its conntrack state before any other rule; container to
container traffic of one bridge, which br_netfilter hands to the inet hooks, is not tracked
at all (the bridge table untracks a frame to another container's MAC: nothing about it is
NATed or remembered). Whatever tightens isolation for a running
flow ends its conntrack entry (`released_addresses`), so its next packet is judged anew.
Where the kernel has flowtables, an established flow with a bridge at one end is offloaded
(`fast_path`): its packets skip the inet hooks, and ending its conntrack entry ends the
offload too.

Written in nft's own syntax, handed to libnftables in one call: nft 1.0.6 (Debian 12)
crashes parsing the JSON form of `dnat to <concat> map @m`, and the text reads better.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from ..errors import ConfigError
from ..model import IPAddress
from .naming import link_local, valid_ifname
from .ruleset import BRIDGE as BRIDGE
from .ruleset import FLOWTABLE as FLOWTABLE
from .ruleset import FLOWTABLE_PROBE as FLOWTABLE_PROBE
from .ruleset import HOOK
from .ruleset import INET as INET
from .ruleset import OFFLOAD as OFFLOAD
from .ruleset import SKELETON as SKELETON
from .ruleset import TABLE as TABLE

# Docker 27's: nat (the default: containers' IPv6 traffic leaves as the host's, NAT66) or
# routed (no NAT; the network's IPv6 containers are reached at their own addresses)
OPT_GATEWAY_MODE6 = "com.docker.network.bridge.gateway_mode_ipv6"
GATEWAY_MODES = ("nat", "routed")

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_PROTOS = ("tcp", "udp", "sctp")
_PUBLISHED = ("pub_any", "pub_ip", "pub_any6", "pub_ip6")


@dataclass(frozen=True)
class NetworkRules:
    device: str | None  # None: a routed network (no bridge; its veths are routed to)
    subnets: tuple[IPv4Network, ...]
    internal: bool = False
    icc: bool = True
    masquerade: bool = True  # both families' (NAT66 too, as Docker's option)
    snat_to: IPv4Address | None = None
    pool: IPv4Network | None = None  # a cluster-wide network's: every node's blocks
    subnets6: tuple[IPv6Network, ...] = ()  # a bridge network's only
    routed6: bool = False  # gateway_mode_ipv6=routed: no NAT66, reached from outside
    pool6: IPv6Network | None = None  # a dual-stack cluster-wide network's IPv6 subnet


@dataclass(frozen=True)
class EndpointRules:
    port: str  # the host end of the veth
    mac: str
    address: IPv4Address | None  # None: an IPv6-only endpoint
    icc: bool = True
    address6: IPv6Address | None = None


@dataclass(frozen=True)
class PortRules:
    """One published port to its container's addresses: those of the host address's family
    (None: every host address, each family to the container's address of it)."""

    proto: str
    host_ip: IPAddress | None  # None: every host address; 0.0.0.0 / ::: every one of its family
    host_port: int
    target: IPv4Address | None  # None: the container has no IPv4 address
    container_port: int
    target6: IPv6Address | None = None


# (family, set name) -> elements in nft syntax
Elements = dict[tuple[str, str], list[str]]


def routed6(options: Mapping[str, str]) -> bool:
    """Whether a bridge network's OPTIONS ask for gateway_mode_ipv6=routed (else nat, the
    default); any other value is refused, naming the option."""
    mode = options.get(OPT_GATEWAY_MODE6, "nat")
    if mode not in GATEWAY_MODES:
        raise ConfigError(f"opt {OPT_GATEWAY_MODE6}", mode, "expected nat or routed")
    return mode == "routed"


def _ifname(name: str) -> str:
    if not valid_ifname(name):
        raise ValueError(f"not an interface name: {name!r}")
    return f'"{name}"'


def _mac(mac: str) -> str:
    if not _MAC.fullmatch(mac.lower()):
        raise ValueError(f"not a MAC address: {mac!r}")
    return mac.lower()


def network_elements(n: NetworkRules) -> Elements:
    out: Elements = {(INET, "subnets"): [str(IPv4Network(s)) for s in n.subnets]}
    if n.pool is not None:
        out[(INET, "overlay_pools")] = [str(IPv4Network(n.pool))]
    if n.device is None:  # routed: no bridge to name; its rules go by address alone
        if n.pool is not None:
            pool = IPv4Network(n.pool)
            out[(INET, "routed_pools")] = [str(pool)]
            out[(INET, "same_pool")] = [f"{pool} . {pool}"]
        if not n.internal:
            out[(INET, "masq_nets")] = [str(IPv4Network(s)) for s in n.subnets]
        return merge(out, _routed_elements6(n)) if n.pool6 is not None else out
    dev = _ifname(n.device)
    out[(INET, "bridges")] = [dev]
    if n.icc:
        out[(INET, "same_bridge")] = [f"{dev} . {dev}"]
    if n.pool is not None:
        out[(INET, "overlay_own")] = [f"{dev} . {IPv4Network(n.pool)}"]
    if n.internal:
        out[(INET, "internal")] = [dev]
    elif n.snat_to is not None:
        out[(INET, "snat_nets")] = [f"{s} : {IPv4Address(n.snat_to)}" for s in n.subnets]
    elif n.masquerade:
        out[(INET, "masq_nets")] = [str(IPv4Network(s)) for s in n.subnets]
    return merge(out, _bridge_elements6(dev, n)) if n.subnets6 else out


def _routed_elements6(n: NetworkRules) -> Elements:
    """A dual-stack routed network's IPv6 twins of its pool sets, and NAT66 out."""
    pool6 = str(IPv6Network(n.pool6))
    out: Elements = {(INET, "overlay_pools6"): [pool6], (INET, "routed_pools6"): [pool6],
                     (INET, "same_pool6"): [f"{pool6} . {pool6}"]}
    if not n.internal:
        out[(INET, "masq_nets6")] = [str(IPv6Network(s)) for s in n.subnets6]
    return out


def _bridge_elements6(dev: str, n: NetworkRules) -> Elements:
    """A bridge network's IPv6 facts: its subnets, their container addresses, and NAT66 or
    (gateway_mode_ipv6=routed) the way in from outside."""
    subnets = [str(IPv6Network(s)) for s in n.subnets6]
    out: Elements = {(INET, "subnets6"): subnets}
    if n.pool6 is not None:  # an overlay share's
        out[(INET, "overlay_pools6")] = [str(IPv6Network(n.pool6))]
        out[(INET, "overlay_own6")] = [f"{dev} . {IPv6Network(n.pool6)}"]
    if n.internal:
        return out
    if n.routed6:
        out[(INET, "routed_in6")] = [f"{dev} . {s}" for s in subnets]
    elif n.masquerade:
        out[(INET, "masq_nets6")] = subnets
    return out


def endpoint_elements(e: EndpointRules) -> Elements:
    port = _ifname(e.port)
    out: Elements = {(BRIDGE, "ports"): [port]}
    if e.address is not None:
        out[(BRIDGE, "endpoints")] = [f"{port} . {_mac(e.mac)} . {IPv4Address(e.address)}"]
    if e.address6 is not None:
        # its global address and the link-local one the kernel derives from its MAC
        mac = _mac(e.mac)
        own = (IPv6Address(e.address6), link_local(mac))
        out[(BRIDGE, "endpoints6")] = [f"{port} . {mac} . {a}" for a in own]
        out[(BRIDGE, "nd_targets6")] = [f"{port} . {mac} . 0x{a.packed.hex()}" for a in own]
    if not e.icc:
        out[(BRIDGE, "icc_off_ports")] = [port]
    return out


def port_elements(p: PortRules) -> Elements:
    if p.proto not in _PROTOS:
        raise ValueError(f"not a protocol: {p.proto!r}")
    key = f"{p.proto} . {int(p.host_port)}"
    host = p.host_ip
    out: Elements = {}
    if p.target is not None and (host is None or host.version == 4):
        target = f"{IPv4Address(p.target)} . {int(p.container_port)}"
        if host is None or host.is_unspecified:
            out[(INET, "pub_any")] = [f"{key} : {target}"]
        else:
            out[(INET, "pub_ip")] = [f"{IPv4Address(host)} . {key} : {target}"]
    # ::1 is never forwarded (parse_publish refuses it; see plan/ruleset.py's output chain)
    if p.target6 is not None and (host is None or host.version == 6 and not host.is_loopback):
        target6 = f"{IPv6Address(p.target6)} . {int(p.container_port)}"
        if host is None or host.is_unspecified:
            out[(INET, "pub_any6")] = [f"{key} : {target6}"]
        else:
            out[(INET, "pub_ip6")] = [f"{IPv6Address(host)} . {key} : {target6}"]
    return out


def merge(*parts: Elements) -> Elements:
    out: Elements = {}
    for part in parts:
        for key, elems in part.items():
            out.setdefault(key, []).extend(elems)
    return out


def _element_lines(verb: str, elements: Elements) -> list[str]:
    return [
        f"{verb} element {family} {TABLE} {name} {{ {', '.join(elems)} }}"
        for (family, name), elems in sorted(elements.items())
        if elems
    ]


def add_elements(elements: Elements) -> str:
    return "\n".join(_element_lines("add", elements))


def delete_elements(elements: Elements) -> str:
    """A delete that succeeds when an element is already gone: add it first (a no-op when it
    exists), then delete, in the same transaction (nft 1.0.6 has no `destroy`)."""
    return "\n".join(_element_lines("add", elements) + _element_lines("delete", elements))


def released_addresses(add: Elements, remove: Elements) -> set[IPAddress]:
    """The containers' addresses whose running flows a change must end: an endpoint that
    goes, a published port's target that loses a mapping (either family's)."""
    targets = [e.split(" : ")[1].split(" . ")[0] for name in _PUBLISHED
               for e in _gone(add, remove).get((INET, name), [])]
    return departed_addresses(add, remove) | set(map(ip_address, targets))


def departed_addresses(add: Elements, remove: Elements) -> set[IPAddress]:
    """The addresses whose endpoint goes: the flows they started end too. (Not its
    link-local one: it comes back with its MAC, i.e. with its IPv4 address's next owner.)"""
    gone = _gone(add, remove)
    found = [ip_address(e.rsplit(" . ", 1)[1]) for name in ("endpoints", "endpoints6")
             for e in gone.get((BRIDGE, name), [])]
    return {a for a in found if not a.is_link_local}


def _gone(add: Elements, remove: Elements) -> Elements:
    """REMOVE's elements that ADD does not bring back (an element in both stays)."""
    return {k: [e for e in v if e not in add.get(k, [])] for k, v in remove.items()}


def change(add: Elements, remove: Elements) -> str:
    """One transaction: remove what goes, add what comes (an element in both stays)."""
    gone = _gone(add, remove)
    return "\n".join(filter(None, [delete_elements(gone), add_elements(add)]))


def fast_path(devices: Iterable[str]) -> str:
    """The flowtable of DEVICES (the bridges and the uplinks) and the forward chain's offload,
    ahead of its first rule. Only an established flow is offloaded: its first packet was
    judged by every rule below. Only a flow with a bridge at one end (its packets from the
    bridge): other software's forwarded flows keep their own rules."""
    named = sorted(set(devices))
    listed = f" devices = {{ {', '.join(map(_ifname, named))} }};" if named else ""
    return "\n".join([
        f"add flowtable {INET} {TABLE} {FLOWTABLE} {{ {HOOK}{listed} }}",
        f"insert rule {INET} {TABLE} forward {OFFLOAD}",
    ])


def flowtable_devices(add: Iterable[str], remove: Iterable[str]) -> str:
    """The flowtable's devices changed: ADD hooked, REMOVE unhooked."""
    lines = []
    for verb, names in (("delete", sorted(set(remove))), ("add", sorted(set(add)))):
        if names:
            lines.append(f"{verb} flowtable {INET} {TABLE} {FLOWTABLE} {{ {HOOK} devices = "
                         f"{{ {', '.join(map(_ifname, names))} }}; }}")
    return "\n".join(lines)


def bridges_changed(add: Elements, remove: Elements) -> tuple[set[str], set[str]]:
    """The bridges a change brings and the bridges it takes away (an element in both stays)."""
    def names(elements: Elements) -> set[str]:
        return {e.strip('"') for e in elements.get((INET, "bridges"), [])}
    return names(add) - names(remove), names(_gone(add, remove))


def rebuild(
    networks: Iterable[NetworkRules], endpoints: Iterable[EndpointRules],
    ports: Iterable[PortRules], fast_path_devices: Iterable[str] | None = None,
) -> str:
    """Everything from scratch, replacing whatever is there, as one transaction; with the
    flowtable of FAST_PATH_DEVICES unless None (a kernel without flowtables)."""
    reset = [f"add table {f} {TABLE}\ndelete table {f} {TABLE}" for f in (INET, BRIDGE)]
    elements = merge(
        *(network_elements(n) for n in networks),
        *(endpoint_elements(e) for e in endpoints),
        *(port_elements(p) for p in ports),
    )
    offload = [] if fast_path_devices is None else [fast_path(fast_path_devices)]
    return "\n".join([*reset, SKELETON, *offload, add_elements(elements)])
