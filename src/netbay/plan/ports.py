"""Port publishing specs (`-p`), parsed and allocated; pure.

A host address is of either family (`-p [2001:db8::1]:80:80`); none (`-p 8080:80`)
publishes on every host address of each family the container has an address of, 0.0.0.0 on
every IPv4 one only and `[::]` on every IPv6 one only (as Docker 27, CNI's portmap and
netavark read them). `[::1]` is refused: the kernel cannot forward it (see
plan/ruleset.py's output chain).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from ..errors import ConfigError, ConflictError
from ..model import Container, IPAddress

PROTOCOLS = ("tcp", "udp", "sctp")
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


@dataclass(frozen=True)
class PublishSpec:
    """One `-p` item before host ports are chosen: a container port range and the host ports
    (None: pick any free one; a range longer than the container range: pick within it)."""

    proto: str
    host_ip: IPAddress | None
    host_ports: tuple[int, int] | None
    container_ports: tuple[int, int]


@dataclass(frozen=True)
class Mapping:
    """One published port, as recorded."""

    proto: str
    host_ip: IPAddress | None
    host_port: int
    container_port: int

    def __str__(self) -> str:
        return f"{self.container_port}/{self.proto} -> {host_text(self.host_ip or '0.0.0.0')}" \
            f":{self.host_port}"


def host_text(address: IPAddress | str) -> str:
    """A host address as a port spec writes it: an IPv6 one in brackets."""
    return f"[{address}]" if ":" in str(address) else str(address)


def _ports(spec: str, text: str) -> tuple[int, int]:
    match = _RANGE.match(text)
    if not match:
        raise ConfigError("publish", spec, f"{text!r} is not a port or port range")
    low, high = int(match.group(1)), int(match.group(2) or match.group(1))
    for port in (low, high):
        if not 1 <= port <= 65535:
            raise ConfigError("publish", spec, f"port {port} out of range 1-65535")
    if high < low:
        raise ConfigError("publish", spec, f"range {text} runs backwards")
    return low, high


def parse_publish(spec: str) -> PublishSpec:
    """[HOSTIP:][HOSTPORT[-END]:]CONTAINERPORT[-END][/tcp|udp|sctp]; an IPv6 HOSTIP in
    brackets: [2001:db8::1]:8080:80."""
    body, _, proto = spec.partition("/")
    proto = proto.lower() or "tcp"
    if proto not in PROTOCOLS:
        raise ConfigError("publish", spec, f"unknown protocol {proto!r} (tcp, udp or sctp)")
    host_ip: IPAddress | None
    host_ip, body = _host_part(spec, body)
    parts = body.split(":")
    if len(parts) > (2 if host_ip is not None else 3) or not parts[-1]:
        raise ConfigError("publish", spec, "expected [HOSTIP:][HOSTPORT:]CONTAINERPORT[/PROTO]")
    if len(parts) == 3:
        if parts[0]:
            try:
                host_ip = IPv4Address(parts[0])
            except ValueError:
                raise ConfigError("publish", spec, f"{parts[0]!r} is not an IPv4 address") from None
        parts = parts[1:]
    container = _ports(spec, parts[-1])
    host = _ports(spec, parts[0]) if len(parts) == 2 and parts[0] else None
    if host is not None:
        host_len, container_len = host[1] - host[0], container[1] - container[0]
        if container_len and host_len != container_len:
            raise ConfigError("publish", spec, "host and container ranges differ in length")
    return PublishSpec(proto, host_ip, host, container)


def _host_part(spec: str, body: str) -> tuple[IPv6Address | None, str]:
    """A bracketed IPv6 host address at the start of BODY, and the rest after its colon."""
    if not body.startswith("["):
        return None, body
    inside, bracket, rest = body[1:].partition("]")
    if not bracket or not rest.startswith(":"):
        raise ConfigError("publish", spec, "expected [IPV6]:[HOSTPORT]:CONTAINERPORT")
    try:
        address = IPv6Address(inside)
    except ValueError:
        raise ConfigError("publish", spec, f"{inside!r} is not an IPv6 address") from None
    if address.is_loopback:
        raise ConfigError("publish", spec, "::1 cannot be forwarded to a container (IPv6 has no "
                          "route_localnet: the kernel drops the replies); publish on 127.0.0.1")
    return address, rest[1:]


def check_families(texts: Sequence[str], specs: Sequence[PublishSpec], versions: set[int]) -> None:
    """Each spec's host address is of a family the container has an address of (VERSIONS,
    on the network its ports lead to): it maps only to the address of its own family."""
    for text, spec in zip(texts, specs, strict=True):
        if spec.host_ip is not None and spec.host_ip.version not in versions:
            family = f"IPv{spec.host_ip.version}"
            raise ConfigError("publish", text, f"an {family} host address, and the container "
                              f"has no {family} address to publish")


def _overlap(a: IPAddress | None, b: IPAddress | None) -> bool:
    """Whether two host addresses share an address: None is every one, 0.0.0.0 / :: every
    one of its family."""
    if a is None or b is None or a == b:
        return True
    return a.version == b.version and (a.is_unspecified or b.is_unspecified)


def clashes(a: Mapping, b: Mapping) -> bool:
    return a.proto == b.proto and a.host_port == b.host_port and _overlap(a.host_ip, b.host_ip)


def allocate(
    specs: Iterable[PublishSpec], taken: Collection[Mapping], local_range: tuple[int, int]
) -> list[Mapping]:
    """Choose host ports: fixed ones checked against TAKEN, free ones lowest first."""
    chosen: list[Mapping] = []
    # (proto, host port) -> host addresses bound (None: all): one lookup per candidate, so
    # publishing 1,000 ports next to 10,000 others stays linear
    bound: dict[tuple[str, int], set[IPAddress | None]] = {}
    for m in taken:
        bound.setdefault((m.proto, m.host_port), set()).add(m.host_ip)

    def free(m: Mapping) -> bool:
        ips = bound.get((m.proto, m.host_port))
        return not ips or not any(_overlap(m.host_ip, ip) for ip in ips)

    def take(m: Mapping) -> None:
        chosen.append(m)
        bound.setdefault((m.proto, m.host_port), set()).add(m.host_ip)

    for spec in specs:
        c_low, c_high = spec.container_ports
        fixed = spec.host_ports is not None and (
            c_high > c_low or spec.host_ports[0] == spec.host_ports[1]
        )
        if fixed:
            assert spec.host_ports is not None
            for offset in range(c_high - c_low + 1):
                m = Mapping(spec.proto, spec.host_ip, spec.host_ports[0] + offset, c_low + offset)
                if not free(m):
                    where = f"{host_text(m.host_ip)}:" if m.host_ip else ""
                    raise ConflictError(
                        f"invalid publish {where}{m.host_port}/{m.proto}: "
                        "host port already published"
                    )
                take(m)
            continue
        low, high = spec.host_ports or local_range
        for offset in range(c_high - c_low + 1):
            for port in range(low, high + 1):
                m = Mapping(spec.proto, spec.host_ip, port, c_low + offset)
                if free(m):
                    take(m)
                    break
            else:
                raise ConflictError(
                    f"no free host port for {c_low + offset}/{spec.proto} in {low}-{high}"
                )
    return chosen


def container_ports(container: Container) -> list[Mapping]:
    """The mappings recorded in a container's config (["tcp", "127.0.0.1" or "", 8080, 80])."""
    raw = container.config.get("ports") or []
    assert isinstance(raw, list)
    return [
        Mapping(proto, ip_address(ip) if ip else None, int(host), int(cport))
        for proto, ip, host, cport in raw
    ]


def record_ports(mappings: Iterable[Mapping]) -> list[list[object]]:
    return [[m.proto, str(m.host_ip or ""), m.host_port, m.container_port] for m in mappings]
