"""One node's BGP speaker, planned: from its BgpSettings, the text of BIRD 2's bird.conf; pure
(kernel/bird.py checks the text, writes it and runs BIRD with it).

What the configuration makes BIRD do:
- announce each of the node's address blocks, as a static blackhole route inside BIRD, to
  every peer, and nothing else: the export filter matches the blocks exactly, so no /32 of
  a workload (netbay's own kernel routes, which BIRD does not even import) ever leaves;
- take the peers' routes, except any inside the node's own blocks (nobody takes those over),
  and install them in the kernel table; the blocks' blackholes stay inside BIRD;
- a full iBGP mesh by default, one side of each pair passive (the higher address waits, the
  lower one connects: one TCP session per pair, no collisions to resolve); a node with route
  reflector clients reflects to them what it learned from the mesh (the next hop stays the
  node the route came from), external peers (a top-of-rack router) get the blocks only;
- put into the kernel what BGP learned, except routes that VXLAN carries (encap always, and
  encap cross-subnet with a next hop off this node's underlay subnets, as a reflector's
  routes from other subnets have): the tunnel's route has metric 0, BIRD's 32, so a BIRD route
  beside it would carry the traffic unencapsulated whenever the tunnel's route is missing;
- graceful restart: peers keep a restarting node's routes for GRACEFUL_RESTART seconds, and a
  restarted BIRD (`bird -R`) waits at most that long for its sessions before it syncs the
  kernel; BIRD's default wait is 240 s, which left Calico's nodes without routes for four
  minutes after a reboot (Calico #7144, #9597).

The kernel route protocol: BIRD 2 (2.0.12, Debian 12) installs every route with protocol
`bird` (RTPROT_BIRD, 12): the value is fixed in its netlink code, and `krt_source` is the
protocol of routes it reads from the kernel; a filter may assign it (the parser accepts that),
but the installed route stays `proto bird`. So routes learned by BGP are RTPROT_BIRD in the
kernel, not RTPROT_NETBAY (57): netbay's own code that lists or prunes its routes by protocol
57 (overlay sync, observe) never sees or touches them, and BIRD (which prunes only protocol 12
routes it did not make) never touches netbay's; whatever shows BGP's routes must look for 12.

IPv6 (a node with an IPv6 underlay address): plan/bird6.py, an ipv6 channel on each session.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from ..errors import ConfigError
from . import bird6

RTPROT_BIRD = 12  # the protocol of every route BIRD 2 installs (see above)
NETBAY_PROTOCOL = 57  # kernel/rtnl_wire.py's RTPROT_NETBAY (plan/ imports nothing of kernel/)
MAX_ASN = (1 << 32) - 1
MAX_TABLE = (1 << 32) - 1
MAIN_TABLE = 254
GRACEFUL_RESTART = 30  # seconds; BIRD's 240 s wait is what made Calico's reboots slow
MAX_RESTART_TIME = 4095  # the graceful restart capability carries 12 bits
KERNEL_SCAN = 10  # seconds between BIRD's scans of the kernel table: a removed route is back
# seconds from a session's start to its first connect (BIRD's 5 s would be most of the 5 s
# a joining node has to be reachable in), then between failed connects (BIRD's 120 s: a node
# that connected before its peer knew it would wait two minutes), and the backoff after an
# error (BIRD's 60-300 s). Keepalive and hold stay BIRD's: short ones flapped (Calico #7086).
CONNECT_DELAY = 1
CONNECT_RETRY = 5
ERROR_WAIT = (1, 30)
BLOCKS_PROTOCOL = "netbay_blocks"
MESH, EXTERNAL = "mesh", "peer"  # the prefixes of the sessions' protocol names
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # quoted in bird.conf: nothing to escape


def _address(field: str, value: object) -> IPv4Address:
    """VALUE as an IPv4 address (an IPv4Address or its text), else a ConfigError on FIELD."""
    if isinstance(value, IPv4Address):
        return value
    try:
        parsed = ip_address(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, IPv4Address):
        raise ConfigError(field, str(value), "not an IPv4 address")
    return parsed


def _check_asn(asn: int, whose: str) -> None:
    if not 1 <= asn <= MAX_ASN:
        raise ConfigError("asn", asn, f"out of range 1-{MAX_ASN} ({whose})")


def _check_name(field: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ConfigError(field, name, "letters, digits, '.', '_' or '-' only, at most 63")


# --- input ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Peer:
    """A BGP neighbour."""

    name: str  # a node's name, or the router's (the session's description in BIRD)
    address: IPv4Address  # its BGP address: the one it chose, never "first found"
    asn: int

    def __post_init__(self) -> None:
        _check_name("peer name", self.name)
        object.__setattr__(self, "address", _address("peer address", self.address))
        _check_asn(self.asn, f"peer {self.name}")


@dataclass(frozen=True)
class MeshPeer(Peer):
    """Another node of the cluster, as the cluster record has it."""

    rr_client: bool = False  # this node is its route reflector


@dataclass(frozen=True)
class ExternalPeer(Peer):
    """A router outside the cluster (a top-of-rack switch), peered by eBGP."""


@dataclass(frozen=True)
class BgpSettings:
    """This node's BGP speaker."""

    router_id: IPv4Address  # the node's address: BGP identifier and the sessions' source
    asn: int
    blocks: tuple[IPv4Network, ...] = ()  # the node's address blocks: all it announces
    mesh: tuple[MeshPeer, ...] = ()
    external: tuple[ExternalPeer, ...] = ()
    cluster_id: IPv4Address | None = None  # as a route reflector; default: the router id
    underlay: tuple[IPv4Network, ...] = ()  # this node's underlay subnets (next hops direct)
    cross_subnet: tuple[IPv4Network, ...] = ()  # pools installed only via an underlay next hop
    tunnelled: tuple[IPv4Network, ...] = ()  # pools whose routes BGP never installs
    kernel_table: int = MAIN_TABLE  # where learned routes go
    # the routed networks' IPv4 subnets: where what BIRD learns lies (not rendered: the
    # routes in them are flushed when BIRD stops for good)
    pools: tuple[IPv4Network, ...] = ()
    graceful_restart: int = GRACEFUL_RESTART
    kernel_scan: int = KERNEL_SCAN
    connect_delay: int = CONNECT_DELAY
    # IPv6 (plan/bird6.py), over the IPv4 sessions: only with ADDRESS6, this node's IPv6
    # underlay address (the next hop it announces its IPv6 blocks with)
    address6: IPv6Address | None = None
    blocks6: tuple[IPv6Network, ...] = ()  # the node's IPv6 blocks: all it announces
    pools6: tuple[IPv6Network, ...] = ()  # the routed networks' IPv6 subnets: all it takes
    underlay6: tuple[IPv6Network, ...] = ()
    cross_subnet6: tuple[IPv6Network, ...] = ()
    tunnelled6: tuple[IPv6Network, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "router_id", _address("router_id", self.router_id))
        if self.cluster_id is not None:
            object.__setattr__(self, "cluster_id", _address("cluster_id", self.cluster_id))
        _check_asn(self.asn, "this node")
        for field, networks in (("block", self.blocks), ("underlay", self.underlay),
                                ("cross_subnet", self.cross_subnet),
                                ("tunnelled", self.tunnelled)):
            for network in networks:
                if not isinstance(network, IPv4Network):
                    raise ConfigError(field, str(network), "not an IPv4 network")
        self._check_blocks()
        bird6.check(self)
        self._check_peers()
        for field, value, low, high in (
            ("kernel_table", self.kernel_table, 1, MAX_TABLE),
            ("graceful_restart", self.graceful_restart, 1, MAX_RESTART_TIME),
            ("kernel_scan", self.kernel_scan, 1, 3600),
            ("connect_delay", self.connect_delay, 0, 3600),
        ):
            if not low <= value <= high:
                raise ConfigError(field, value, f"out of range {low}-{high}")

    def _check_blocks(self) -> None:
        for number, block in enumerate(self.blocks):
            if block.prefixlen == 32:
                raise ConfigError("block", str(block), "a block, not a host route")
            for other in self.blocks[:number]:
                if block.overlaps(other):
                    raise ConfigError("block", str(block), f"overlaps block {other}")

    def _check_peers(self) -> None:
        seen_names: set[str] = set()
        seen_addresses = {self.router_id}
        for peer in self.peers:
            if peer.name in seen_names:
                raise ConfigError("peer name", peer.name, "listed twice")
            if peer.address in seen_addresses:
                why = "this node's own" if peer.address == self.router_id else "listed twice"
                raise ConfigError("peer address", str(peer.address), why)
            seen_names.add(peer.name)
            seen_addresses.add(peer.address)
        for peer in self.mesh:
            if peer.rr_client and peer.asn != self.asn:
                raise ConfigError("rr_client", peer.name, "a reflector's clients share its ASN")

    @property
    def peers(self) -> tuple[Peer, ...]:
        return (*self.mesh, *self.external)

    @property
    def reflector(self) -> bool:
        return any(peer.rr_client for peer in self.mesh)

    @property
    def ipv6(self) -> bool:
        """Each session carries IPv6 blocks too (this node has an IPv6 underlay address)."""
        return self.address6 is not None

    @property
    def installs_all(self) -> bool:
        """Every route BGP learned goes into the kernel (no pool is carried by VXLAN)."""
        return not self.cross_subnet and not self.tunnelled

    def passive_towards(self, peer: MeshPeer) -> bool:
        """The higher address of a pair waits for the lower one to connect."""
        return self.router_id > peer.address


# --- output -----------------------------------------------------------------------------
def protocol_name(kind: str, address: IPv4Address) -> str:
    """BIRD's name of the session with ADDRESS: `mesh_192_0_2_12`, `peer_198_51_100_1`."""
    return f"{kind}_{str(address).replace('.', '_')}"


def render(settings: BgpSettings) -> str:
    """The whole bird.conf for SETTINGS."""
    sections = [_globals(settings), _filters(settings), _reflect_filter(settings),
                _install_filter(settings), _local_protocols(settings)]
    if settings.ipv6:
        sections += [bird6.filters(settings, MESH), bird6.install_filter(settings),
                     bird6.local_protocols(settings, NETBAY_PROTOCOL)]
    sections += [_session(settings, peer) for peer in settings.peers]
    return "\n".join(section for section in sections if section)


def _globals(settings: BgpSettings) -> str:
    return "\n".join([
        "# Written by netbay: changes here are lost at its next write.",
        "log stderr { info, remote, warning, error, auth, fatal, bug };",
        'timeformat protocol "%s";',  # `since` in unix seconds, for `netbay bgp status`
        f"router id {settings.router_id};",
        f"graceful restart wait {settings.graceful_restart};",
        "",
    ])


def _own_blocks(settings: BgpSettings) -> str:
    blocks = bird6.prefix_set(settings.blocks)
    return f'  if proto = "{BLOCKS_PROTOCOL}" && net ~ {blocks} then accept;'


def _filters(settings: BgpSettings) -> str:
    """What goes out (the blocks, exactly) and what comes in (anything not inside them)."""
    if not settings.blocks:
        return "filter netbay_export { reject; }\nfilter netbay_import { accept; }\n"
    return "\n".join([
        "filter netbay_export {",
        _own_blocks(settings),
        "  reject;",
        "}",
        "filter netbay_import {",
        f"  if net ~ {bird6.prefix_set(settings.blocks, '+')} then reject;",
        "  accept;",
        "}",
        "",
    ])


def _reflect_filter(settings: BgpSettings) -> str:
    """A reflector's export to the mesh: its blocks and what it learned from the mesh (BIRD
    keeps a client's routes from going back to it and non-clients' from going to each other;
    external peers' routes stay with the node that peers with them)."""
    if not settings.reflector:
        return ""
    own = _own_blocks(settings) if settings.blocks else None
    return "\n".join([*bird6.reflect_filter("netbay_reflect", own, MESH), ""])


def _install_filter(settings: BgpSettings) -> str:
    """What of BGP's routes the kernel gets (the module's docstring says why not all)."""
    if settings.installs_all:
        return ""
    return bird6.install_filter_of("netbay_install", settings.tunnelled, settings.cross_subnet,
                                   settings.underlay)


def _local_protocols(settings: BgpSettings) -> str:
    """Interfaces, connected networks (to resolve the peers' next hops), the kernel table and
    the blocks."""
    lines = [
        "protocol device {",
        "}",
        "protocol direct {",
        "  ipv4;",
        *(["  ipv6;"] if settings.ipv6 else []),  # resolves the peers' IPv6 next hops
        "}",
    ]
    export = ("export where source = RTS_BGP;" if settings.installs_all
              else "export filter netbay_install;")
    lines += bird6.kernel_and_blocks(settings, "ipv4", "netbay_kernel", NETBAY_PROTOCOL,
                                     export, BLOCKS_PROTOCOL, settings.blocks)
    return "\n".join(lines) + "\n"


def _session(settings: BgpSettings, peer: Peer) -> str:
    mesh = isinstance(peer, MeshPeer)
    export = "netbay_reflect" if mesh and settings.reflector else "netbay_export"
    lines = [
        f"protocol bgp {protocol_name(MESH if mesh else EXTERNAL, peer.address)} {{",
        f'  description "{peer.name}";',
        f"  local {settings.router_id} as {settings.asn};",
        f"  neighbor {peer.address} as {peer.asn};",
        *_session_roles(settings, peer),
        "  graceful restart on;",
        f"  graceful restart time {settings.graceful_restart};",
        f"  connect delay time {settings.connect_delay};",
        f"  connect retry time {CONNECT_RETRY};",
        f"  error wait time {ERROR_WAIT[0]}, {ERROR_WAIT[1]};",
        "  ipv4 {",
        "    import filter netbay_import;",
        f"    export filter {export};",
        "  };",
        *(bird6.channel(settings, export) if settings.ipv6 else []),
        "}",
    ]
    return "\n".join(lines) + "\n"


def _session_roles(settings: BgpSettings, peer: Peer) -> Iterator[str]:
    if not isinstance(peer, MeshPeer):
        return
    if settings.passive_towards(peer):
        yield "  passive on;"
    if peer.rr_client:
        yield "  rr client;"
    if peer.rr_client or settings.cluster_id is not None:
        # also towards the other reflectors: a route one of them reflected carries the shared
        # id, and the other refuses it instead of offering it back to its client
        yield f"  rr cluster id {settings.cluster_id or settings.router_id};"
