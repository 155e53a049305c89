"""A CNI invocation, parsed: the environment and configuration checked again (the plugin
checked them, but the API is open to any client), then read into netbay's terms. Pure.

Configuration forms of the `netbay` interface plugin:
- an existing netbay network:  {"type": "netbay", "network": "asgard"}
- self-contained: the network is made from the configuration on first use (and removed with
  its last attachment): "driver" bridge (default) or macvlan; bridge: "bridge" (device name),
  "subnet" or "ranges" (with "rangeStart"/"rangeEnd"/"gateway"; top level or in an "ipam"
  section of type netbay-ipam), "gateway", "ipMasq" and "isGateway" (both default true:
  netbay networks are Docker-like; isGateway false makes an internal network), "mtu";
  macvlan: "master", "mode".
The `netbay-ipam` plugin reads the "ipam" section: "network" (an existing network of driver
external) or "subnet"/"ranges"/"gateway", and "routes" to return.

Runtime capabilities (runtimeConfig): portMappings, ips, mac, dns, aliases. CNI_ARGS: IP,
MAC, K8S_POD_NAME (the DNS name), IgnoreUnknown. Errors are CniError with the spec's codes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import (
    AddressValueError,
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    NetmaskValueError,
    ip_address,
    ip_network,
    summarize_address_range,
)
from typing import Any

from ..model import NetworkSpec, SubnetConfig
from ..plan import ports as plan_ports
from . import plugin
from .plugin import INVALID_CONFIG, UNSUPPORTED_FIELD, CniError

KINDS = ("netbay", "netbay-ipam")
OPT_BRIDGE = "com.docker.network.bridge.name"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
OPT_MTU = "com.docker.network.driver.mtu"
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
DEFAULT_ROUTE = IPv4Network("0.0.0.0/0")


@dataclass(frozen=True)
class Invocation:
    kind: str  # "netbay" or "netbay-ipam"
    command: str
    version: str
    name: str  # the CNI network name
    container_id: str
    netns: str
    ifname: str
    args: Mapping[str, str]
    config: Mapping[str, Any]

    @property
    def runtime_config(self) -> Mapping[str, Any]:
        raw = self.config.get("runtimeConfig")
        return raw if isinstance(raw, dict) else {}


def invocation(body: Mapping[str, Any], command: str) -> Invocation:
    """The request the plugin sent (kind, env, config), checked as the plugin checks it."""
    kind = body.get("kind", "netbay")
    if kind not in KINDS:
        raise CniError(INVALID_CONFIG, f"unknown plugin kind {kind!r}")
    raw_env = body.get("env")
    if not isinstance(raw_env, dict):
        raise CniError(plugin.INVALID_ENVIRONMENT, "required env variables missing")
    env = {str(k): str(v) for k, v in raw_env.items()}
    checked = plugin.check_env(env)
    if checked != command:
        raise CniError(
            plugin.INVALID_ENVIRONMENT, f"CNI_COMMAND {checked} sent to /cni/{command.lower()}"
        )
    config = body.get("config")
    if isinstance(config, str):
        version, parsed = plugin.check_config(command, config)
    else:
        version, parsed = plugin.check_parsed(command, config)
    args = plugin.parse_args(env.get("CNI_ARGS", "")) if command in ("ADD", "DEL", "CHECK") else {}
    return Invocation(
        kind=str(kind),
        command=command,
        version=version,
        name=str(parsed["name"]),
        container_id=env.get("CNI_CONTAINERID", ""),
        netns=env.get("CNI_NETNS", ""),
        ifname=env.get("CNI_IFNAME", ""),
        args=args,
        config=parsed,
    )


# --- small typed readers -----------------------------------------------------------------
def _bool(section: Mapping[str, Any], key: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise CniError(INVALID_CONFIG, f"invalid {key}: expected true or false", repr(value))
    return value


def _int(section: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise CniError(
            INVALID_CONFIG, f"invalid {key}: expected a number {low}-{high}", repr(value)
        )
    return value


def _str(section: Mapping[str, Any], key: str) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CniError(INVALID_CONFIG, f"invalid {key}: expected a string", repr(value))
    return value


def _ipv4(key: str, value: Any) -> IPv4Address:
    if not isinstance(value, str):
        raise CniError(INVALID_CONFIG, f"invalid {key}: expected an IPv4 address", repr(value))
    try:
        address = ip_address(value)
    except ValueError:
        raise CniError(INVALID_CONFIG, f"invalid {key}: not an IP address", value) from None
    if not isinstance(address, IPv4Address):
        raise CniError(UNSUPPORTED_FIELD, f"unsupported field {key}: {value}", "IPv4 only")
    return address


def _subnet(key: str, value: Any) -> IPv4Network:
    if not isinstance(value, str):
        raise CniError(INVALID_CONFIG, f"invalid {key}: expected a CIDR", repr(value))
    try:
        network = ip_network(value, strict=False)
    except (AddressValueError, NetmaskValueError, ValueError):
        raise CniError(INVALID_CONFIG, f"invalid {key}: not a CIDR", value) from None
    if not isinstance(network, IPv4Network):
        raise CniError(UNSUPPORTED_FIELD, f"unsupported field {key}: {value}", "IPv4 only")
    return network


def _unsupported(section: Mapping[str, Any], keys: tuple[str, ...], why: str) -> None:
    for key in keys:
        value = section.get(key)
        if value not in (None, False, 0, "", [], {}):
            raise CniError(UNSUPPORTED_FIELD, f"unsupported field {key}: {value!r}", why)


# --- addresses ---------------------------------------------------------------------------
def _range(entry: Any, where: str) -> SubnetConfig:
    if not isinstance(entry, dict):
        raise CniError(INVALID_CONFIG, f"invalid {where}: expected an object", repr(entry))
    subnet = _subnet(f"{where}.subnet", entry.get("subnet"))
    gateway = _ipv4(f"{where}.gateway", entry["gateway"]) if entry.get("gateway") else None
    start = _ipv4(f"{where}.rangeStart", entry["rangeStart"]) if entry.get("rangeStart") else None
    end = _ipv4(f"{where}.rangeEnd", entry["rangeEnd"]) if entry.get("rangeEnd") else None
    ip_range = None
    if start is not None or end is not None:
        first = start or subnet.network_address + 1
        last = end or subnet.broadcast_address - 1
        if first not in subnet or last not in subnet or last < first:
            raise CniError(
                INVALID_CONFIG, f"invalid {where}: range {first}-{last} not inside {subnet}"
            )
        blocks = list(summarize_address_range(first, last))
        whole = [b for b in blocks if isinstance(b, IPv4Network)]
        if len(whole) != 1:
            raise CniError(
                UNSUPPORTED_FIELD, f"unsupported field {where}.rangeStart/rangeEnd: "
                f"{first}-{last}", "netbay ranges are CIDR blocks (like 10.1.0.16-10.1.0.31)",
            )
        ip_range = whole[0] if whole[0] != subnet else None
    return SubnetConfig(subnet=subnet, gateway=gateway, ip_range=ip_range)


def subnets(section: Mapping[str, Any], where: str) -> tuple[SubnetConfig, ...]:
    """'ranges' (one range set: one address per attachment) or 'subnet' & co."""
    if section.get("ranges") is not None:
        ranges = section["ranges"]
        if not isinstance(ranges, list) or not all(isinstance(r, list) for r in ranges):
            raise CniError(INVALID_CONFIG, f"invalid {where}ranges: expected a list of lists")
        if len(ranges) != 1 or not ranges[0]:
            raise CniError(
                UNSUPPORTED_FIELD, f"unsupported field {where}ranges: {len(ranges)} range sets",
                "netbay gives one IPv4 address per attachment: one range set",
            )
        return tuple(_range(r, f"{where}ranges[0][{i}]") for i, r in enumerate(ranges[0]))
    if section.get("subnet") is not None:
        return (_range(section, where.rstrip(".") or "subnet"),)
    for key in ("gateway", "rangeStart", "rangeEnd"):
        if section.get(key) is not None:
            raise CniError(INVALID_CONFIG, f"invalid {where}{key}: given without a subnet")
    return ()


def routes(section: Mapping[str, Any], where: str) -> list[tuple[IPv4Network, IPv4Address | None]]:
    raw = section.get("routes")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise CniError(INVALID_CONFIG, f"invalid {where}routes: expected a list", repr(raw))
    out = []
    for route in raw:
        if not isinstance(route, dict):
            raise CniError(INVALID_CONFIG, f"invalid {where}routes: expected objects", repr(route))
        gateway = _ipv4(f"{where}routes.gw", route["gw"]) if route.get("gw") else None
        out.append((_subnet(f"{where}routes.dst", route.get("dst")), gateway))
    return out


# --- the network an invocation names -----------------------------------------------------
@dataclass(frozen=True)
class NetworkChoice:
    """An existing netbay network (by name) or one to make from SPEC."""

    name: str
    spec: NetworkSpec | None = None


_SELF_CONTAINED = ("bridge", "subnet", "ranges", "gateway", "driver", "master", "mode", "mtu",
                   "ipMasq", "isGateway", "isDefaultGateway")


def _ipam_section(config: Mapping[str, Any]) -> Mapping[str, Any]:
    ipam = config.get("ipam")
    if ipam is None:
        return {}
    if not isinstance(ipam, dict):
        raise CniError(INVALID_CONFIG, "invalid ipam: expected an object", repr(ipam))
    return ipam


def interface_network(inv: Invocation) -> NetworkChoice:
    """What the `netbay` plugin's configuration names."""
    config = inv.config
    ipam = _ipam_section(config)
    if ipam and ipam.get("type") not in (None, "netbay-ipam"):
        raise CniError(
            UNSUPPORTED_FIELD, f"unsupported field ipam.type: {ipam.get('type')!r}",
            "netbay allocates addresses itself: leave ipam out or use type netbay-ipam",
        )
    existing = _str(config, "network")
    if existing is not None:
        extra = [k for k in _SELF_CONTAINED if config.get(k) is not None]
        if extra or ipam:
            raise CniError(
                INVALID_CONFIG, f"invalid network config: 'network' names an existing "
                f"network; {', '.join(extra or ['ipam'])} would define another",
            )
        return NetworkChoice(existing)
    driver = _str(config, "driver") or "bridge"
    top = subnets(config, "")
    below = subnets(ipam, "ipam.") if ipam else ()
    if top and below:
        raise CniError(INVALID_CONFIG, "invalid network config: subnets given twice (top level "
                       "and ipam)")
    found = top or below
    _routes_default_only(config, ipam)
    if driver == "bridge":
        return NetworkChoice(inv.name, _bridge_spec(inv.name, config, found))
    if driver == "macvlan":
        return NetworkChoice(inv.name, _macvlan_spec(inv.name, config, found))
    raise CniError(UNSUPPORTED_FIELD, f"unsupported field driver: {driver!r}",
                   "netbay's CNI plugin makes bridge and macvlan networks")


def _routes_default_only(config: Mapping[str, Any], ipam: Mapping[str, Any]) -> None:
    for where, section in (("", config), ("ipam.", ipam)):
        for destination, _ in routes(section, where):
            if destination != DEFAULT_ROUTE:
                raise CniError(
                    UNSUPPORTED_FIELD, f"unsupported field {where}routes: {destination}",
                    "netbay's containers get the default route via the gateway only",
                )


def _bridge_spec(
    name: str, config: Mapping[str, Any], found: tuple[SubnetConfig, ...]
) -> NetworkSpec:
    _unsupported(config, ("vlan", "vlanTrunk", "promiscMode", "macspoofchk", "enabledad"),
                 "not supported by netbay's bridge networks")
    options: dict[str, str] = {}
    device = _str(config, "bridge")
    if device:
        options[OPT_BRIDGE] = device
    options[OPT_MASQ] = "true" if _bool(config, "ipMasq", True) else "false"
    mtu = _int(config, "mtu", 68, 65535)
    if mtu is not None:
        options[OPT_MTU] = str(mtu)
    _bool(config, "hairpinMode", True)  # netbay turns hairpin on where a port is published
    gateway = _bool(config, "isGateway", True) or _bool(config, "isDefaultGateway", False)
    return NetworkSpec(
        name=name, driver="bridge", subnets=found, internal=not gateway or
        _bool(config, "internal", False), options=options,
    )


def _macvlan_spec(
    name: str, config: Mapping[str, Any], found: tuple[SubnetConfig, ...]
) -> NetworkSpec:
    _unsupported(config, ("mtu", "linkInContainer", "bridge", "ipMasq"),
                 "not supported by netbay's macvlan networks")
    options: dict[str, str] = {}
    master = _str(config, "master")
    if master:
        options["parent"] = master
    mode = _str(config, "mode")
    if mode:
        options["macvlan_mode"] = mode
    return NetworkSpec(
        name=name, driver="macvlan", subnets=found,
        internal=_bool(config, "internal", False), options=options,
    )


def ipam_network(inv: Invocation) -> NetworkChoice:
    """What the `netbay-ipam` plugin's ipam section names (driver external)."""
    ipam = _ipam_section(inv.config)
    if not ipam:
        raise CniError(INVALID_CONFIG, "invalid network config: no ipam section")
    existing = _str(ipam, "network")
    if existing is not None:
        if subnets(ipam, "ipam."):
            raise CniError(INVALID_CONFIG, "invalid ipam: 'network' names an existing network; "
                           "subnets would define another")
        return NetworkChoice(existing)
    found = subnets(ipam, "ipam.")
    return NetworkChoice(inv.name, NetworkSpec(name=inv.name, driver="external", subnets=found))


# --- what the runtime asks for this attachment -------------------------------------------
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


def _strings(key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CniError(INVALID_CONFIG, f"invalid {key}: expected a list of strings", repr(value))
    return tuple(value)


def _requested_ip(inv: Invocation) -> tuple[IPv4Address | None, int | None]:
    """runtimeConfig.ips, else args.cni.ips, else CNI_ARGS IP (the conventions' order)."""
    raw: tuple[str, ...] = ()
    where = "runtimeConfig.ips"
    if "ips" in inv.runtime_config:
        raw = _strings(where, inv.runtime_config["ips"])
    else:
        args = inv.config.get("args")
        cni = args.get("cni") if isinstance(args, dict) else None
        if isinstance(cni, dict) and "ips" in cni:
            where = "args.cni.ips"
            raw = _strings(where, cni["ips"])
        elif inv.args.get("IP"):
            where = "CNI_ARGS IP"
            raw = tuple(inv.args["IP"].split(","))
    if not raw:
        return None, None
    if len(raw) > 1:
        raise CniError(INVALID_CONFIG, f"invalid {where}: {list(raw)}",
                       "netbay gives one IPv4 address per attachment")
    text = raw[0]
    try:
        interface = ip_network(text, strict=False) if "/" in text else None
        address = ip_address(text.split("/")[0])
    except ValueError:
        raise CniError(INVALID_CONFIG, f"invalid {where}: not an IP address", text) from None
    if not isinstance(address, IPv4Address):
        raise CniError(UNSUPPORTED_FIELD, f"unsupported field {where}: {text}", "IPv4 only")
    return address, interface.prefixlen if interface is not None else None


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
        host_port = _int(entry, "hostPort", 1, 65535)
        container_port = _int(entry, "containerPort", 1, 65535)
        if host_port is None or container_port is None:
            raise CniError(INVALID_CONFIG, "invalid runtimeConfig.portMappings entry: hostPort "
                           "and containerPort are required", repr(entry))
        proto = (_str(entry, "protocol") or "tcp").lower()
        if proto not in plan_ports.PROTOCOLS:
            raise CniError(INVALID_CONFIG, f"invalid portMappings protocol {proto!r}",
                           "tcp, udp or sctp")
        host_ip_text = _str(entry, "hostIP") or ""
        host_ip = None
        if host_ip_text:
            try:
                parsed = ip_address(host_ip_text)
            except ValueError:
                raise CniError(INVALID_CONFIG, "invalid portMappings hostIP", host_ip_text) \
                    from None
            if not isinstance(parsed, IPv4Address):
                continue  # an IPv6 binding: netbay's networks are IPv4
            host_ip = None if parsed.is_unspecified else parsed
        mapping = plan_ports.Mapping(proto, host_ip, host_port, container_port)
        if mapping not in out:
            out.append(mapping)
    return tuple(out)


def _requested_aliases(inv: Invocation) -> tuple[str, ...]:
    raw = inv.runtime_config.get("aliases")
    if isinstance(raw, dict):  # podman's form: {network name: [aliases]}
        raw = raw.get(inv.name)
    return _strings("runtimeConfig.aliases", raw)


def dns_config(key: str, raw: Any, servers_key: str, search_key: str) -> Dns:
    if raw is None:
        return Dns()
    if not isinstance(raw, dict):
        raise CniError(INVALID_CONFIG, f"invalid {key}: expected an object", repr(raw))
    servers = _strings(f"{key}.{servers_key}", raw.get(servers_key))
    for server in servers:
        try:
            ip_address(server)
        except ValueError:
            raise CniError(INVALID_CONFIG, f"invalid {key}.{servers_key}: not an IP address",
                           server) from None
    domain = _str(raw, "domain") or ""
    return Dns(servers, domain, _strings(f"{key}.{search_key}", raw.get(search_key)),
               _strings(f"{key}.options", raw.get("options")))


def requested(inv: Invocation) -> Requested:
    ip, prefixlen = _requested_ip(inv)
    return Requested(
        ip=ip,
        prefixlen=prefixlen,
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


def prefix_matches(address: IPv4Interface, prefixlen: int | None) -> bool:
    return prefixlen is None or prefixlen == address.network.prefixlen
