"""What a runtime asks for one attachment, read from a CNI invocation. Pure.

Capabilities (runtimeConfig): portMappings, ips, mac, dns, aliases (a list, or podman's map
by network name). CNI_ARGS: IP, MAC, K8S_POD_NAME (the DNS name), IgnoreUnknown. The
conventions' order for addresses: runtimeConfig.ips, else args.cni.ips, else CNI_ARGS IP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

from ..model import IPAddress
from ..plan import ports as plan_ports
from .config import Invocation
from .fields import read_int, read_str, read_strings
from .plugin import INVALID_CONFIG, CniError

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class Dns:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out


@dataclass(frozen=True)
class Requested:
    ip: IPv4Address | None = None
    prefixlen: int | None = None
    mac: str | None = None
    ports: tuple[plan_ports.Mapping, ...] = ()
    aliases: tuple[str, ...] = ()
    hostname: str = ""
    runtime_dns: Dns = field(default_factory=Dns)  # the dns capability
    static_dns: Dns = field(default_factory=Dns)  # the configuration's "dns"
    ip6: IPv6Address | None = None
    prefixlen6: int | None = None


def _requested_ips(inv: Invocation) -> dict[int, tuple[IPAddress, int | None]]:
    """runtimeConfig.ips, else args.cni.ips, else CNI_ARGS IP (the conventions' order): at
    most one address of each family, by family (4, 6), each with its prefix length if given."""
    raw: tuple[str, ...] = ()
    where = "runtimeConfig.ips"
    if "ips" in inv.runtime_config:
        raw = read_strings(where, inv.runtime_config["ips"])
    else:
        args = inv.config.get("args")
        cni = args.get("cni") if isinstance(args, dict) else None
        if isinstance(cni, dict) and "ips" in cni:
            where = "args.cni.ips"
            raw = read_strings(where, cni["ips"])
        elif inv.args.get("IP"):
            where = "CNI_ARGS IP"
            raw = tuple(inv.args["IP"].split(","))
    found: dict[int, tuple[IPAddress, int | None]] = {}
    for text in raw:
        try:
            interface = ip_network(text, strict=False) if "/" in text else None
            address = ip_address(text.split("/")[0])
        except ValueError:
            raise CniError(INVALID_CONFIG, f"invalid {where}: not an IP address", text) from None
        if address.version in found:
            raise CniError(INVALID_CONFIG, f"invalid {where}: {list(raw)}",
                           "netbay gives one address of each family per attachment")
        found[address.version] = (address, interface.prefixlen if interface else None)
    return found


def _requested_mac(inv: Invocation) -> str | None:
    raw = inv.runtime_config.get("mac")
    where = "runtimeConfig.mac"
    if raw is None and inv.args.get("MAC"):
        raw, where = inv.args["MAC"], "CNI_ARGS MAC"
    if raw is None:
        return None
    if not isinstance(raw, str) or not _MAC.match(raw.lower()):
        raise CniError(INVALID_CONFIG, f"invalid {where}: not a MAC address", repr(raw))
    mac = raw.lower()
    if int(mac[:2], 16) & 1:
        raise CniError(INVALID_CONFIG, f"invalid {where}: a multicast address", mac)
    return mac


def _requested_ports(inv: Invocation) -> tuple[plan_ports.Mapping, ...]:
    raw = inv.runtime_config.get("portMappings")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise CniError(INVALID_CONFIG, "invalid runtimeConfig.portMappings: expected a list")
    out: list[plan_ports.Mapping] = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise CniError(INVALID_CONFIG, "invalid runtimeConfig.portMappings entry", repr(entry))
        host_port = read_int(entry, "hostPort", 1, 65535)
        container_port = read_int(entry, "containerPort", 1, 65535)
        if host_port is None or container_port is None:
            raise CniError(INVALID_CONFIG, "invalid runtimeConfig.portMappings entry: hostPort "
                           "and containerPort are required", repr(entry))
        proto = (read_str(entry, "protocol") or "tcp").lower()
        if proto not in plan_ports.PROTOCOLS:
            raise CniError(INVALID_CONFIG, f"invalid portMappings protocol {proto!r}",
                           "tcp, udp or sctp")
        host_ip = _host_ip(read_str(entry, "hostIP") or "")
        mapping = plan_ports.Mapping(proto, host_ip, host_port, container_port)
        if mapping not in out:
            out.append(mapping)
    return tuple(out)


def _host_ip(text: str) -> IPAddress | None:
    """A portMappings hostIP as the reference portmap reads it: none publishes on every host
    address of each family, 0.0.0.0 on every IPv4 one only, :: on every IPv6 one only."""
    if not text:
        return None
    try:
        address = ip_address(text)
    except ValueError:
        raise CniError(INVALID_CONFIG, "invalid portMappings hostIP", text) from None
    if address.version == 6 and address.is_loopback:
        raise CniError(INVALID_CONFIG, f"invalid portMappings hostIP: {text}",
                       "::1 cannot be forwarded to a container (IPv6 has no route_localnet)")
    return address


def _requested_aliases(inv: Invocation) -> tuple[str, ...]:
    raw = inv.runtime_config.get("aliases")
    if isinstance(raw, dict):  # podman's form: {network name: [aliases]}
        raw = raw.get(inv.name)
    return read_strings("runtimeConfig.aliases", raw)


def dns_config(key: str, raw: Any, servers_key: str, search_key: str) -> Dns:
    if raw is None:
        return Dns()
    if not isinstance(raw, dict):
        raise CniError(INVALID_CONFIG, f"invalid {key}: expected an object", repr(raw))
    servers = read_strings(f"{key}.{servers_key}", raw.get(servers_key))
    for server in servers:
        try:
            ip_address(server)
        except ValueError:
            raise CniError(INVALID_CONFIG, f"invalid {key}.{servers_key}: not an IP address",
                           server) from None
    domain = read_str(raw, "domain") or ""
    return Dns(servers, domain, read_strings(f"{key}.{search_key}", raw.get(search_key)),
               read_strings(f"{key}.options", raw.get("options")))


def requested(inv: Invocation) -> Requested:
    ips = _requested_ips(inv)
    ip, prefixlen = ips.get(4, (None, None))
    ip6, prefixlen6 = ips.get(6, (None, None))
    assert isinstance(ip, IPv4Address | None) and isinstance(ip6, IPv6Address | None)
    return Requested(
        ip=ip,
        prefixlen=prefixlen,
        ip6=ip6,
        prefixlen6=prefixlen6,
        mac=_requested_mac(inv),
        ports=_requested_ports(inv),
        aliases=_requested_aliases(inv),
        hostname=inv.args.get("K8S_POD_NAME", ""),
        runtime_dns=dns_config("runtimeConfig.dns", inv.runtime_config.get("dns"), "servers",
                         "searches"),
        static_dns=dns_config("dns", inv.config.get("dns"), "nameservers", "search"),
    )


def valid_attachments(inv: Invocation) -> list[tuple[str, str]]:
    """GC's cni.dev/valid-attachments (or its earlier name cni.dev/attachments)."""
    for key in ("cni.dev/valid-attachments", "cni.dev/attachments"):
        if key in inv.config:
            raw = inv.config[key]
            break
    else:
        raise CniError(INVALID_CONFIG, "invalid network config: GC needs "
                       "cni.dev/valid-attachments")
    if not isinstance(raw, list):
        raise CniError(INVALID_CONFIG, f"invalid {key}: expected a list", repr(raw))
    out = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("containerID"), str) \
                or not isinstance(entry.get("ifname"), str):
            raise CniError(INVALID_CONFIG, f"invalid {key} entry", repr(entry))
        out.append((entry["containerID"], entry["ifname"]))
    return out
