"""Desired vs observed: the drifts, pure.

Each drift is one line (what drifted) and the fix that puts it back, or no fix: then it is
reported, not fought (a link of the wrong kind where netbay's should be, a device netbay
did not make and cannot re-make). Consequences wait for their cause: nothing is checked of
a link whose lower link is missing, a port is not re-plugged into a bridge that is missing,
and routes and sysctls of a link that drifted are checked after it is repaired (a link set
up again gets its subnet's route from the kernel; adding it by hand first would double it).
"""

from __future__ import annotations

from dataclasses import dataclass

from .fixes import (
    AddAddress,
    AddRoute,
    Fix,
    HoldBlackhole,
    HoldLocalAddress,
    RebuildFirewall,
    RemakeNetwork,
    SetHairpin,
    SetLink,
    WriteSysctl,
)
from .state import LOOPBACK, Desired, LinkState, Observed, WantedLink

# kinds of drift: the counters' names
MISSING, KIND, MASTER, DOWN, MTU, MAC = "missing", "kind", "port", "down", "mtu", "mac"
HAIRPIN, ADDRESS, ROUTE, SYSCTL, FIREWALL = "hairpin", "address", "route", "sysctl", "firewall"
BLACKHOLE = "blackhole"


@dataclass(frozen=True)
class Drift:
    kind: str
    subject: str  # the object: a link name, "ADDRESS on LINK", "route ...", a sysctl
    what: str  # the one line that says what drifted
    fix: Fix | None = None  # None: reported, not repaired

    @property
    def key(self) -> tuple[str, str]:
        """The same drift of the same object has the same key from pass to pass."""
        return (self.kind, self.subject)

    def __str__(self) -> str:
        return self.what


def compare(desired: Desired, observed: Observed) -> list[Drift]:
    missing = {w.name for w in desired.links if w.name not in observed.links}
    drifts: list[Drift] = []
    unsettled = set(missing)
    for wanted in desired.links:
        found = link_drifts(wanted, observed, missing)
        if found:
            unsettled.add(wanted.name)
        drifts += found
    for route in desired.routes:
        if route.device not in unsettled and not observed.routed(route):
            drifts.append(Drift(ROUTE, str(route), f"{route.owner}: {route} missing",
                                AddRoute(route)))
    drifts += held_drifts(desired, observed)
    for sysctl in desired.sysctls:
        value = observed.sysctls.get(sysctl.where)
        if sysctl.device not in unsettled and value is not None and value != sysctl.value:
            drifts.append(Drift(SYSCTL, sysctl.name, f"{sysctl.owner}: {sysctl.name} is "
                                f"{value}, not {sysctl.value}", WriteSysctl(sysctl)))
    if desired.firewall and not observed.firewall:
        drifts.append(Drift(FIREWALL, "nftables", "netbay's nftables tables are missing",
                            RebuildFirewall()))
    return drifts


def held_drifts(desired: Desired, observed: Observed) -> list[Drift]:
    """The blackholes and lo's local addresses that are gone (each put back alone: neither
    hangs off a link netbay makes)."""
    drifts = [
        Drift(BLACKHOLE, str(hole), f"{hole.owner}: {hole} missing",
              HoldBlackhole(hole.destination))
        for hole in desired.blackholes if hole.destination not in observed.blackholes
    ]
    have = observed.addresses.get(LOOPBACK, frozenset())
    return drifts + [
        Drift(ADDRESS, str(local), f"{local.owner}: {LOOPBACK} lost its address "
              f"{local.interface}", HoldLocalAddress(local.address))
        for local in desired.local_addresses if local.interface not in have
    ]


def link_drifts(wanted: WantedLink, observed: Observed, missing: set[str]) -> list[Drift]:
    """What of WANTED differs from the kernel's link; MISSING: wanted links that are gone."""
    link = observed.links.get(wanted.name)
    if link is None:
        if wanted.lower in missing:
            return []
        role = f"{wanted.role} " if wanted.role else ""
        fix = RemakeNetwork(wanted.remake) if wanted.remake else None
        return [Drift(MISSING, wanted.name, f"{wanted.owner}: {role}{wanted.name} missing", fix)]
    if wanted.kind and link.kind != wanted.kind:
        return [Drift(KIND, wanted.name, f"{wanted.owner}: {wanted.name} is a "
                      f"{link.kind or 'plain'} link, not a {wanted.kind}: not netbay's to "
                      "replace")]
    return _attribute_drifts(wanted, link, missing) + _address_drifts(wanted, observed)


def _attribute_drifts(wanted: WantedLink, link: LinkState, missing: set[str]) -> list[Drift]:
    name, owner = wanted.name, wanted.owner
    out = []
    if wanted.master and link.master != wanted.master and wanted.master not in missing:
        elsewhere = f" (it is on {link.master})" if link.master else ""
        out.append(Drift(MASTER, name, f"{owner}: {name} is not a port of {wanted.master}"
                         f"{elsewhere}", SetLink(name, master=wanted.master)))
    if wanted.up and not link.up:
        out.append(Drift(DOWN, name, f"{owner}: {name} is down", SetLink(name, up=True)))
    if wanted.mtu and link.mtu != wanted.mtu:
        out.append(Drift(MTU, name, f"{owner}: {name} has MTU {link.mtu}, not {wanted.mtu}",
                         SetLink(name, mtu=wanted.mtu)))
    if wanted.mac and link.mac != wanted.mac:
        out.append(Drift(MAC, name, f"{owner}: {name} has MAC {link.mac}, not {wanted.mac}",
                         SetLink(name, mac=wanted.mac)))
    if wanted.hairpin and not link.hairpin and link.master == wanted.master:
        out.append(Drift(HAIRPIN, name, f"{owner}: {name} has hairpin off (a published "
                         "port's target reaching itself)", SetHairpin(name)))
    return out


def _address_drifts(wanted: WantedLink, observed: Observed) -> list[Drift]:
    have = observed.addresses.get(wanted.name, frozenset())
    return [
        Drift(ADDRESS, f"{address} on {wanted.name}",
              f"{wanted.owner}: {wanted.name} lost its address {address}",
              AddAddress(wanted.name, address))
        for address in sorted(wanted.addresses - have, key=lambda a: (a.version, a))
    ]
