"""netbay's nftables ruleset, computed from the record; pure, no I/O.

One table `inet netbay` holds NAT, isolation and port publishing; one table `bridge netbay`
holds anti-spoofing and inter-container (ICC) blocking. Rules never grow with containers or
ports: every per-network, per-endpoint and per-port fact is an element of a set or map, so
attach, detach and publish are element changes in one transaction.

The fast path (docs/design.md, "nftables"): a forwarded flow is decided on its first packet
and every later one is accepted by its conntrack state before any other rule; container to
container traffic of one bridge, which br_netfilter hands to the inet hooks, is not tracked
at all (nothing about it is NATed or remembered). Whatever tightens isolation for a running
flow ends its conntrack entry (`released_addresses`), so its next packet is judged anew.
Where the kernel has flowtables, an established flow with a bridge at one end is offloaded
(`fast_path`): its packets skip the inet hooks, and ending its conntrack entry ends the
offload too.

Written in nft's own syntax, handed to libnftables in one call: nft 1.0.6 (Debian 12)
crashes parsing the JSON form of `dnat to <concat> map @m`, and the text reads better.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from .naming import valid_ifname

TABLE = "netbay"
INET, BRIDGE = "inet", "bridge"
FLOWTABLE = "ft"
_HOOK = "hook ingress priority filter;"
# the forward chain's first rule where the kernel has flowtables (`fast_path`)
OFFLOAD = f"iifname @bridges ct state established meta l4proto {{ tcp, udp }} flow add @{FLOWTABLE}"
# One transaction that makes and drops a flowtable: refused by a kernel without flowtables.
FLOWTABLE_PROBE = f"""\
add table {INET} netbay_probe
add flowtable {INET} netbay_probe {FLOWTABLE} {{ {_HOOK} devices = {{ "lo" }}; }}
delete table {INET} netbay_probe"""

SKELETON = """\
table inet netbay {
  set bridges { type ifname; }
  set internal { type ifname; }
  set bridged { type ifname . ipv4_addr; flags interval; }
  set same_bridge { type ifname . ifname; }
  set subnets { type ipv4_addr; flags interval; }
  set masq_nets { type ipv4_addr; flags interval; }
  map snat_nets { type ipv4_addr : ipv4_addr; flags interval; }
  set overlay_pools { type ipv4_addr; flags interval; }
  set overlay_own { type ifname . ipv4_addr; flags interval; }
  set routed_pools { type ipv4_addr; flags interval; }
  set same_pool { type ipv4_addr . ipv4_addr; flags interval; }
  map pub_any { type inet_proto . inet_service : ipv4_addr . inet_service; }
  map pub_ip { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }

  chain raw_prerouting {
    type filter hook prerouting priority raw; policy accept;
    # 127.0.0.0/8 only ever comes from lo: a neighbour routing it to us gets nothing
    iifname != "lo" ip daddr 127.0.0.0/8 drop
    # container to container on one bridge (br_netfilter hands bridged packets to these
    # hooks): no NAT, no flow to remember; the bridge's own addresses are not in the set
    iifname . ip daddr @bridged notrack
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @pub_ip
    fib daddr type local dnat ip to meta l4proto . th dport map @pub_any
  }
  chain output {
    type nat hook output priority -100; policy accept;
    fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @pub_ip
    fib daddr type local dnat ip to meta l4proto . th dport map @pub_any
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    # a container reaching a published port (its own: hairpin): the reply must come back
    # through the host to be un-NATed
    ct status dnat ip saddr @subnets oifname @bridges masquerade
    # the host's own 127.0.0.1 reaching a published port
    ip saddr 127.0.0.0/8 oifname @bridges masquerade
    # a cluster-wide network's containers reach its containers on other nodes as themselves
    ip saddr @overlay_pools ip daddr @overlay_pools accept
    oifname != @bridges snat ip to ip saddr map @snat_nets
    oifname != @bridges ip saddr @masq_nets masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    # a flow's first packet walks the rules below; the rest are accepted by its state (a
    # change that would drop a running flow ends its conntrack entry)
    ct state established,related accept
    iifname . oifname @same_bridge accept
    # a cluster-wide network: its own pool's traffic between this node's bridge and the
    # other nodes (tunnel or underlay), and no other network's
    oifname . ip saddr @overlay_own accept
    iifname . ip daddr @overlay_own accept
    iifname @bridges ip daddr @overlay_pools drop
    # a routed network (no bridge to name): its own pool's traffic, and no other network's
    ip saddr . ip daddr @same_pool accept
    ip saddr @routed_pools ip daddr @overlay_pools drop
    ip daddr @routed_pools ip saddr @overlay_pools drop
    iifname @internal drop
    oifname @internal drop
    ct status dnat oifname @bridges accept
    # anything else into a container network: other networks, routed-in neighbours
    oifname @bridges drop
  }
}
table bridge netbay {
  set ports { type ifname; }
  set endpoints { type ifname . ether_addr . ipv4_addr; }
  set icc_off_ports { type ifname; }

  chain prerouting {
    type filter hook prerouting priority filter; policy accept;
    # anti-spoofing: a container's port passes only its own MAC and IPv4 address (the
    # common case first: one lookup for a container's IPv4 packet)
    iifname . ether saddr . ip saddr @endpoints accept
    iifname != @ports accept
    iifname . ether saddr . arp saddr ip @endpoints accept
    drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname @icc_off_ports drop
  }
}
"""

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_PROTOS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class NetworkRules:
    device: str | None  # None: a routed network (no bridge; its veths are routed to)
    subnets: tuple[IPv4Network, ...]
    gateways: tuple[IPv4Address, ...] = ()  # the bridge's own addresses in SUBNETS
    internal: bool = False
    icc: bool = True
    masquerade: bool = True
    snat_to: IPv4Address | None = None
    pool: IPv4Network | None = None  # a cluster-wide network's: every node's blocks


@dataclass(frozen=True)
class EndpointRules:
    port: str  # the host end of the veth
    mac: str
    address: IPv4Address
    icc: bool = True


@dataclass(frozen=True)
class PortRules:
    proto: str
    host_ip: IPv4Address | None  # None: every host address
    host_port: int
    target: IPv4Address
    container_port: int


# (family, set name) -> elements in nft syntax
Elements = dict[tuple[str, str], list[str]]


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
        return out
    dev = _ifname(n.device)
    out[(INET, "bridges")] = [dev]
    out[(INET, "bridged")] = [f"{dev} . {low}-{high}" for low, high in
                              container_ranges(n.subnets, n.gateways)]
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
    return out


def container_ranges(
    subnets: Iterable[IPv4Network], gateways: Iterable[IPv4Address]
) -> list[tuple[IPv4Address, IPv4Address]]:
    """The addresses of SUBNETS a container can hold, as ranges: every host address but the
    GATEWAYS (the bridge's own, where a published port or the host is reached)."""
    ranges = []
    for subnet in map(IPv4Network, subnets):
        hosts = (subnet[1], subnet[-2]) if subnet.num_addresses > 2 else (subnet[0], subnet[-1])
        cuts = sorted(g for g in map(IPv4Address, gateways) if hosts[0] <= g <= hosts[1])
        low = hosts[0]
        for cut in [*cuts, hosts[1] + 1]:
            if low < cut:
                ranges.append((low, cut - 1))
            low = cut + 1
    return ranges


def endpoint_elements(e: EndpointRules) -> Elements:
    port = _ifname(e.port)
    out: Elements = {
        (BRIDGE, "ports"): [port],
        (BRIDGE, "endpoints"): [f"{port} . {_mac(e.mac)} . {IPv4Address(e.address)}"],
    }
    if not e.icc:
        out[(BRIDGE, "icc_off_ports")] = [port]
    return out


def port_elements(p: PortRules) -> Elements:
    if p.proto not in _PROTOS:
        raise ValueError(f"not a protocol: {p.proto!r}")
    target = f"{IPv4Address(p.target)} . {int(p.container_port)}"
    key = f"{p.proto} . {int(p.host_port)}"
    if p.host_ip is None:
        return {(INET, "pub_any"): [f"{key} : {target}"]}
    return {(INET, "pub_ip"): [f"{IPv4Address(p.host_ip)} . {key} : {target}"]}


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


def released_addresses(add: Elements, remove: Elements) -> set[IPv4Address]:
    """The containers' addresses whose running flows a change must end: an endpoint that
    goes, a published port's target that loses a mapping."""
    targets = [e.split(" : ")[1].split(" . ")[0] for name in ("pub_any", "pub_ip")
               for e in _gone(add, remove).get((INET, name), [])]
    return departed_addresses(add, remove) | set(map(IPv4Address, targets))


def departed_addresses(add: Elements, remove: Elements) -> set[IPv4Address]:
    """The addresses whose endpoint goes: the flows they started end too."""
    gone = _gone(add, remove).get((BRIDGE, "endpoints"), [])
    return {IPv4Address(e.rsplit(" . ", 1)[1]) for e in gone}


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
        f"add flowtable {INET} {TABLE} {FLOWTABLE} {{ {_HOOK}{listed} }}",
        f"insert rule {INET} {TABLE} forward {OFFLOAD}",
    ])


def flowtable_devices(add: Iterable[str], remove: Iterable[str]) -> str:
    """The flowtable's devices changed: ADD hooked, REMOVE unhooked."""
    lines = []
    for verb, names in (("delete", sorted(set(remove))), ("add", sorted(set(add)))):
        if names:
            lines.append(f"{verb} flowtable {INET} {TABLE} {FLOWTABLE} {{ {_HOOK} devices = "
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
