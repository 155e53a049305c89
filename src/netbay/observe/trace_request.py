"""What `netbay trace` is asked and how the probe is singled out; pure.

The request (--proto, --port, --timeout, --family) is checked before anything is sent; the
two parties are described as Party; `matches` and `trace_chains` give the temporary chains
that mark exactly this probe with `meta nftrace set 1`, for either address family (an IPv6
probe is matched by `ip6 daddr` and, for icmp, by ICMPv6's echo types).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ..errors import ConfigError

PROTOS = ("tcp", "udp", "icmp")
FAMILIES = {"4": 4, "6": 6, "ipv4": 4, "ipv6": 6}
TRACE_PREFIX = "trace_"
TRACE_PRIORITY = -350  # before conntrack (-200), raw (-300) and everything netbay has
# ICMP echo types: (request, reply) of ICMP and ICMPv6
ECHO = {4: (8, 0), 6: (128, 129)}
Json = dict[str, Any]
IPAddress = IPv4Address | IPv6Address


@dataclass(frozen=True)
class Party:
    kind: str  # "container", "host" or "address"
    name: str
    address: IPAddress | None = None
    netns: str | None = None  # a container's namespace (None: the host's)
    detail: str = ""  # e.g. "eth0 on network neta"

    def label(self) -> str:
        if self.kind == "address" or self.address is None:
            return self.name
        return f"{self.name} ({self.address})"

    def as_json(self) -> Json:
        return {"kind": self.kind, "name": self.name,
                "address": str(self.address) if self.address else "", "detail": self.detail}


@dataclass(frozen=True)
class Spec:
    proto: str
    port: int | None
    timeout: float
    family: int | None = None  # 4 or 6; None: the destination's (IPv4 when it has both)


def parse_family(raw: Any) -> int | None:
    """--family/-4/-6 of a trace request: None when not given."""
    if raw in (None, ""):
        return None
    family = FAMILIES.get(str(raw).strip().lower())
    if family is None:
        raise ConfigError("family", raw, "expected 4 or 6")
    return family


def parse_spec(body: dict[str, Any]) -> Spec:
    """--proto/--port/--timeout/--family of a trace request; checked before anything is sent."""
    port_raw = body.get("Port")
    port = None
    if port_raw not in (None, ""):
        try:
            port = int(str(port_raw))
        except ValueError:
            raise ConfigError("port", port_raw, "expected a port number") from None
        if not 1 <= port <= 65535:
            raise ConfigError("port", port_raw, "out of range 1-65535")
    proto = str(body.get("Proto") or ("tcp" if port else "icmp")).lower()
    if proto not in PROTOS:
        raise ConfigError("proto", proto, "expected tcp, udp or icmp")
    if proto == "icmp" and port is not None:
        raise ConfigError("port", port, "icmp has no ports (leave --port out, or --proto tcp)")
    if proto != "icmp" and port is None:
        raise ConfigError("port", "", f"a {proto} probe needs --port")
    try:
        timeout = float(body.get("Timeout") or 1.0)
    except ValueError:
        raise ConfigError("timeout", body.get("Timeout"), "expected seconds") from None
    if not 0.05 <= timeout <= 30:
        raise ConfigError("timeout", timeout, "out of range 0.05-30 seconds")
    return Spec(proto, port, timeout, parse_family(body.get("Family")))


def proto_name(proto: str, family: int | None) -> str:
    """The protocol as the packet carries it: icmp of an IPv6 probe is ICMPv6."""
    return "icmpv6" if proto == "icmp" and family == 6 else proto


def hostport(address: object, port: int) -> str:
    """ADDRESS:PORT, an IPv6 address in brackets (as in a URL)."""
    text = str(address)
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


# --- the temporary trace chains ------------------------------------------------------------
def matches(spec: Spec, dst: IPAddress, sport: int, icmp_id: int) -> tuple[str, str]:
    """(request match, reply match): narrow enough to trace only this probe."""
    ip = "ip6" if dst.version == 6 else "ip"
    if spec.proto == "icmp":
        icmp = "icmpv6" if dst.version == 6 else "icmp"
        return (f"{ip} daddr {dst} {icmp} type echo-request {icmp} id {icmp_id}",
                f"{icmp} type echo-reply {icmp} id {icmp_id}")
    if spec.proto == "tcp":  # the SYN, and the SYN-ACK or RST that answers it
        return (f"{ip} daddr {dst} tcp sport {sport} tcp dport {spec.port} "
                "tcp flags & (syn | ack) == syn",
                f"tcp dport {sport} tcp flags & (syn | rst) != 0")
    return (f"{ip} daddr {dst} udp sport {sport} udp dport {spec.port}", f"udp dport {sport}")


def trace_chains(tag: str, request: str, reply: str) -> tuple[str, str]:
    """(one transaction adding the chains, one removing them) in netbay's own tables: the
    packet is marked at the first hook it meets in the host (a container's frame at the
    bridge, the host's own packet at output)."""
    chains = [("inet", f"{TRACE_PREFIX}pre_{tag}", "prerouting"),
              ("inet", f"{TRACE_PREFIX}out_{tag}", "output"),
              ("bridge", f"{TRACE_PREFIX}pre_{tag}", "prerouting")]
    add, remove = [], []
    for family, name, hook in chains:
        add.append(f"add chain {family} netbay {name} {{ type filter hook {hook} priority "
                   f"{TRACE_PRIORITY}; policy accept; }}")
        add += [f"add rule {family} netbay {name} {m} meta nftrace set 1" for m in (request, reply)]
        remove.append(f"delete chain {family} netbay {name}")
    return "\n".join(add), "\n".join(remove)
