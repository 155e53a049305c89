"""`netbay doctor`: the checks that commonly break container networking, each with its fix.

Pure: `check` takes what the daemon gathered (DoctorFacts: sysctls, other tables' forward
chains, routes, the topology and audit) and returns findings; `render` prints them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, ip_network
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .doctor_v6 import Ipv6Facts

Json = dict[str, Any]
OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MARKS = {OK: "ok  ", WARN: "WARN", FAIL: "FAIL", SKIP: "skip"}
RECENT_EXIT = 600.0  # seconds: a DNS server that died this recently is still worth a warning


@dataclass(frozen=True)
class Finding:
    check: str
    status: str
    message: str
    fix: str = ""
    details: tuple[tuple[str, Any], ...] = ()  # what was read, for the JSON form (if any)

    def as_json(self) -> Json:
        out: Json = {"check": self.check, "status": self.status, "message": self.message,
                     "fix": self.fix}
        if self.details:
            out["details"] = dict(self.details)
        return out


@dataclass(frozen=True)
class ForwardChain:
    """A base chain of another table on the forward hook."""

    family: str
    table: str
    chain: str
    policy: str
    rules: int
    mentions: tuple[str, ...] = ()  # netbay devices its rules name


@dataclass
class DoctorFacts:
    ip_forward: str | None
    bridge_nf: dict[str, str | None]  # bridge-nf-call-iptables...; None: br_netfilter absent
    rp_filter: dict[str, int]  # device ("all" too) -> effective value
    forward_chains: Sequence[ForwardChain]
    routes: Sequence[tuple[IPv4Network, str]]  # main table, non-default: (destination, device)
    uplink_mtu: tuple[str, int] | None  # the default route's device and its MTU
    topology: Json
    audit: Sequence[str]
    daemon: Json
    dns: Json | None  # DnsSupervisor.health(); None: the daemon runs no DNS server
    shims: Sequence[str] = field(default_factory=list)
    reconciler: Json | None = None  # Host.reconcile_status(); None: not known
    routed_ports: Sequence[str] = field(default_factory=list)  # routed veths' host ends
    ipv6: Ipv6Facts | None = None  # for doctor_v6's checks (and the fast path's)


def _bridge_networks(topo: Json) -> list[Json]:
    """Networks with a bridge of their own on the host (topology names their device's role)."""
    return [n for n in topo["networks"] if _has_bridge(n)]


def _has_bridge(net: Json) -> bool:
    return bool(net["device"]) and net["device"].get("role") == "bridge"


def check_forwarding(f: DoctorFacts) -> Finding:
    routed = [n["name"] for n in _bridge_networks(f.topology) if not n["internal"]]
    if not routed:
        return Finding("ip_forward", OK, "no routed bridge network needs forwarding")
    if f.ip_forward == "1":
        return Finding("ip_forward", OK, "net.ipv4.ip_forward is 1")
    return Finding(
        "ip_forward", FAIL,
        f"net.ipv4.ip_forward is {f.ip_forward}: containers of {', '.join(routed)} reach "
        "nothing beyond their own network, and published ports do not work",
        "sysctl -w net.ipv4.ip_forward=1 (and keep it in /etc/sysctl.d/; netbayd sets it "
        "again when it makes a bridge)",
    )


def check_br_netfilter(f: DoctorFacts) -> Finding:
    if not _bridge_networks(f.topology):
        return Finding("br_netfilter", OK, "no bridge network")
    value = f.bridge_nf.get("bridge-nf-call-iptables")
    if value is None:
        return Finding(
            "br_netfilter", WARN,
            "br_netfilter is not loaded: a container reaching a published port of its own "
            "network (hairpin) gets no answer",
            "modprobe br_netfilter (and add it to /etc/modules-load.d/)")
    if value != "1":
        return Finding(
            "br_netfilter", WARN,
            f"net.bridge.bridge-nf-call-iptables is {value}: traffic between containers of one "
            "bridge skips the IP hooks, so hairpin publishing gets no answer",
            "sysctl -w net.bridge.bridge-nf-call-iptables=1")
    return Finding("br_netfilter", OK, "bridge-nf-call-iptables is 1 (bridged IPv4 traffic "
                   "also passes other tables' forward chains)")


def check_rp_filter(f: DoctorFacts) -> Finding:
    strict = [d for d, v in f.rp_filter.items() if v == 1 and d in f.shims]
    if strict:
        return Finding(
            "rp_filter", WARN,
            f"strict reverse-path filtering on {', '.join(strict)}: the host link of a "
            "macvlan/ipvlan network answers by another path and strict rp_filter drops it",
            "sysctl -w net.ipv4.conf.all.rp_filter=2 "
            + " ".join(f"net.ipv4.conf.{d}.rp_filter=2" for d in strict))
    values = ", ".join(f"{d}={v}" for d, v in sorted(f.rp_filter.items()))
    return Finding("rp_filter", OK, f"rp_filter {values or 'unset'}: nothing netbay uses "
                   "depends on asymmetric paths")


def _accept_rules(chain: ForwardChain, bridges: list[str]) -> str:
    """What lets netbay's traffic through a drop-policy forward chain of someone else's."""
    if chain.family == "iptables-legacy":
        return "; ".join(
            f"iptables-legacy -I FORWARD -i {b} -j ACCEPT; iptables-legacy -I FORWARD -o {b} "
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT" for b in bridges)
    where = f"{chain.family} {chain.table} {chain.chain}"
    return (f"nft insert rule {where} iifname {{ {', '.join(bridges)} }} accept; "
            f"nft insert rule {where} oifname {{ {', '.join(bridges)} }} ct state "
            "established,related accept")


def check_forward_policies(f: DoctorFacts) -> list[Finding]:
    bridges = [n["device"]["name"] for n in _bridge_networks(f.topology)]
    out = []
    for chain in f.forward_chains:
        if chain.policy != "drop" or not bridges:
            continue
        where = f"table {chain.family} {chain.table} chain {chain.chain}"
        rule = _accept_rules(chain, bridges)
        if chain.mentions:
            out.append(Finding(
                "forward policy", WARN,
                f"{where} drops by default; its rules name {', '.join(chain.mentions)} but not "
                "every netbay bridge: check that they accept both directions",
                rule))
        else:
            out.append(Finding(
                "forward policy", FAIL,
                f"{where} has policy drop and no rule for netbay's bridges: it drops "
                f"traffic of {', '.join(bridges)} that netbay's own table accepts (a packet must "
                "pass every table's chain on the hook)",
                rule))
    if not out:
        out.append(Finding("forward policy", OK, "no other table drops forwarded traffic by "
                           "default"))
    return out


def check_mtu(f: DoctorFacts) -> list[Finding]:
    out = []
    for net in f.topology["networks"]:
        device = net["device"]
        if not device or not device.get("present"):
            continue
        for port in net["ports"]:
            end = port.get("end") or {}
            if end.get("mtu") and port.get("mtu") and end["mtu"] != port["mtu"]:
                out.append(Finding(
                    "mtu", WARN, f"network {net['name']}: veth {port['name']} has MTU "
                    f"{port['mtu']}, its container end {end['mtu']}",
                    f"netbay network connect/disconnect re-makes the pair; or ip link set "
                    f"{port['name']} mtu {end['mtu']}"))
        for member in net["members"]:
            if member.get("mtu") and device.get("mtu") and member["mtu"] > device["mtu"]:
                out.append(Finding(
                    "mtu", FAIL, f"network {net['name']}: {member['container']}:"
                    f"{member['ifname']} has MTU {member['mtu']} above its parent "
                    f"{device['name']}'s {device['mtu']}", "recreate the network with "
                    f"-o com.docker.network.driver.mtu={device['mtu']}"))
        if (_has_bridge(net) and not net["internal"] and f.uplink_mtu
                and device.get("mtu", 0) > f.uplink_mtu[1]):
            out.append(Finding(
                "mtu", WARN, f"network {net['name']}: bridge {device['name']} MTU "
                f"{device['mtu']} is above the uplink {f.uplink_mtu[0]}'s {f.uplink_mtu[1]}: "
                "large packets to the outside need path-MTU discovery, which middleboxes break",
                f"netbay network create -o com.docker.network.driver.mtu={f.uplink_mtu[1]} ..."))
    out += _vxlan_mtu(f.topology)
    return out or [Finding("mtu", OK, "MTUs agree along every netbay path")]


def _vxlan_mtu(topo: Json) -> list[Finding]:
    """A VXLAN device (a host interface or a port of a bridge) must leave 50 bytes of its
    lower device's MTU for the encapsulation."""
    devices = list(topo["interfaces"]) + [p for n in topo["networks"] for p in n["ports"]]
    devices += [n["device"] for n in topo["networks"] if n["device"]]
    mtus = {d["name"]: d.get("mtu", 0) for d in devices}
    out = []
    for device in devices:
        lower = (device.get("details") or {}).get("dev")
        if device.get("kind") == "vxlan" and lower in mtus and device.get("mtu", 0) > (
            mtus[lower] - 50
        ):
            out.append(Finding(
                "mtu", WARN, f"vxlan {device['name']} MTU {device['mtu']} leaves no room for "
                f"its 50-byte header on {lower} ({mtus[lower]})",
                f"ip link set {device['name']} mtu {mtus[lower] - 50}"))
    return out


def check_overlaps(f: DoctorFacts) -> list[Finding]:
    out = []
    own = {n["device"]["name"] for n in f.topology["networks"] if n["device"]}
    own |= {n["shim"]["name"] for n in f.topology["networks"] if n["shim"]}
    for net in f.topology["networks"]:
        for text in net["subnets"]:
            subnet = ip_network(text)  # an IPv6 one overlaps none of the (IPv4) host routes
            for destination, device in f.routes:
                if device in own or not subnet.overlaps(destination):
                    continue
                out.append(Finding(
                    "subnet overlap", FAIL,
                    f"network {net['name']} {subnet} overlaps the host route {destination} dev "
                    f"{device}: hosts there are unreachable from the containers, and "
                    "replies may leave by the wrong interface",
                    f"recreate {net['name']} with a --subnet clear of {destination}, or remove "
                    "that route"))
    return out or [Finding("subnet overlap", OK, "no network overlaps a host route")]


def _covered(line: str, problems: Sequence[str]) -> bool:
    """An audit line about an object (a name or id holding digits) the topology reports."""
    names = [t.strip(":,") for t in line.split() if any(c.isdigit() for c in t)]
    return any(name in p for name in names for p in problems) if names else line in problems


def check_orphans(f: DoctorFacts) -> Finding:
    problems = list(f.topology["problems"])
    problems += [a for a in f.audit if not _covered(a, problems)]
    if not problems:
        return Finding("record vs kernel", OK, "netbay's record and the kernel agree")
    stray = [p.split()[1].rstrip(":") for p in problems if p.startswith("interface ")]
    fix = "netbay system gc (repairs interrupted operations, removes orphan bridge ports)"
    if stray:
        fix += "; links no record owns: " + "; ".join(f"ip link del {s}" for s in stray)
    return Finding("record vs kernel", FAIL, "; ".join(problems), fix)


def check_daemon(f: DoctorFacts) -> Finding:
    d = f.daemon
    if not d.get("firewall"):
        return Finding("daemon", FAIL, f"netbayd {d.get('version')} (pid {d.get('pid')}) "
                       "answers, but netbay's nftables tables are missing",
                       "netbay system reload")
    return Finding("daemon", OK, f"netbayd {d.get('version')} pid {d.get('pid')}, up "
                   f"{d.get('uptime', '?')}s; nftables tables in place")


def check_reconciler(f: DoctorFacts) -> list[Finding]:
    """What netbayd's reconciler put back, and what keeps drifting (nothing when the facts
    have no counters)."""
    return [] if f.reconciler is None else [_reconciler(f.reconciler)]


def _reconciler(status: Json) -> Finding:
    repairs, failures, flapping = status["Repairs"], status["Failures"], status["Flapping"]
    if flapping:
        what = "; ".join(f"{d['Drift']} (repaired {d['Repairs']} times in a row, next try in "
                         f"{d['NextTry']} s)" for d in flapping)
        return Finding(
            "reconciler", WARN, f"keeps drifting, so netbayd backs off: {what}",
            "something on this host keeps undoing it: find what (`ip monitor link address "
            "route`, `nft monitor`) and stop it; netbayd puts it back once it stays")
    if failures:
        return Finding("reconciler", WARN, f"netbayd could not repair: {_kinds(failures)}",
                       "netbayd's log says why, one line each")
    if repairs:
        return Finding("reconciler", OK, f"netbayd repaired {sum(repairs.values())} drift(s) "
                       f"since it started ({_kinds(repairs)}); each is in its log")
    return Finding("reconciler", OK, "no drift since netbayd started")


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in counts.items())


def _addresses(count: int) -> str:
    return "1 address" if count == 1 else f"{count} addresses"


def _last_exit(dns: Json) -> str:
    last = dns.get("last_exit")
    if not last:
        return "it has not started yet"
    who = f"pid {last['pid']}" if last["pid"] else "it"
    return f"{who} {last['how']} {last['ago']:.1f} s ago"


def _next_start(dns: Json) -> str:
    if dns["phase"] == "backoff":
        return (f"netbayd starts it again in {dns['retry_in']:.1f} s (restart "
                f"{dns['restarts']}; the wait doubles while it keeps dying young)")
    if dns["phase"] == "starting":
        return "netbayd is starting it again"
    if dns["phase"] == "closed":
        return "netbayd is shutting down"
    return "netbayd starts it with the next change"


def _dns_answering(dns: Json) -> Finding:
    wanted, listening = dns["wanted"], dns["listening"]
    server = f"DNS server (pid {dns['pid']})"
    missing = sorted(set(wanted) - set(listening))
    if missing:
        why = "; ".join(f"{a} (network {wanted[a]}): {dns['failed'].get(a, 'not bound yet')}"
                        for a in missing)
        return Finding(
            "dns", FAIL, f"{server} does not answer on {why}: containers there cannot resolve "
            "names", "a bridge missing: netbay system gc; port 53 held by another program: "
            "ss -lunp 'sport = :53' names it (netbay-dns tries again every 0.5 s)")
    text = f"DNS server running (pid {dns['pid']}), answering on {_addresses(len(listening))}"
    if listening:
        text += f" ({', '.join(listening)})"
    last = dns.get("last_exit")
    if last and last["ago"] < RECENT_EXIT:
        return Finding("dns", WARN, f"{text}; restarted after {_last_exit(dns)}",
                       f"why it died: {dns['log']} (and dmesg, if the OOM killer did it)")
    return Finding("dns", OK, text)


def check_dns(f: DoctorFacts) -> Finding:
    dns = f.dns
    if dns is None:
        return Finding("dns", SKIP, "this netbayd runs no DNS server: DNS not checked")
    if dns["answered"]:
        return _dns_answering(dns)
    if dns["healthy"]:
        return Finding("dns", OK, "DNS server not started: no network has containers to "
                       "answer yet")
    if dns["alive"]:
        return Finding(
            "dns", FAIL, f"DNS server (pid {dns['pid']}) runs but did not answer netbayd "
            "within 1 s: containers' names do not resolve",
            f"kill -KILL {dns['pid']} (netbayd starts a new one); if it hangs again, see "
            f"{dns['log']}")
    networks = sorted(set(dns["wanted"].values()))
    return Finding(
        "dns", FAIL, f"DNS server not running: {_last_exit(dns)}; {_next_start(dns)}; "
        f"meanwhile names do not resolve on {', '.join(networks) or 'any network'}",
        f"run netbay doctor again in a few seconds; if it keeps dying, see {dns['log']}")


def check(f: DoctorFacts) -> list[Finding]:
    return [
        check_daemon(f), check_forwarding(f), check_br_netfilter(f), check_rp_filter(f),
        *check_forward_policies(f), *check_mtu(f), *check_overlaps(f), check_orphans(f),
        *check_reconciler(f), check_dns(f),
    ]


def render(findings: Sequence[Json]) -> str:
    lines = []
    for item in findings:
        lines.append(f"[{MARKS.get(item['status'], item['status'])}] {item['check']}: "
                     f"{item['message']}")
        if item["fix"] and item["status"] in (WARN, FAIL):
            lines.append(f"       fix: {item['fix']}")
    bad = [i for i in findings if i["status"] in (WARN, FAIL)]
    lines.append(f"{len(bad)} problem(s) found" if bad else "no problems found")
    return "\n".join(lines)
