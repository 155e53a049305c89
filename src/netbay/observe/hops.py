"""`netbay trace SRC DST`: the path of a real probe, hop by hop; pure.

The daemon sends the probe (probe.py) with a narrow `meta nftrace set 1` rule in temporary
chains of netbay's own tables, collects the trace events, routes and conntrack entry, and
hands them here: `assemble` orders them into hops (source route, veth, ingress bridge, the
host's routing decision and the nftables chains the packet passed, egress bridge,
destination), spots NAT rewrites and names the rule that dropped the packet and why.
`render` draws the result for the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .nft_events import Chain, Event, Packet
from .reasons import netbay_reason
from .trace_request import (
    ECHO,
    TRACE_PREFIX,
    IPAddress,
    Party,
    Spec,
    hostport,
    matches,
    parse_spec,
    proto_name,
    trace_chains,
)

# the request's side lives in trace_request; callers have long found it here
__all__ = ["Facts", "Outcome", "Party", "Spec", "assemble", "classify", "matches", "parse_spec",
           "render", "trace_chains"]
Json = dict[str, Any]
REQUEST_TYPES = {request for request, _ in ECHO.values()}  # echo requests of ICMP and ICMPv6


# --- assembling the path -------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    status: str  # connected, refused, answered, unreachable, timeout, error
    detail: str = ""
    source: IPAddress | None = None
    sport: int = 0

    @property
    def delivered(self) -> bool:
        return self.status in ("connected", "refused", "answered")


@dataclass
class Facts:
    src: Party
    dst: Party
    spec: Spec
    outcome: Outcome
    sport: int = 0
    icmp_id: int = 0
    src_route: str = ""  # the source namespace's route to DST (or why there is none)
    src_hop: str = ""  # how the source's interface reaches the host: veth, bridge...
    src_hop_where: str = "into the host"  # or "on the parent" (macvlan, ipvlan)
    host_route: str = ""  # the host's routing decision (route get with iif), if routed
    dst_hop: str = ""  # how the packet reaches the destination: bridge port, veth, tunnel...
    dst_hop_where: str = ""  # "tunnel", "underlay": the hop leaves this node (default: DST)
    dst_name: str = ""  # who the packet finally reaches (a published port: the container)
    events: Sequence[Event] = ()
    chains: dict[tuple[str, str, str], Chain] = field(default_factory=dict)
    rules: dict[tuple[str, str, int], str] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)  # host ifindex -> name
    conntrack: tuple[tuple[str, int, str, int], tuple[str, int, str, int]] | None = None
    ip_forward: str = "1"  # the probe's family's: net.ipv4.ip_forward, net.ipv6...forwarding
    next_hop: tuple[str, str] = ("", "")  # the source's next hop, and its neighbour state

    @property
    def family(self) -> int:
        address = self.dst.address or self.src.address
        return address.version if address is not None else 4


def _is_request(spec: Spec, sport: int, icmp_id: int, packet: Packet) -> bool | None:
    if spec.proto == "icmp":
        if packet.icmp_id != icmp_id:
            return None
        return packet.icmp_type in REQUEST_TYPES
    if packet.sport == sport:
        return True
    return False if packet.dport == sport else None


def _hook(facts: Facts, event: Event, last: str) -> str:
    chain = facts.chains.get((event.family, event.table, event.chain))
    return chain.hook if chain and chain.hook else last


def _rule_line(facts: Facts, event: Event, hook: str, packet: Packet | None) -> Json:
    rule = ""
    if event.kind == "rule" and event.handle is not None:
        rule = facts.rules.get((event.family, event.table, event.handle), f"handle {event.handle}")
    chain = facts.chains.get((event.family, event.table, event.chain))
    return {
        "family": event.family, "table": event.table, "chain": event.chain, "hook": hook,
        "chain_type": chain.kind if chain else "", "kind": event.kind, "rule": rule,
        "verdict": event.verdict + (f" {event.jump_target}" if event.jump_target else ""),
        "iif": facts.names.get(event.iif or 0, ""), "oif": facts.names.get(event.oif or 0, ""),
        "packet": str(packet) if packet else "",
    }


def classify(facts: Facts) -> tuple[list[Json], list[Json]]:
    """(request lines, reply lines): one line per rule verdict or chain policy the probe met,
    in order; the packet as it entered each chain goes on that chain's first line. netbay's
    own trace chains are left out, and so are repeats (a retransmission)."""
    request: list[Json] = []
    reply: list[Json] = []
    seen: set[tuple[Any, ...]] = set()
    state: dict[int, tuple[Packet | None, bool | None]] = {}
    entering: dict[int, Event] = {}  # the chain-entry event (headers, interfaces) per trace id
    hook = ""
    for event in facts.events:
        packet, direction = state.get(event.trace_id, (None, None))
        if event.packet is not None:
            packet = event.packet
            direction = _is_request(facts.spec, facts.sport, facts.icmp_id, packet)
            state[event.trace_id] = (packet, direction)
        if direction is None or (event.chain.startswith(TRACE_PREFIX)
                                 and event.table == "netbay"):
            continue
        if event.kind == "rule" and event.handle is None and event.verdict == "continue":
            entering[event.trace_id] = event  # the packet enters a chain: no verdict yet
            continue
        first = entering.pop(event.trace_id, None)
        hook = _hook(facts, event, hook)
        line = _rule_line(facts, event, hook, event.packet or (first.packet if first else None))
        if first is not None:
            line["iif"] = line["iif"] or facts.names.get(first.iif or 0, "")
            line["oif"] = line["oif"] or facts.names.get(first.oif or 0, "")
        key = (direction, *(line[k] for k in ("family", "table", "chain", "kind", "rule",
                                              "verdict", "packet")))
        if key in seen:
            continue
        seen.add(key)
        line["_packet"] = packet
        (request if direction else reply).append(line)
    return request, reply


def _nat_lines(request: list[Json], conntrack: Any, proto: str) -> list[str]:
    out = []
    previous: Packet | None = None
    nat_rule = ""
    for line in request:
        packet = line["_packet"]
        if previous is not None and packet is not None and (
            (packet.dst, packet.dport) != (previous.dst, previous.dport)
        ):
            by = f" (by {nat_rule})" if nat_rule else ""
            text = (f"DNAT {hostport(previous.dst, previous.dport)} -> "
                    f"{hostport(packet.dst, packet.dport)}{by}")
            if text not in out:
                out.append(text)
        if line["chain_type"] == "nat" and line["kind"] == "rule":  # rewrites what follows
            nat_rule = f"{line['family']} {line['table']} {line['chain']}: {line['rule']}"
        previous = packet or previous
    if conntrack is not None:
        (osrc, osport, odst, odport), (rsrc, rsport, rdst, rdport) = conntrack

        def at(address: str, port: int) -> str:
            return address if proto == "icmp" else hostport(address, port)

        if (rsrc, rsport) != (odst, odport) and not any(x.startswith("DNAT") for x in out):
            out.append(f"DNAT {at(odst, odport)} -> {at(rsrc, rsport)} (conntrack)")
        if (rdst, rdport) != (osrc, osport):
            out.append(f"SNAT {at(osrc, osport)} -> {at(rdst, rdport)} (conntrack: the "
                       f"destination sees {rdst})")
    return out


def _explain(line: Json) -> str:
    if line["table"] == "netbay":
        return netbay_reason(line)
    where = f"table {line['family']} {line['table']}, chain {line['chain']}"
    if line["kind"] == "policy":
        return (f"the drop policy of {where} (not netbay's): nothing there accepted the "
                f"packet; accept netbay's bridges in that chain (see `netbay doctor`)")
    return f"a rule of {where} (not netbay's)"


def _drop(facts: Facts, request: list[Json], reply: list[Json]) -> Json | None:
    for direction, lines in (("request", request), ("reply", reply)):
        for line in lines:
            if line["verdict"] == "drop":
                what = f"rule `{line['rule']}`" if line["kind"] == "rule" else "policy drop"
                return {"direction": direction, "where": f"{line['family']} {line['table']} "
                        f"{line['chain']}", "rule": what, "why": _explain(line)}
    if facts.outcome.delivered:
        return None
    return _silent_drop(facts, request, reply)


def _silent_drop(facts: Facts, request: list[Json], reply: list[Json]) -> Json:
    """No rule dropped it, yet nothing came back: say what the evidence points at."""
    hooks = [line["hook"] for line in request if line["family"] != "bridge"]
    if facts.outcome.status == "unreachable":
        return {"direction": "request", "where": "routing", "rule": "",
                "why": f"an ICMP error came back: {facts.outcome.detail}"}
    if facts.src_route.startswith("no route"):
        return {"direction": "request", "where": facts.src.name, "rule": "",
                "why": facts.src_route}
    if hooks and "forward" not in hooks and "input" not in hooks and "output" not in hooks:
        key = "net.ipv6.conf.all.forwarding" if facts.family == 6 else "net.ipv4.ip_forward"
        why = (f"the host did not forward it: {key} is {facts.ip_forward}"
               if facts.ip_forward != "1"
               else f"the host's routing refused it ({facts.host_route or 'no route'})")
        return {"direction": "request", "where": "host routing", "rule": "", "why": why}
    if reply:
        return {"direction": "reply", "where": "after " + reply[-1]["chain"], "rule": "",
                "why": "the reply was traced but did not arrive"}
    if request:
        return {"direction": "request", "where": "beyond the host", "rule": "",
                "why": f"the packet left the host towards {request[-1]['oif'] or '?'} and no "
                       f"answer came back: nothing listening, or the destination's own "
                       f"firewall ({facts.outcome.detail or facts.outcome.status})"}
    asked = "NDP" if facts.family == 6 else "ARP"
    hop, state = facts.next_hop
    if hop and state in ("failed", "incomplete", "none"):
        return {"direction": "request", "where": facts.src.name, "rule": "",
                "why": f"the packet never left {facts.src.name}: its neighbour entry for the "
                       f"next hop {hop} is {state} (no {asked} answer: neighbour discovery "
                       "did not get through, or nothing has that address)"}
    return {"direction": "request", "where": "before the host", "rule": "",
            "why": "the packet never reached the host's netfilter hooks (down interface, no "
                   f"{asked} answer, or a path that does not pass the host)"}


def _place(line: Json) -> str:
    if line["family"] == "bridge" or line["family"] == "netdev":
        return "ingress" if line["hook"] in ("prerouting", "input", "ingress") else "egress"
    return "host"


def assemble(facts: Facts) -> Json:
    request, reply = classify(facts)
    hops: list[Json] = []
    hops.append({"where": facts.src.name, "text": facts.src_route, "rules": []})
    if facts.src_hop:
        hops.append({"where": facts.src_hop_where, "text": facts.src_hop, "rules": []})
    places: dict[str, Json] = {
        "ingress": {"where": "ingress bridge", "text": "", "rules": []},
        "host": {"where": "host", "text": facts.host_route, "rules": []},
        "egress": {"where": "egress", "text": "", "rules": []},
    }
    for line in request:
        places[_place(line)]["rules"].append(line)
    nat = _nat_lines(request, facts.conntrack, facts.spec.proto)
    places["host"]["nat"] = nat
    hops += [h for h in places.values() if h["rules"] or h["text"] or h.get("nat")]
    if facts.dst_hop:
        hops.append({"where": facts.dst_hop_where or facts.dst_name or facts.dst.name,
                     "text": facts.dst_hop, "rules": []})
    drop = _drop(facts, request, reply)
    for part in hops + [{"rules": reply}]:
        for line in part["rules"]:
            line.pop("_packet", None)
    return {
        "src": facts.src.as_json(), "dst": facts.dst.as_json(), "proto": facts.spec.proto,
        "port": facts.spec.port, "family": facts.family,
        "outcome": {"status": facts.outcome.status, "detail": facts.outcome.detail,
                    "delivered": facts.outcome.delivered},
        "probe": _probe_text(facts), "hops": hops, "reply": reply, "nat": nat, "drop": drop,
        "reached": facts.dst_name or facts.dst.name,
    }


def _probe_text(facts: Facts) -> str:
    src = facts.outcome.source or facts.src.address
    if facts.spec.proto == "icmp":
        icmp = proto_name("icmp", facts.family)
        return f"{icmp} echo {src} -> {facts.dst.address} id {facts.icmp_id}"
    return (f"{facts.spec.proto} {hostport(src, facts.sport)} -> "
            f"{hostport(facts.dst.address, facts.spec.port or 0)}")


# --- text ----------------------------------------------------------------------------------
def _rule_text(line: Json) -> str:
    chain = f"{line['family']} {line['table']} {line['chain']}"
    what = f"rule `{line['rule']}`" if line["kind"] == "rule" else line["kind"]
    ifaces = " ".join(x for x in (f"in {line['iif']}" if line["iif"] else "",
                                  f"out {line['oif']}" if line["oif"] else "") if x)
    verdict = line["verdict"].upper() if line["verdict"] == "drop" else line["verdict"]
    text = f"{chain:<28} {what} -> {verdict}"
    if ifaces:
        text += f"   [{ifaces}]"
    if line["packet"]:
        text += f"   {line['packet']}"
    return text


def render(result: Json) -> str:
    src, dst = result["src"], result["dst"]
    what = (proto_name(result["proto"], result.get("family"))
            + (f" port {result['port']}" if result["port"] else ""))
    label = {"connected": "reached (connected)", "refused": "reached (connection refused: "
             "nothing listens there)", "answered": "reached (answered)",
             "unreachable": "unreachable", "timeout": "no answer", "error": "probe failed"}
    status = result["outcome"]["status"]
    lines = [f"trace {src['name']} ({src['address'] or '?'}) -> {dst['name']} "
             f"({dst['address'] or '?'}), {what}: {label.get(status, status)}",
             f"  probe: {result['probe']}"]
    for number, hop in enumerate(result["hops"], 1):
        lines.append(f"  {number:>2}  {hop['where']:<15} {hop['text']}".rstrip())
        lines += [f"        {_rule_text(line)}" for line in hop["rules"]]
        lines += [f"        NAT: {n}" for n in hop.get("nat") or []]
    if result["reply"]:
        lines.append("      reply:")
        lines += [f"        {_rule_text(line)}" for line in result["reply"]]
    drop = result["drop"]
    if drop:
        rule = f": {drop['rule']}" if drop["rule"] else ""
        lines.append(f"  ✗ dropped ({drop['direction']}) at {drop['where']}{rule}")
        lines.append(f"    why: {drop['why']}")
    elif result["outcome"]["delivered"]:
        lines.append(f"  ✓ {result['reached']} got it: {result['outcome']['detail'] or status}")
    return "\n".join(lines)
