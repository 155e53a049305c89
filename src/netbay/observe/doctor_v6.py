"""The doctor's IPv6 checks, and its line on the flowtable fast path; pure.

IPv6 forwarding: a container of an IPv6 network reaches beyond its bridge only when the host
forwards IPv6 (net.ipv6.conf.all.forwarding, a switch of its own: net.ipv4.ip_forward does
not cover it).

accept_ra: with forwarding on, the kernel takes router advertisements on an interface only
where accept_ra is 2; at 1 (the default) it ignores them, so an uplink whose default route
and address came from router advertisements (SLAAC) loses them, and the host its IPv6: the
classic outage of Docker with IPv6 (switching forwarding on even drops, at once, the default
routes router advertisements gave where accept_ra is not 2). The uplinks are the devices of
the host's IPv6 default routes, and those with an address not set by hand (one that
outlives the lost default route).

The fast path: whether netbay's flowtable exists, and which devices it hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .doctor import FAIL, OK, Finding

FORWARDING, ACCEPT_RA, FAST_PATH = "ipv6 forwarding", "accept_ra", "fast path"
Json = dict[str, Any]


@dataclass(frozen=True)
class Uplink6:
    """An interface the host's own IPv6 comes through, as the kernel has it."""

    name: str
    accept_ra: str | None  # net.ipv6.conf.NAME.accept_ra (None: unreadable)
    forwarding: str | None  # net.ipv6.conf.NAME.forwarding
    ra_route: bool = False  # a default route through it was learnt from a router advertisement
    dynamic: bool = False  # an address on it was not set by hand (SLAAC's, DHCPv6's)
    gateway: str = ""  # its default route's router, if any


@dataclass(frozen=True)
class Ipv6Facts:
    """What the IPv6 and fast-path checks read (health.gather fills it)."""

    forwarding: str | None  # net.ipv6.conf.all.forwarding (None: no IPv6 in this kernel)
    uplinks: tuple[Uplink6, ...] = ()
    flowtable: list[str] | None = None  # the devices of netbay's flowtable (None: none)
    offloading: bool = False  # netbay's forward chain has the `flow add` rule


def _ipv6_networks(topo: Json) -> tuple[list[str], list[str]]:
    """(networks with an IPv6 subnet, those of them forwarded: on a bridge, not internal)."""
    v6 = [n for n in topo["networks"] if n.get("ipv6")]
    routed = [n["name"] for n in v6 if n["device"] and n["device"].get("role") == "bridge"
              and not n["internal"]]
    return [n["name"] for n in v6], routed


def check_ipv6_forwarding(topo: Json, forwarding: str | None) -> Finding:
    """FORWARDING: net.ipv6.conf.all.forwarding (None: this kernel has no IPv6)."""
    details = (("forwarding", forwarding),)
    v6, routed = _ipv6_networks(topo)
    if not v6:
        return Finding(FORWARDING, OK, "no network has an IPv6 subnet", details=details)
    if forwarding is None:
        return Finding(FORWARDING, FAIL, f"this kernel has no IPv6 (no net.ipv6 sysctls): "
                       f"{', '.join(v6)} cannot carry IPv6",
                       "boot without ipv6.disable=1, or recreate the networks without --ipv6",
                       details)
    if not routed:
        return Finding(FORWARDING, OK, "no IPv6 bridge network needs forwarding (internal "
                       "only)", details=details)
    if forwarding == "1":
        return Finding(FORWARDING, OK, "net.ipv6.conf.all.forwarding is 1", details=details)
    return Finding(
        FORWARDING, FAIL,
        f"net.ipv6.conf.all.forwarding is {forwarding}: containers of {', '.join(routed)} "
        "reach nothing beyond their own network over IPv6 (net.ipv4.ip_forward does not "
        "cover IPv6)",
        "sysctl -w net.ipv6.conf.all.forwarding=1 (and keep it in /etc/sysctl.d/); first set "
        "accept_ra=2 on an uplink configured by router advertisements: forwarding on makes "
        "accept_ra=1 ignore them", details)


def _uplink_finding(up: Uplink6) -> Finding:
    how = " and ".join(x for x in (
        f"its default route (via {up.gateway or 'a router'}) came from a router "
        "advertisement" if up.ra_route else "",
        "an address on it is SLAAC's or DHCPv6's" if up.dynamic else "") if x)
    details = (("uplink", up.name), ("accept_ra", up.accept_ra), ("forwarding", up.forwarding),
               ("ra_route", up.ra_route), ("dynamic_address", up.dynamic))
    if up.accept_ra == "2":
        return Finding(ACCEPT_RA, OK, f"uplink {up.name} takes router advertisements with "
                       "forwarding on (accept_ra=2)", details=details)
    if up.accept_ra == "1" and up.forwarding == "1" and how:
        return Finding(
            ACCEPT_RA, FAIL,
            f"net.ipv6.conf.{up.name}.accept_ra is 1 and IPv6 forwarding is on: the kernel "
            f"ignores router advertisements on {up.name}, yet {how}: the host loses its IPv6 "
            "default route (at once as forwarding goes on, or when the router's lifetime ends) "
            "and then its address",
            f"sysctl -w net.ipv6.conf.{up.name}.accept_ra=2 (and keep it in /etc/sysctl.d/)",
            details)
    if up.accept_ra == "0":
        return Finding(ACCEPT_RA, OK, f"accept_ra is 0 on {up.name}: the kernel takes no "
                       "router advertisements there (a static setup, or a daemon such as "
                       "systemd-networkd handles them)", details=details)
    return Finding(ACCEPT_RA, OK, f"uplink {up.name} is configured by hand (no route or "
                   f"address from router advertisements): accept_ra={up.accept_ra or '?'} "
                   "does not matter", details=details)


def check_accept_ra(forwarding: str | None, uplinks: Sequence[Uplink6]) -> list[Finding]:
    """With IPv6 forwarding on, each uplink's accept_ra."""
    if forwarding != "1":
        return [Finding(ACCEPT_RA, OK, "IPv6 forwarding is off: router advertisements are "
                        "taken as each interface's accept_ra says")]
    if not uplinks:
        return [Finding(ACCEPT_RA, OK, "no IPv6 default route and no address from router "
                        "advertisements: no uplink depends on them")]
    return [_uplink_finding(up) for up in uplinks]


def flowtable_devices(listing: Sequence[Json]) -> list[str] | None:
    """The devices of the flowtable in `nft -j list flowtable ...` (None: no flowtable)."""
    tables = [o["flowtable"] for o in listing if "flowtable" in o]
    if not tables:
        return None
    devices = tables[0].get("dev", [])
    return sorted([devices] if isinstance(devices, str) else devices)


def offload_rule(ruleset: Sequence[Json], flowtable: str) -> bool:
    """Whether netbay's forward chain sends flows to FLOWTABLE (`flow add @FLOWTABLE`)."""
    for item in ruleset:
        rule = item.get("rule")
        if not rule or rule.get("table") != "netbay" or rule.get("chain") != "forward":
            continue
        for expr in rule.get("expr") or []:
            flow = expr.get("flow") if isinstance(expr, dict) else None
            if isinstance(flow, dict) and flow.get("flowtable") in (flowtable, f"@{flowtable}"):
                return True
    return False


def check_fast_path(devices: list[str] | None, offloading: bool, bridges: Sequence[str],
                    name: str = "ft") -> Finding:
    """DEVICES: the flowtable's (None: there is none); OFFLOADING: the forward chain's rule;
    BRIDGES: netbay's bridges present in the kernel."""
    details = (("flowtable", name if devices is not None else None),
               ("devices", devices or []), ("offload_rule", offloading))
    if devices is None:
        return Finding(FAST_PATH, OK, "off: table inet netbay has no flowtable (a kernel "
                       "without flowtables): every packet of a forwarded flow walks the "
                       "forward chain", details=details)
    if not offloading or not devices:
        why = "the forward chain sends no flow to it" if not offloading else "it hooks no device"
        return Finding(FAST_PATH, OK, f"off: flowtable inet netbay {name} exists but {why}",
                       details=details)
    text = (f"on: flowtable inet netbay {name} offloads established TCP/UDP flows of "
            f"{', '.join(devices)}")
    unhooked = sorted(set(bridges) - set(devices))
    if unhooked:
        text += f"; not of {', '.join(unhooked)} (their flows walk the forward chain)"
    return Finding(FAST_PATH, OK, text, details=details)


def findings(topo: Json, f: Ipv6Facts) -> list[Finding]:
    bridges = [n["device"]["name"] for n in topo["networks"] if n["device"]
               and n["device"].get("role") == "bridge" and n["device"].get("present")]
    return [check_ipv6_forwarding(topo, f.forwarding), *check_accept_ra(f.forwarding, f.uplinks),
            check_fast_path(f.flowtable, f.offloading, bridges)]

