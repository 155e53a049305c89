"""The daemon's side of `netbay doctor`: gathers the facts (in the host namespace, with the
daemon's nft context) that doctor.check judges."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..drivers import capabilities
from ..errors import FirewallError
from ..plan import firewall as fw
from . import facts
from .doctor import DoctorFacts, ForwardChain, check
from .doctor_docker import check_docker_plugin
from .doctor_routed import check_routed_rp_filter
from .doctor_v6 import Ipv6Facts, Uplink6, flowtable_devices, offload_rule
from .doctor_v6 import findings as ipv6_findings
from .topology import NETBAY_PREFIXES

if TYPE_CHECKING:
    from ..engine import Host
    from .observer import Observer

BRIDGE_NF = ("bridge-nf-call-iptables", "bridge-nf-call-arptables")
Json = dict[str, Any]


def forward_chains(ruleset: list[dict[str, Any]], devices: Iterable[str]) -> list[ForwardChain]:
    """Base chains of other tables on the forward hook, with how many rules they have and
    which netbay devices those rules name; from `nft -j list ruleset`."""
    names = list(devices)
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    for item in ruleset:
        chain = item.get("chain")
        if chain and chain.get("hook") == "forward" and chain.get("table") != "netbay":
            key = (chain["family"], chain["table"], chain["name"])
            chains[key] = {"policy": chain.get("policy", "accept"), "rules": 0, "mentions": set()}
    for item in ruleset:
        rule = item.get("rule")
        if not rule:
            continue
        entry = chains.get((rule["family"], rule["table"], rule["chain"]))
        if entry is not None:
            entry["rules"] += 1
            text = str(rule.get("expr"))
            entry["mentions"].update(n for n in names if f"'{n}'" in text)
    return [ForwardChain(f, t, c, e["policy"], e["rules"], tuple(sorted(e["mentions"])))
            for (f, t, c), e in sorted(chains.items())]


def legacy_forward(rules: str, devices: Iterable[str]) -> ForwardChain | None:
    """The FORWARD chain of iptables-legacy's filter table, from `iptables-legacy -S FORWARD`
    (a table nftables does not show)."""
    policy = next((ln.split()[2] for ln in rules.splitlines() if ln.startswith("-P FORWARD ")),
                  None)
    if policy is None:
        return None
    appended = [ln for ln in rules.splitlines() if ln.startswith("-A FORWARD")]
    names = sorted(d for d in devices if any(f" {d} " in f"{ln} " for ln in appended))
    return ForwardChain("iptables-legacy", "filter", "FORWARD", policy.lower(), len(appended),
                        tuple(names))


def _legacy_forward(devices: Iterable[str]) -> list[ForwardChain]:
    try:
        loaded = Path("/proc/net/ip_tables_names").read_text().split()
    except OSError:
        return []
    binary = shutil.which("iptables-legacy")
    if "filter" not in loaded or binary is None:
        return []
    result = subprocess.run([binary, "-w", "-S", "FORWARD"], capture_output=True, text=True,
                            timeout=30, check=False)
    chain = legacy_forward(result.stdout, devices) if result.returncode == 0 else None
    return [chain] if chain else []


def _bridge_nf() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key in BRIDGE_NF:
        try:
            out[key] = Path(f"/proc/sys/net/bridge/{key}").read_text().strip()
        except OSError:
            out[key] = None
    return out


def _rp_filter(devices: Iterable[str]) -> dict[str, int]:
    base = int(facts.interface_sysctl("all", "rp_filter") or 0)
    out = {"all": base}
    for device in devices:
        value = facts.interface_sysctl(device, "rp_filter")
        if value is not None:
            out[device] = max(base, int(value))
    return out


def _uptime() -> int:
    ticks = os.sysconf("SC_CLK_TCK")
    stat = Path("/proc/self/stat").read_text()
    started = int(stat[stat.rindex(")") + 2:].split()[19]) / ticks
    return int(float(Path("/proc/uptime").read_text().split()[0]) - started)


def _uplinks6(here: facts.Namespace, own: set[str]) -> tuple[Uplink6, ...]:
    """The devices of the IPv6 default routes, and those with an address not set by hand
    (netbay's own devices left out)."""
    defaults = [r for r in here.routes6 if r.destination is None and r.device]
    names = sorted(({r.device for r in defaults} | set(here.dynamic6)) - own)
    out = []
    for name in (n for n in names if not n.startswith(NETBAY_PREFIXES)):
        mine = [r for r in defaults if r.device == name]
        out.append(Uplink6(
            name, facts.interface_sysctl(name, "accept_ra", "ipv6"),
            facts.interface_sysctl(name, "forwarding", "ipv6"),
            ra_route=any(r.protocol == facts.RTPROT_RA for r in mine),
            dynamic=name in here.dynamic6,
            gateway=next((str(r.gateway) for r in mine if r.gateway), "")))
    return tuple(out)


def _ipv6_facts(host: Host, here: facts.Namespace, own: set[str],
                ruleset: list[dict[str, Any]]) -> Ipv6Facts:
    try:
        listing = host.firewall_listing(f"flowtable inet {fw.TABLE} {fw.FLOWTABLE}")
    except FirewallError:  # no flowtable (or no table)
        listing = []
    return Ipv6Facts(
        forwarding=facts.sysctl("net.ipv6.conf.all.forwarding"),
        uplinks=_uplinks6(here, own),
        flowtable=flowtable_devices(listing),
        offloading=offload_rule(ruleset, fw.FLOWTABLE),
    )


def gather(host: Host, observer: Observer, dns: Json | None) -> DoctorFacts:
    topo = observer.topology()
    here = facts.read(None)
    devices = [n["device"]["name"] for n in topo["networks"] if n["device"]]
    shims = [n["shim"]["name"] for n in topo["networks"] if n["shim"]]
    routed = _routed_ports(host)
    try:
        ruleset = host.firewall_listing("ruleset")
    except FirewallError:
        ruleset = []
    default = next((r for r in here.routes if r.destination is None), None)
    uplink = here.link(default.device) if default else None
    return DoctorFacts(
        ip_forward=facts.sysctl("net.ipv4.ip_forward"),
        bridge_nf=_bridge_nf(),
        rp_filter=_rp_filter(devices + shims + routed),
        forward_chains=forward_chains(ruleset, devices) + _legacy_forward(devices),
        routes=[(r.destination, r.device) for r in here.routes
                if r.destination is not None and r.kind == "unicast"],
        uplink_mtu=(uplink.name, uplink.mtu) if uplink else None,
        topology=topo,
        audit=host.audit(),
        daemon={"pid": os.getpid(), "version": __version__, "uptime": _uptime(),
                "firewall": host.firewall_intact(), "checked": time.time()},
        dns=dns,
        shims=shims,
        reconciler=host.reconcile_status(),
        routed_ports=routed,
        ipv6=_ipv6_facts(host, here, set(devices + shims), ruleset),
    )


def _routed_ports(host: Host) -> list[str]:
    """The host ends of the veths of networks routed by BGP (no bridge)."""
    return [e.host_ifname for n in host.store.networks() if capabilities(n.driver).bgp
            for e in host.store.endpoints(network_id=n.id) if e.host_ifname]


def doctor(host: Host, observer: Observer, dns: Json | None) -> list[Json]:
    found = gather(host, observer, dns)
    routed = check_routed_rp_filter(found.routed_ports, found.rp_filter)
    ipv6 = ipv6_findings(found.topology, found.ipv6) if found.ipv6 else []
    return [f.as_json() for f in [*check(found), routed, *ipv6, check_docker_plugin(os.environ)]]
