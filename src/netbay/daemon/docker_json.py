"""Records to the Docker Engine API's JSON shapes (and back again for requests)."""

from __future__ import annotations

import re
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from typing import Any

from ..drivers import capabilities
from ..errors import ConfigError, NotFoundError
from ..model import (
    AttachRequest,
    Container,
    ContainerSpec,
    Endpoint,
    Network,
    NetworkSpec,
    SubnetConfig,
)
from ..plan.ports import container_ports
from .json_shape import MapOf, Shape, check

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"


# --- responses ---------------------------------------------------------------------------
def network_json(
    network: Network, members: list[tuple[Container, Endpoint | None]]
) -> dict[str, Any]:
    config = []
    for s in network.subnets:
        entry: dict[str, Any] = {"Subnet": str(s.subnet)}
        if s.ip_range:
            entry["IPRange"] = str(s.ip_range)
        if s.gateway:
            entry["Gateway"] = str(s.gateway)
        if s.aux_addresses:
            entry["AuxiliaryAddresses"] = {k: str(v) for k, v in s.aux_addresses.items()}
        config.append(entry)
    containers = {}
    for container, endpoint in members:
        containers[container.id] = {
            "Name": container.name,
            "EndpointID": endpoint.id if endpoint else "",
            "MacAddress": (endpoint.mac or "") if endpoint else "",
            "IPv4Address": str(endpoint.address) if endpoint and endpoint.address else "",
            "IPv6Address": "",
        }
    return {
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Scope": network.scope,
        "Driver": network.driver,
        "EnableIPv4": True,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": network.internal,
        "Attachable": network.attachable,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": dict(network.options),
        "Labels": dict(network.labels),
    }


def _endpoint_json(network: Network, e: Endpoint) -> dict[str, Any]:
    gateway = next(
        (s.gateway for s in network.subnets
         if e.address and s.gateway and e.address.ip in s.subnet),
        "",
    )
    return {
        "NetworkID": network.id,
        "EndpointID": e.id,
        "Gateway": str(gateway),
        "IPAddress": str(e.address.ip) if e.address else "",
        "IPPrefixLen": e.address.network.prefixlen if e.address else 0,
        "MacAddress": e.mac or "",
        "Aliases": list(e.aliases),
        "Interface": e.ifname,
        "HostInterface": e.host_ifname or "",
        "DefaultRoute": e.gateway is not None,
    }


# the runtime a sandbox record names, as its users know it (podman runs netavark)
_RUNTIMES = {"netavark": "podman"}
_LONG_ID = re.compile(r"[0-9a-f]{64}")  # Docker's, CRI's, podman's: shown by its first 12


def runtime_json(container: Container) -> dict[str, str]:
    """netbay's own field: the runtime that made the container, and the container's id and
    name there. A runtime that gives no name (containerd's ctr, Docker's remote driver
    protocol) is named by its id (a long one by its first 12 digits); records older than
    the name, by their DNS name."""
    external_id = container.config.get("external_id")
    if external_id is None:
        return {"Name": "netbay", "ContainerID": container.id, "ContainerName": container.name}
    runtime, runtime_id = str(container.config.get("runtime", "")), str(external_id)
    short = runtime_id[:12] if _LONG_ID.fullmatch(runtime_id) else runtime_id
    name = container.config.get("name") or container.hostname or short
    return {"Name": _RUNTIMES.get(runtime, runtime), "ContainerID": runtime_id,
            "ContainerName": str(name)}


def container_json(
    container: Container, endpoints: list[tuple[Network, Endpoint]]
) -> dict[str, Any]:
    networks = {network.name: _endpoint_json(network, e) for network, e in endpoints}
    if container.network_mode in ("host", "none"):
        networks[container.network_mode] = {"NetworkID": "", "EndpointID": "", "IPAddress": ""}
    return {
        "Id": container.id,
        "Name": "/" + container.name,
        "Created": container.created,
        "Path": container.command[0] if container.command else "",
        "Args": list(container.command[1:]),
        "State": {
            "Status": container.state,
            "Running": container.state == "running",
            "Pid": container.pid if container.state == "running" else 0,
            "ExitCode": container.exit_code,
        },
        "Config": {
            "Hostname": container.hostname,
            "Cmd": list(container.command),
            "Env": [f"{k}={v}" for k, v in dict(container.config.get("env") or {}).items()],  # type: ignore[call-overload]
        },
        "HostConfig": {
            "NetworkMode": container.config.get("network", container.network_mode),
            "Dns": container.config.get("dns", []),
            "DnsSearch": container.config.get("dns_search", []),
            "DnsOptions": container.config.get("dns_options", []),
            "ExtraHosts": [f"{h}:{a}" for h, a in container.config.get("extra_hosts", [])],  # type: ignore[attr-defined]
            "PortBindings": ports_json(container),
        },
        "NetworkSettings": {
            "SandboxKey": container.netns or "",
            "Networks": networks,
            "Ports": ports_json(container),
        },
        "Runtime": runtime_json(container),
    }


def upstream_routes_json(
    parent: str, routes: list[tuple[IPv4Network, IPv4Address | None]]
) -> list[dict[str, str]]:
    """netbay's own inspect field: the routes a router upstream of the host needs to reach
    an ipvlan L3 network's containers, each via the host's address on the parent."""
    out = []
    for destination, via in routes:
        if via is None:
            out.append({
                "Destination": str(destination),
                "Gateway": "",
                "Command": "",
                "Note": f"parent {parent} has no IPv4 address: route {destination} via the "
                        f"host's address on {parent}'s network",
            })
        else:
            out.append({
                "Destination": str(destination),
                "Gateway": str(via),
                "Command": f"ip route add {destination} via {via}",
            })
    return out


def ports_json(container: Container) -> dict[str, list[dict[str, str]]]:
    """Docker's NetworkSettings.Ports: {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}."""
    out: dict[str, list[dict[str, str]]] = {}
    for m in container_ports(container):
        out.setdefault(f"{m.container_port}/{m.proto}", []).append(
            {"HostIp": str(m.host_ip or "0.0.0.0"), "HostPort": str(m.host_port)}
        )
    return out


# --- requests ----------------------------------------------------------------------------
# The shapes of the request bodies (the Docker Engine API's types where the route is
# Docker's), checked before anything reads a body: see json_shape.
_IPAM_CONFIG: Shape = {
    "Subnet": str, "IPRange": str, "Gateway": str, "AuxiliaryAddresses": MapOf(str),
}
NETWORK_CREATE: Shape = {
    "Name": str, "CheckDuplicate": bool, "Driver": str, "Scope": str, "EnableIPv4": bool,
    "EnableIPv6": bool, "Internal": bool, "Attachable": bool, "Ingress": bool,
    "ConfigOnly": bool, "ConfigFrom": {"Network": str}, "Options": MapOf(str),
    "Labels": MapOf(str),
    "IPAM": {"Driver": str, "Options": MapOf(str), "Config": [_IPAM_CONFIG]},
}
NETWORK_CONNECT: Shape = {
    "Container": str,
    "EndpointConfig": {
        "IPAMConfig": {"IPv4Address": str, "IPv6Address": str, "LinkLocalIPs": [str]},
        "Links": [str], "Aliases": [str], "DNSNames": [str], "DriverOpts": MapOf(str),
        "MacAddress": str, "NetworkID": str, "EndpointID": str, "Gateway": str,
        "IPAddress": str, "IPPrefixLen": int, "IPv6Gateway": str, "GlobalIPv6Address": str,
        "GlobalIPv6PrefixLen": int, "GwPriority": int,
    },
}
NETWORK_DISCONNECT: Shape = {"Container": str, "Force": bool}
CONTAINER_CREATE: Shape = {  # netbay's own route: what `netbay run` sends
    "Cmd": [str], "Name": str, "Hostname": str, "WorkingDir": str, "Env": [str],
    "Networks": [{"Network": str, "IPv4Address": str, "Aliases": [str]}],
    "Dns": [str], "DnsSearch": [str], "DnsOptions": [str], "ExtraHosts": [str],
    "Publish": [str],
}
CONTAINER_STARTED: Shape = {"Pid": int}
CONTAINER_EXITED: Shape = {"ExitCode": int}


def _net(field: str, value: Any) -> IPv4Network:
    try:
        return IPv4Network(str(value), strict=True)
    except (AddressValueError, NetmaskValueError, ValueError) as exc:
        raise ConfigError(field, value, f"not an IPv4 CIDR ({exc})") from None


def _addr(field: str, value: Any) -> IPv4Address:
    try:
        return IPv4Address(str(value))
    except (AddressValueError, ValueError):
        raise ConfigError(field, value, "not an IPv4 address") from None


def _refuse_unsupported(body: dict[str, Any]) -> None:
    """Create-request fields netbay cannot honour are refused, never silently dropped."""
    if body.get("EnableIPv6"):
        raise ConfigError("ipv6", True, "IPv6 networks are not supported yet")
    if body.get("EnableIPv4") is False:  # API 1.48+; absent or null means IPv4 on
        raise ConfigError("ipv4", False, "IPv6-only networks are not supported")
    scope = body.get("Scope") or "local"
    if scope not in ("local", "global"):
        raise ConfigError("scope", scope, "local or global (no swarm)")
    if scope == "global" and not capabilities(body.get("Driver") or "bridge").cluster:
        raise ConfigError("scope", scope, "only overlay networks are cluster-wide")
    for field, flag in (("Ingress", "ingress"), ("ConfigOnly", "config-only")):
        if body.get(field):
            raise ConfigError(flag, True, "swarm and config-only networks are not supported")
    config_from = body.get("ConfigFrom") or {}
    if config_from.get("Network"):
        raise ConfigError(
            "config-from", config_from["Network"], "config-only networks are not supported"
        )


def network_spec(body: dict[str, Any]) -> NetworkSpec:
    """POST /networks/create's body (what the docker client sends) into a NetworkSpec."""
    check(body, NETWORK_CREATE)
    name = body.get("Name")
    if not name:
        raise ConfigError("name", name, "a network name is required")
    _refuse_unsupported(body)
    ipam = body.get("IPAM") or {}
    if (ipam.get("Driver") or "default") != "default":
        raise ConfigError("ipam-driver", ipam.get("Driver"), "only the default IPAM driver exists")
    if ipam.get("Options"):
        raise ConfigError("ipam-opt", ipam["Options"], "the default IPAM driver takes no options")
    subnets = []
    for entry in ipam.get("Config") or []:
        if not entry.get("Subnet"):
            raise ConfigError("subnet", "", "each IPAM config needs a subnet")
        aux = {
            k: _addr("aux-address", v) for k, v in (entry.get("AuxiliaryAddresses") or {}).items()
        }
        subnets.append(
            SubnetConfig(
                subnet=_net("subnet", entry["Subnet"]),
                gateway=_addr("gateway", entry["Gateway"]) if entry.get("Gateway") else None,
                ip_range=_net("ip-range", entry["IPRange"]) if entry.get("IPRange") else None,
                aux_addresses=aux,
            )
        )
    return NetworkSpec(
        name=name,
        driver=body.get("Driver") or "bridge",
        subnets=tuple(subnets),
        internal=bool(body.get("Internal")),
        attachable=bool(body.get("Attachable")),
        options=dict(body.get("Options") or {}),
        labels=dict(body.get("Labels") or {}),
    )


def container_spec(body: dict[str, Any]) -> ContainerSpec:
    check(body, CONTAINER_CREATE)
    command = body.get("Cmd") or []
    if not command:
        raise ConfigError("command", command, "a command to run is required")
    networks = []
    for entry in body.get("Networks") or [{"Network": "bridge"}]:
        ip = entry.get("IPv4Address")
        networks.append(
            AttachRequest(
                network=entry.get("Network") or "bridge",
                ip=_addr("ip", ip) if ip else None,
                aliases=tuple(entry.get("Aliases") or ()),
            )
        )
    extra_hosts = []
    for item in body.get("ExtraHosts") or []:
        host, sep, address = item.rpartition(":")
        if not sep or not host:
            raise ConfigError("add-host", item, "expected HOST:IP")
        extra_hosts.append((host, _addr("add-host", address)))
    env = {}
    for item in body.get("Env") or []:
        key, sep, value = item.partition("=")
        if not key:
            raise ConfigError("env", item, "expected KEY=VALUE")
        env[key] = value
    return ContainerSpec(
        command=tuple(command),
        name=body.get("Name") or None,
        hostname=body.get("Hostname") or None,
        networks=tuple(networks),
        dns=tuple(_addr("dns", d) for d in body.get("Dns") or ()),
        dns_search=tuple(body.get("DnsSearch") or ()),
        dns_options=tuple(body.get("DnsOptions") or ()),
        extra_hosts=tuple(extra_hosts),
        workdir=body.get("WorkingDir") or None,
        env=env,
        publish=tuple(body.get("Publish") or ()),
    )


def attach_request(body: dict[str, Any]) -> tuple[str, IPv4Address | None, tuple[str, ...]]:
    """POST /networks/{id}/connect: {"Container", "EndpointConfig": {"IPAMConfig", "Aliases"}}."""
    check(body, NETWORK_CONNECT)
    container = body.get("Container")
    if not container:
        raise ConfigError("container", container, "a container is required")
    config = body.get("EndpointConfig") or {}
    ip = (config.get("IPAMConfig") or {}).get("IPv4Address")
    aliases = tuple(config.get("Aliases") or ())
    return container, _addr("ip", ip) if ip else None, aliases


def detach_request(body: dict[str, Any]) -> tuple[str, bool]:
    """POST /networks/{id}/disconnect: {"Container", "Force"}."""
    check(body, NETWORK_DISCONNECT)
    container = body.get("Container")
    if not container:  # dockerd: "No such container: "
        raise NotFoundError("a container is required")
    return container, bool(body.get("Force"))


def started_pid(body: dict[str, Any]) -> int:
    """POST /containers/{id}/started: {"Pid"} of the process `netbay run` started itself."""
    check(body, CONTAINER_STARTED)
    return body.get("Pid") or 0


def exit_code(body: dict[str, Any]) -> int | None:
    """POST /containers/{id}/exited: {"ExitCode"}, null when it is not known."""
    check(body, CONTAINER_EXITED)
    code: int | None = body.get("ExitCode")
    return code


def stop_seconds(value: str | None) -> float:
    """POST /containers/{id}/stop?t=SECONDS (10 when absent)."""
    if value is None:
        return 10.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise ConfigError("t", value, "not a number of seconds")
    return seconds
