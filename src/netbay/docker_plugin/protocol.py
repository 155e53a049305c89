"""The remote-driver protocol's shapes (libnetwork docs/remote.md, docs/ipam.md): what Docker
sends, parsed into netbay's types, and what it reads back. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface
from typing import Any

from ..daemon import addresses
from ..errors import ConfigError, NetbayError
from ..model import SubnetConfig
from ..plan.ports import PROTOCOLS, PublishSpec
from ..plan.ports import Mapping as PortMapping

PLUGIN_NAME = "netbay"
IMPLEMENTS = ["NetworkDriver", "IpamDriver"]
ADDRESS_SPACE = "netbay"  # netbay's one address space, local and global alike
DOCKER_NETWORK_ID = "com.docker.network.id"  # label of a netbay network Docker made
GENERIC = "com.docker.network.generic"  # the `-o` options of `docker network create`
INTERNAL = "com.docker.network.internal"
PORT_MAP = "com.docker.network.portmap"
GATEWAY_REQUEST = "com.docker.network.gateway"  # RequestAddressType of a network's gateway
OPT_DRIVER = "netbay.driver"  # netbay's driver of the network (default bridge)
OPT_NAME = "netbay.name"  # netbay's name of the network (default docker-<id[:12]>)
CONTAINER_PREFIX = "eth"  # Docker names the moved link ethN in the container
_PROTOCOL_NUMBERS = {6: "tcp", 17: "udp", 132: "sctp"}  # PortBinding.Proto (IP numbers)


def network_reply(exc: NetbayError) -> dict[str, str]:
    """A NetworkDriver call refused: Docker shows Err to the user."""
    return {"Err": one_line(exc)}


def ipam_reply(exc: NetbayError) -> dict[str, str]:
    """An IpamDriver call refused: libnetwork's remote IPAM reads "Error", not "Err"."""
    return {"Error": one_line(exc)}


def one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def text(body: Mapping[str, Any], key: str) -> str:
    """A string field of a request; ConfigError naming it if it is missing or no string."""
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(key, value, "a non-empty string is required")
    return value


def strings(value: object, field: str) -> dict[str, str]:
    """A map of strings (`-o` options): anything else is refused."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(field, value, "expected a map of strings")
    return {str(k): v for k, v in value.items()}


def address(value: str, field: str) -> IPv4Interface:
    """An address in CIDR form as Docker sends it (10.1.0.2/24); IPv4."""
    found = addresses.interface(field, value, 4)
    assert isinstance(found, IPv4Interface)
    return found


def address6(value: str, field: str) -> IPv6Interface:
    """An IPv6 address in CIDR form (fd12:3456::2/64): Interface.AddressIPv6."""
    found = addresses.interface(field, value, 6)
    assert isinstance(found, IPv6Interface)
    return found


def subnet_configs(data: object, version: int = 4) -> tuple[SubnetConfig, ...]:
    """IPv4Data (VERSION 4) or IPv6Data of CreateNetwork: each pool with its gateway and
    auxiliary addresses, all of that family."""
    if not isinstance(data, list):
        return ()
    key = f"IPv{version}Data"
    configs = []
    for item in data:
        if not isinstance(item, dict):
            raise ConfigError(key, item, "expected an object")
        subnet = addresses.subnet(f"{key}.Pool", text(item, "Pool"), version)
        gateway = item.get("Gateway")
        aux = strings(item.get("AuxAddresses"), f"{key}.AuxAddresses")
        configs.append(SubnetConfig(
            subnet=subnet,
            gateway=addresses.interface(f"{key}.Gateway", gateway, version).ip if gateway
            else None,
            aux_addresses={k: addresses.interface("AuxAddresses", v, version).ip
                           for k, v in aux.items()},
        ))
    return tuple(configs)


def publish_specs(options: Mapping[str, Any]) -> list[PublishSpec]:
    """Docker's port bindings (com.docker.network.portmap) as netbay's publish specs; IPv6
    host addresses are left out (netbay publishes IPv4), as Docker's own IPv4-only setups."""
    specs = []
    for binding in options.get(PORT_MAP) or []:
        if not isinstance(binding, dict):
            raise ConfigError(PORT_MAP, binding, "expected a port binding object")
        proto = _PROTOCOL_NUMBERS.get(binding.get("Proto", 6), "")
        if proto not in PROTOCOLS:
            raise ConfigError(PORT_MAP, binding.get("Proto"), "unknown protocol")
        host_ip = str(binding.get("HostIP") or "")
        if ":" in host_ip:  # IPv6
            continue
        port, low, high = (_port(binding, k) for k in ("Port", "HostPort", "HostPortEnd"))
        specs.append(PublishSpec(
            proto=proto,
            host_ip=_host_ip(host_ip),
            host_ports=None if low == 0 else (low, max(high, low)),
            container_ports=(port, port),
        ))
    return specs


def _host_ip(value: str) -> IPv4Address | None:
    """None: every address of the host."""
    try:
        parsed = IPv4Address(value) if value else None
    except ValueError:
        raise ConfigError("HostIP", value, "not an IPv4 address") from None
    return None if parsed == IPv4Address("0.0.0.0") else parsed


def _port(binding: Mapping[str, Any], key: str) -> int:
    value = binding.get(key) or 0
    if not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(key, value, "not a port number")
    return value


def port_bindings(mappings: list[PortMapping]) -> list[str]:
    """What an endpoint publishes, for EndpointOperInfo (docker inspect's driver info)."""
    return [str(m) for m in mappings]
