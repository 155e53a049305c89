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

What the runtime asks for one attachment (capabilities, CNI_ARGS) is read in asks.py.
Errors are CniError with the spec's codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import summarize_address_range
from typing import Any

from ..drivers import capabilities, find_driver, runtime_drivers, runtime_options
from ..model import IPAddress, IPNetwork, NetworkSpec, SubnetConfig
from . import plugin
from .fields import (
    read_bool,
    read_int,
    read_ip,
    read_str,
    read_subnet,
    refuse_unsupported,
)
from .plugin import INVALID_CONFIG, UNSUPPORTED_FIELD, CniError

KINDS = ("netbay", "netbay-ipam")


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


# --- addresses ---------------------------------------------------------------------------
# (destination, gateway) of a configuration's "routes", of either family
CniRoute = tuple[IPNetwork, IPAddress | None]


def _range(entry: Any, prefix: str, refuse6: str | None) -> SubnetConfig:
    """One range (of a range set, or a section's "subnet" & co.) whose fields are named
    PREFIX + key; REFUSE6: why an IPv6 subnet is refused (None: taken)."""
    where = prefix.rstrip(".") or "subnet"
    if not isinstance(entry, dict):
        raise CniError(INVALID_CONFIG, f"invalid {where}: expected an object", repr(entry))
    subnet = read_subnet(f"{prefix}subnet", entry.get("subnet"))
    if subnet.version == 6 and refuse6:
        raise CniError(UNSUPPORTED_FIELD, f"unsupported field {prefix}subnet: {subnet}", refuse6)
    gateway, start, end = (
        read_ip(f"{prefix}{key}", entry[key]) if entry.get(key) else None
        for key in ("gateway", "rangeStart", "rangeEnd")
    )
    for key, address in (("gateway", gateway), ("rangeStart", start), ("rangeEnd", end)):
        if address is not None and address.version != subnet.version:
            raise CniError(INVALID_CONFIG, f"invalid {prefix}{key}: {address} is not of "
                           f"subnet {subnet}'s address family")
    ip_range = None
    if start is not None or end is not None:
        first = start or subnet.network_address + 1
        last = end or subnet.broadcast_address - 1
        if first not in subnet or last not in subnet or int(last) < int(first):
            raise CniError(
                INVALID_CONFIG, f"invalid {where}: range {first}-{last} not inside {subnet}"
            )
        # FIRST and LAST are of the subnet's family (checked above)
        blocks: list[IPNetwork] = list(summarize_address_range(first, last))
        if len(blocks) != 1:
            raise CniError(
                UNSUPPORTED_FIELD, f"unsupported field {prefix}rangeStart/rangeEnd: "
                f"{first}-{last}", "netbay ranges are CIDR blocks (like 10.1.0.16-10.1.0.31)",
            )
        ip_range = blocks[0] if blocks[0] != subnet else None
    return SubnetConfig(subnet=subnet, gateway=gateway, ip_range=ip_range)


def _range_set(raw: list[Any], where: str, refuse6: str | None) -> tuple[SubnetConfig, ...]:
    """One range set: one address per attachment from its ranges, all of one family."""
    if not raw:
        raise CniError(INVALID_CONFIG, f"invalid {where}: an empty range set")
    found = tuple(_range(r, f"{where}[{i}].", refuse6) for i, r in enumerate(raw))
    if len({s.version for s in found}) > 1:
        raise CniError(INVALID_CONFIG, f"invalid {where}: IPv4 and IPv6 ranges in one range "
                       "set (one range set per address family)")
    return found


def subnets(
    section: Mapping[str, Any], where: str, refuse6: str | None = None
) -> tuple[SubnetConfig, ...]:
    """'ranges' (a range set per address family: one address of each per attachment) or
    'subnet' & co., IPv4 first. REFUSE6: why an IPv6 subnet is refused (None: taken)."""
    if section.get("ranges") is not None:
        ranges = section["ranges"]
        if not isinstance(ranges, list) or not all(isinstance(r, list) for r in ranges):
            raise CniError(INVALID_CONFIG, f"invalid {where}ranges: expected a list of lists")
        sets = [_range_set(r, f"{where}ranges[{i}]", refuse6) for i, r in enumerate(ranges)]
        families = [s[0].version for s in sets]
        if not sets or len(set(families)) != len(families):
            raise CniError(
                UNSUPPORTED_FIELD, f"unsupported field {where}ranges: {len(ranges)} range sets"
                + (f" of IPv{families[0]}" if len(set(families)) == 1 else ""),
                "netbay gives one address of each family per attachment: one range set per "
                "address family",
            )
        return tuple(sorted((c for s in sets for c in s), key=lambda c: c.version))
    if section.get("subnet") is not None:
        return (_range(section, where, refuse6),)
    for key in ("gateway", "rangeStart", "rangeEnd"):
        if section.get(key) is not None:
            raise CniError(INVALID_CONFIG, f"invalid {where}{key}: given without a subnet")
    return ()


def routes(section: Mapping[str, Any], where: str) -> list[CniRoute]:
    raw = section.get("routes")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise CniError(INVALID_CONFIG, f"invalid {where}routes: expected a list", repr(raw))
    out: list[CniRoute] = []
    for route in raw:
        if not isinstance(route, dict):
            raise CniError(INVALID_CONFIG, f"invalid {where}routes: expected objects", repr(route))
        destination = read_subnet(f"{where}routes.dst", route.get("dst"))
        gateway = read_ip(f"{where}routes.gw", route["gw"]) if route.get("gw") else None
        if gateway is not None and gateway.version != destination.version:
            raise CniError(INVALID_CONFIG, f"invalid {where}routes.gw: {gateway} is not of "
                           f"{destination}'s address family")
        out.append((destination, gateway))
    return out


def _refuse6(driver: str) -> str | None:
    """Why DRIVER's networks take no IPv6 subnet (None: they do, or the driver is unknown and
    refused by name)."""
    if find_driver(driver) is None or capabilities(driver).ipv6:
        return None
    return f"the {driver} driver has no IPv6 networks"


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
    existing = read_str(config, "network")
    if existing is not None:
        extra = [k for k in _SELF_CONTAINED if config.get(k) is not None]
        if extra or ipam:
            raise CniError(
                INVALID_CONFIG, f"invalid network config: 'network' names an existing "
                f"network; {', '.join(extra or ['ipam'])} would define another",
            )
        return NetworkChoice(existing)
    driver = read_str(config, "driver") or "bridge"
    top = subnets(config, "", _refuse6(driver))
    below = subnets(ipam, "ipam.", _refuse6(driver)) if ipam else ()
    if top and below:
        raise CniError(INVALID_CONFIG, "invalid network config: subnets given twice (top level "
                       "and ipam)")
    found = top or below
    _routes_default_only(config, ipam)
    return NetworkChoice(inv.name, _self_contained_spec(inv.name, driver, config, found))


def _routes_default_only(config: Mapping[str, Any], ipam: Mapping[str, Any]) -> None:
    for where, section in (("", config), ("ipam.", ipam)):
        for destination, _ in routes(section, where):
            if destination.prefixlen != 0:  # 0.0.0.0/0 or ::/0
                raise CniError(
                    UNSUPPORTED_FIELD, f"unsupported field {where}routes: {destination}",
                    "netbay's containers get the default route via the gateway only",
                )


# Fields of the reference plugins that netbay's networks do not implement.
_NOT_IMPLEMENTED = ("vlan", "vlanTrunk", "promiscMode", "macspoofchk", "enabledad",
                    "linkInContainer")


def _self_contained_spec(
    name: str, driver: str, config: Mapping[str, Any], found: tuple[SubnetConfig, ...]
) -> NetworkSpec:
    """The reference plugins' fields as the driver's options (RuntimeOptions): a bridge is
    "bridge" and is the containers' gateway ("isGateway"), a parent is "master". A field the
    driver has no option for is refused."""
    fields = runtime_options(driver)
    if fields is None:
        raise CniError(UNSUPPORTED_FIELD, f"unsupported field driver: {driver!r}",
                       f"netbay's CNI plugin makes {' and '.join(runtime_drivers())} networks")
    bridged = capabilities(driver).host_bridge
    device_field, other_field = ("bridge", "master") if bridged else ("master", "bridge")
    settings = {"ipMasq": fields.masquerade, "mtu": fields.mtu, "mode": fields.mode}
    lacking = tuple(field for field, option in settings.items() if option is None)
    refuse_unsupported(config, (*_NOT_IMPLEMENTED, other_field, *lacking),
                       f"not supported by netbay's {driver} networks")
    options: dict[str, str] = {}
    device = read_str(config, device_field)
    if device:
        options[fields.device] = device
    if fields.masquerade:
        options[fields.masquerade] = "true" if read_bool(config, "ipMasq", True) else "false"
    mtu = read_int(config, "mtu", 68, 65535)
    if fields.mtu and mtu is not None:
        options[fields.mtu] = str(mtu)
    mode = read_str(config, "mode")
    if fields.mode and mode:
        options[fields.mode] = mode
    internal = read_bool(config, "internal", False)
    if bridged:
        read_bool(config, "hairpinMode", True)  # netbay turns hairpin on where a port is published
        gateway = read_bool(config, "isGateway", True) or read_bool(
            config, "isDefaultGateway", False)
        internal = internal or not gateway
    # a family is the configuration's only if it gives a subnet of it; none: netbay's IPv4 default
    ipv4 = not found or any(s.version == 4 for s in found)
    return NetworkSpec(name=name, driver=driver, subnets=found, internal=internal, options=options,
                       ipv4=ipv4)


def ipam_network(inv: Invocation) -> NetworkChoice:
    """What the `netbay-ipam` plugin's ipam section names (driver external)."""
    ipam = _ipam_section(inv.config)
    if not ipam:
        raise CniError(INVALID_CONFIG, "invalid network config: no ipam section")
    existing = read_str(ipam, "network")
    if existing is not None:
        if subnets(ipam, "ipam."):
            raise CniError(INVALID_CONFIG, "invalid ipam: 'network' names an existing network; "
                           "subnets would define another")
        return NetworkChoice(existing)
    found = subnets(ipam, "ipam.", _refuse6("external"))
    ipv4 = not found or any(s.version == 4 for s in found)
    return NetworkChoice(inv.name, NetworkSpec(name=inv.name, driver="external", subnets=found,
                                               ipv4=ipv4))


