"""The IPv6 part of bird.conf (plan/bird.py renders the rest): present only when this node has
an IPv6 underlay address, so a v4-only node's configuration is what it always was.

IPv6 blocks go over the existing IPv4 sessions, as a second channel of each: BIRD cannot
derive an IPv6 next hop from an IPv4 session, so each channel names the node's IPv6 underlay
address (`next hop address`), and the peer routes the block to it, resolved (iBGP: recursively)
through the connected IPv6 networks the direct protocol feeds into master6. What goes out is
the node's IPv6 blocks exactly (their blackholes, a static protocol of their own); what comes
in is the blocks of the cluster's routed IPv6 subnets that are not inside this node's; a
kernel protocol of its own puts them into the kernel, as the IPv4 one does (`proto bird`),
leaving out what VXLAN carries (with encap cross-subnet: a next hop off this node's own IPv6
underlay networks). A peer without an IPv6 underlay address offers no ipv6 channel: BIRD then
runs the session with IPv4 alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Network, IPv6Address, IPv6Network
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .bird import BgpSettings

BLOCKS6_PROTOCOL = "netbay_blocks6"
KERNEL6_PROTOCOL = "netbay_kernel6"


def check(settings: BgpSettings) -> None:
    """The IPv6 fields of SETTINGS, each of its type; the blocks no host routes, disjoint."""
    if settings.address6 is not None and not isinstance(settings.address6, IPv6Address):
        raise ConfigError("address6", str(settings.address6), "not an IPv6 address")
    for field, networks in (("block6", settings.blocks6), ("pool6", settings.pools6),
                            ("underlay6", settings.underlay6),
                            ("cross_subnet6", settings.cross_subnet6),
                            ("tunnelled6", settings.tunnelled6)):
        for network in networks:
            if not isinstance(network, IPv6Network):
                raise ConfigError(field, str(network), "not an IPv6 network")
    for number, block in enumerate(settings.blocks6):
        if block.prefixlen == 128:
            raise ConfigError("block6", str(block), "a block, not a host route")
        for other in settings.blocks6[:number]:
            if block.overlaps(other):
                raise ConfigError("block6", str(block), f"overlaps block {other}")


# --- the text both families' parts share (plan/bird.py renders IPv4's with them too) -------
def prefix_set(networks: Iterable[IPv4Network | IPv6Network], suffix: str = "") -> str:
    return "[ " + ", ".join(f"{network}{suffix}" for network in networks) + " ]"


def reflect_filter(name: str, own_blocks: str | None, mesh: str) -> list[str]:
    """A reflector's export to the mesh: its blocks (the OWN_BLOCKS test, if it holds any)
    and what it learned from the mesh's sessions (protocols named MESH_...)."""
    return [f"filter {name} {{", *([own_blocks] if own_blocks else []),
            f'  if proto ~ "{mesh}_*" then accept;', "  reject;", "}"]


def install_filter_of(name: str, tunnelled: Sequence[IPv4Network | IPv6Network],
                      cross_subnet: Sequence[IPv4Network | IPv6Network],
                      underlay: Sequence[IPv4Network | IPv6Network]) -> str:
    """What of BGP's routes of one family the kernel gets: none inside TUNNELLED pools, and
    of CROSS_SUBNET pools only those with a next hop on an UNDERLAY subnet."""
    lines = [f"filter {name} {{", "  if source != RTS_BGP then reject;"]
    if tunnelled:
        lines.append(f"  if net ~ {prefix_set(tunnelled, '+')} then reject;")
    if cross_subnet:
        # `ip ~ [ prefix set ]` is no match in BIRD 2.0.12 (a runtime type error): one test each
        direct = " || ".join(f"bgp_next_hop ~ {subnet}" for subnet in underlay)
        unless = f" && !({direct})" if direct else ""
        lines.append(f"  if net ~ {prefix_set(cross_subnet, '+')}{unless} then reject;")
    return "\n".join([*lines, "  accept;", "}", ""])


# --- IPv6's part --------------------------------------------------------------------------


def own_blocks(settings: BgpSettings) -> str:
    return (f'  if proto = "{BLOCKS6_PROTOCOL}" && net ~ {prefix_set(settings.blocks6)} '
            "then accept;")


def filters(settings: BgpSettings, mesh: str) -> str:
    """netbay_export6 (the IPv6 blocks, exactly), netbay_import6 (the routed IPv6 subnets'
    blocks not inside this node's), and a reflector's netbay_reflect6 (MESH: the mesh
    sessions' name prefix)."""
    lines = ["filter netbay_export6 {", *([own_blocks(settings)] if settings.blocks6 else []),
             "  reject;", "}", "filter netbay_import6 {"]
    if settings.blocks6:
        lines.append(f"  if net ~ {prefix_set(settings.blocks6, '+')} then reject;")
    if settings.pools6:
        lines.append(f"  if net ~ {prefix_set(settings.pools6, '+')} then accept;")
    lines += ["  reject;", "}"]
    if settings.reflector:
        lines += reflect_filter("netbay_reflect6",
                                own_blocks(settings) if settings.blocks6 else None, mesh)
    return "\n".join([*lines, ""])


def installs_all(settings: BgpSettings) -> bool:
    return not settings.cross_subnet6 and not settings.tunnelled6


def install_filter(settings: BgpSettings) -> str:
    if installs_all(settings):
        return ""
    return install_filter_of("netbay_install6", settings.tunnelled6, settings.cross_subnet6,
                             settings.underlay6)


def local_protocols(settings: BgpSettings, netbay_protocol: int) -> str:
    """The IPv6 kernel table (as the IPv4 one: learned routes persist, netbay's own routes
    never read) and the IPv6 blocks' blackholes."""
    export = ("export where source = RTS_BGP;" if installs_all(settings)
              else "export filter netbay_install6;")
    return "\n".join(kernel_and_blocks(
        settings, "ipv6", KERNEL6_PROTOCOL, netbay_protocol, export, BLOCKS6_PROTOCOL,
        settings.blocks6)) + "\n"


def kernel_and_blocks(
    settings: BgpSettings, family: str, kernel: str, netbay_protocol: int, export: str,
    static: str, blocks: Iterable[IPv4Network | IPv6Network],
) -> list[str]:
    """One family's kernel protocol (learned routes persist: a restart does not cut traffic;
    the kernel's other routes resolve next hops of multihop peers, netbay's own, a /32 or
    /128 per workload, are no business of BIRD's) and its static protocol of the blocks'
    blackholes (none without blocks). Both families' (plan/bird.py's too)."""
    lines = [
        f"protocol kernel {kernel} {{",
        f"  {family} {{",
        f"    import where krt_source != {netbay_protocol};",
        f"    {export}",
        "  };",
        f"  kernel table {settings.kernel_table};",
        "  learn;",
        "  persist;",
        "  graceful restart on;",
        f"  scan time {settings.kernel_scan};",
        "}",
    ]
    blocks = list(blocks)
    if blocks:
        lines += [f"protocol static {static} {{", f"  {family};"]
        lines += [f"  route {block} blackhole;" for block in blocks]
        lines += ["}"]
    return lines


def channel(settings: BgpSettings, export: str) -> list[str]:
    """A session's ipv6 channel (EXPORT: the IPv4 channel's export filter's name)."""
    return [
        "  ipv6 {",
        f"    next hop address {settings.address6};",
        "    import filter netbay_import6;",
        f"    export filter {export}6;",
        "  };",
    ]
