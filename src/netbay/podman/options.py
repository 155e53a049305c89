"""netavark's network options (the JSON podman sends to `netavark setup|teardown`), read into
netbay's terms. Pure.

Podman allocates the addresses itself (static_ips); netbay records them as the leases. A
podman network becomes a netbay network of the same name (the bridge keeps podman's device
name, podmanN), made on first use and removed with its last container, as netavark removes
its bridge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

from ..drivers import capabilities, runtime_options
from ..model import IPAddress, NetworkSpec, SubnetConfig
from ..plan import ports as plan_ports
from ..plan.naming import IFNAME_RULE, valid_ifname

ID_LABEL = "io.podman.network.id"


class OptionsError(ValueError):
    """Input netavark would refuse (its wording where it has one)."""


@dataclass(frozen=True)
class Attachment:
    """One network of the container: podman's per-network options and network definition."""

    name: str
    ifname: str
    ip: IPv4Address | None
    mac: str | None
    aliases: tuple[str, ...]
    dns_enabled: bool
    spec: NetworkSpec
    ip6: IPv6Address | None = None


@dataclass(frozen=True)
class Options:
    container_id: str
    container_name: str
    attachments: tuple[Attachment, ...]
    ports: tuple[plan_ports.Mapping, ...]
    dns_servers: tuple[str, ...]


def _field(obj: Mapping[str, Any], key: str, kind: type, where: str, required: bool = True) -> Any:
    if key not in obj or obj[key] is None:
        if required:
            raise OptionsError(f"JSON Decoding error: missing field `{key}` in {where}")
        return None
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise OptionsError(f"JSON Decoding error: invalid type for `{key}` in {where}")
    return value


def _subnets(info: Mapping[str, Any], name: str, driver: str) -> tuple[SubnetConfig, ...]:
    """The network's subnets of both families, IPv4 first (podman lists them so too)."""
    out = []
    for entry in _field(info, "subnets", list, f"network {name}", required=False) or []:
        if not isinstance(entry, dict):
            raise OptionsError(f"JSON Decoding error: invalid subnet in network {name}")
        try:
            subnet = ip_network(str(entry.get("subnet")), strict=False)
            gateway = ip_address(entry["gateway"]) if entry.get("gateway") else None
        except ValueError as exc:
            raise OptionsError(f"JSON Decoding error: network {name}: {exc}") from None
        if subnet.version == 6 and not capabilities(driver).ipv6:
            raise OptionsError(f"network {name}: IPv6 subnet {subnet} is not supported by "
                               f"netbay's {driver} networks")
        if gateway is not None and gateway.version != subnet.version:
            raise OptionsError(f"network {name}: gateway {gateway} is not of subnet {subnet}'s "
                               "address family")
        out.append(SubnetConfig(subnet=subnet, gateway=gateway))
    return tuple(sorted(out, key=lambda s: s.version))


def network_spec(info: Mapping[str, Any], name: str) -> NetworkSpec:
    """A podman network definition as the netbay network that serves it."""
    driver = _field(info, "driver", str, f"network {name}")
    device = _field(info, "network_interface", str, f"network {name}", required=False) or ""
    options = _field(info, "options", dict, f"network {name}", required=False) or {}
    ipam = _field(info, "ipam_options", dict, f"network {name}", required=False) or {}
    if (ipam.get("driver") or "host-local") != "host-local":
        raise OptionsError(
            f"network {name}: ipam driver {ipam.get('driver')!r} is not supported by netbay "
            "(podman's host-local allocation passes static_ips)"
        )
    net_options = _driver_options(name, driver, device, options)
    labels = {ID_LABEL: str(info["id"])} if isinstance(info.get("id"), str) else {}
    _field(info, "ipv6_enabled", bool, f"network {name}", required=False)  # the subnets say
    subnets = _subnets(info, name, driver)
    return NetworkSpec(
        name=name,
        driver=driver,
        subnets=subnets,
        # an IPv6-only network has no IPv4 subnet; one without subnets gets netbay's default
        ipv4=not subnets or any(s.version == 4 for s in subnets),
        internal=bool(_field(info, "internal", bool, f"network {name}", required=False)),
        options=net_options,
        labels=labels,
    )


def _driver_options(
    name: str, driver: str, device: str, options: Mapping[str, Any]
) -> dict[str, str]:
    """netavark's device and options as the driver's: each setting the driver has no option
    for is refused (netbay would not honour it), never dropped."""
    fields = runtime_options(driver)
    if fields is None:
        raise OptionsError(f"unsupported driver {driver}")
    net_options = {fields.device: device} if device else {}
    for setting, option in (("mode", fields.mode), ("mtu", fields.mtu), ("vlan", None)):
        value = options.get(setting)
        if value in (None, "", "0"):
            continue
        if option is None:
            raise OptionsError(f"network {name}: option {setting} is not supported on "
                               f"netbay's {driver} networks")
        net_options[option] = str(value)
    return net_options


def _attachment(name: str, per: Any, info: Any) -> Attachment:
    if not isinstance(per, dict) or not isinstance(info, dict):
        raise OptionsError(f"JSON Decoding error: network {name}: expected objects")
    ifname = per.get("interface_name")
    if not isinstance(ifname, str) or not ifname:
        raise OptionsError("no container interface name given")
    if not valid_ifname(ifname):
        raise OptionsError(f"invalid interface name {ifname!r}: expected {IFNAME_RULE}")
    addresses: dict[int, IPAddress] = {}
    for raw in _field(per, "static_ips", list, f"network {name}", required=False) or []:
        try:
            address = ip_address(str(raw))
        except ValueError as exc:
            raise OptionsError(f"JSON Decoding error: {exc}") from None
        if address.version in addresses:
            raise OptionsError(f"network {name}: netbay gives one IPv{address.version} address "
                               f"per interface, podman passed {addresses[address.version]} "
                               f"and {address}")
        addresses[address.version] = address
    ip, ip6 = addresses.get(4), addresses.get(6)
    assert isinstance(ip, IPv4Address | None) and isinstance(ip6, IPv6Address | None)
    mac = _field(per, "static_mac", str, f"network {name}", required=False) or None
    aliases = _field(per, "aliases", list, f"network {name}", required=False) or []
    if not all(isinstance(a, str) for a in aliases):
        raise OptionsError(f"JSON Decoding error: network {name}: aliases must be strings")
    dns_enabled = bool(_field(info, "dns_enabled", bool, f"network {name}", required=False))
    return Attachment(
        name=name,
        ifname=ifname,
        ip=ip,
        ip6=ip6,
        mac=mac.lower() if mac else None,
        aliases=tuple(aliases) if dns_enabled else (),
        dns_enabled=dns_enabled,
        spec=network_spec(info, name),
    )


def _host_ip(text: str) -> IPAddress | None:
    """A port mapping's host_ip as netavark reads it: none publishes on every host address of
    each family, 0.0.0.0 on every IPv4 one only, :: on every IPv6 one only."""
    if not text:
        return None
    try:
        address = ip_address(text)
    except ValueError:
        raise OptionsError(f"invalid host ip {text!r}") from None
    if address.version == 6 and address.is_loopback:
        raise OptionsError(f"invalid host ip {text!r}: ::1 cannot be forwarded to a container "
                           "(IPv6 has no route_localnet)")
    return address


def _ports(raw: Any) -> tuple[plan_ports.Mapping, ...]:
    out: list[plan_ports.Mapping] = []
    for entry in raw or []:
        if not isinstance(entry, dict):
            raise OptionsError("JSON Decoding error: invalid port mapping")
        host_port = _field(entry, "host_port", int, "port mapping")
        container_port = _field(entry, "container_port", int, "port mapping")
        count = _field(entry, "range", int, "port mapping", required=False) or 1
        host_ip_text = _field(entry, "host_ip", str, "port mapping", required=False) or ""
        protocols = (_field(entry, "protocol", str, "port mapping", required=False) or "tcp")
        last_host, last_container = host_port + count - 1, container_port + count - 1
        if min(host_port, container_port, count) < 1 or max(last_host, last_container) > 65535:
            raise OptionsError(f"invalid port mapping {host_port}:{container_port} range {count}")
        host_ip = _host_ip(host_ip_text)
        for proto in protocols.split(","):
            proto = proto.strip().lower()
            if proto not in plan_ports.PROTOCOLS:
                raise OptionsError(f"unsupported protocol {proto!r}")
            for offset in range(count):
                mapping = plan_ports.Mapping(
                    proto, host_ip, host_port + offset, container_port + offset
                )
                if mapping not in out:
                    out.append(mapping)
    return tuple(out)


def parse(document: Any) -> Options:
    if not isinstance(document, dict):
        raise OptionsError("JSON Decoding error: expected the network options object")
    container_id = _field(document, "container_id", str, "network options")
    if not container_id or not all(c.isascii() and (c.isalnum() or c in "_.-")
                                   for c in container_id) or not container_id[0].isalnum():
        raise OptionsError(f"invalid container id {container_id!r}")
    container_name = _field(document, "container_name", str, "network options")
    networks = _field(document, "networks", dict, "network options")
    info = _field(document, "network_info", dict, "network options")
    attachments = []
    for name in sorted(info):
        if name not in networks:
            raise OptionsError(f"network options for network {name} not found")
        attachments.append(_attachment(name, networks[name], info[name]))
    attachments.sort(key=lambda a: (len(a.ifname), a.ifname))  # eth0 first: its default route
    for name in networks:
        if name not in info:
            raise OptionsError(f"network info for network {name} not found")
    servers = _field(document, "dns_servers", list, "network options", required=False) or []
    return Options(
        container_id=container_id,
        container_name=container_name,
        attachments=tuple(attachments),
        ports=_ports(_field(document, "port_mappings", list, "network options", required=False)),
        dns_servers=tuple(str(s) for s in servers),
    )
