"""Request bodies of the Docker Engine API's shape (and of netbay's own container route) into
netbay's types. Each body is checked against its route's shape first (json_shape); an
address or subnet of either family is parsed by daemon/addresses.py."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

from ..drivers import capabilities
from ..errors import ConfigError, NotFoundError
from ..model import AttachRequest, ContainerSpec, NetworkSpec, SubnetConfig
from . import addresses
from .json_shape import MapOf, Shape, check

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
_ENDPOINT_CONFIG: Shape = {
    "IPAMConfig": {"IPv4Address": str, "IPv6Address": str, "LinkLocalIPs": [str]},
    "Links": [str], "Aliases": [str], "DNSNames": [str], "DriverOpts": MapOf(str),
    "MacAddress": str, "NetworkID": str, "EndpointID": str, "Gateway": str,
    "IPAddress": str, "IPPrefixLen": int, "IPv6Gateway": str, "GlobalIPv6Address": str,
    "GlobalIPv6PrefixLen": int, "GwPriority": int,
}
NETWORK_CONNECT: Shape = {"Container": str, "EndpointConfig": _ENDPOINT_CONFIG}
NETWORK_DISCONNECT: Shape = {"Container": str, "Force": bool}
CONTAINER_CREATE: Shape = {
    # netbay's own fields: what `netbay run` sends
    "Cmd": [str], "Name": str, "Hostname": str, "WorkingDir": str, "Env": [str],
    "Networks": [{"Network": str, "IPv4Address": str, "IPv6Address": str, "Aliases": [str]}],
    "Dns": [str], "DnsSearch": [str], "DnsOptions": [str], "ExtraHosts": [str],
    "Publish": [str],
    # Docker's (`docker create`): the networks and their static addresses
    "Entrypoint": [str],
    "HostConfig": {"NetworkMode": str, "Dns": [str], "DnsSearch": [str],
                   "DnsOptions": [str], "ExtraHosts": [str],
                   "PortBindings": MapOf([{"HostIp": str, "HostPort": str}])},
    "NetworkingConfig": {"EndpointsConfig": MapOf(_ENDPOINT_CONFIG)},
}
CONTAINER_STARTED: Shape = {"Pid": int}
CONTAINER_EXITED: Shape = {"ExitCode": int}


def _refuse_unsupported(body: dict[str, Any]) -> None:
    """Create-request fields netbay cannot honour are refused, never silently dropped."""
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


def _subnet_config(entry: dict[str, Any]) -> SubnetConfig:
    """One IPAM.Config entry, of either family; its gateway, range and auxiliary addresses
    are of the subnet's family (complete() names one that is not)."""
    if not entry.get("Subnet"):
        raise ConfigError("subnet", "", "each IPAM config needs a subnet")
    aux = {k: addresses.address("aux-address", v)
           for k, v in (entry.get("AuxiliaryAddresses") or {}).items()}
    gateway, ip_range = entry.get("Gateway"), entry.get("IPRange")
    return SubnetConfig(
        subnet=addresses.subnet("subnet", entry["Subnet"]),
        gateway=addresses.address("gateway", gateway) if gateway else None,
        ip_range=addresses.subnet("ip-range", ip_range) if ip_range else None,
        aux_addresses=aux,
    )


def network_spec(body: dict[str, Any]) -> NetworkSpec:
    """POST /networks/create's body (what the docker client sends) into a NetworkSpec.
    EnableIPv6 and EnableIPv4 (API 1.47+; absent or null: on) pick the families; the engine
    refuses a family its driver cannot have (engine/families.py)."""
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
    return NetworkSpec(
        name=name,
        driver=body.get("Driver") or "bridge",
        subnets=tuple(_subnet_config(entry) for entry in ipam.get("Config") or []),
        internal=bool(body.get("Internal")),
        attachable=bool(body.get("Attachable")),
        options=dict(body.get("Options") or {}),
        labels=dict(body.get("Labels") or {}),
        ipv6=bool(body.get("EnableIPv6")),
        ipv4=body.get("EnableIPv4") is not False,
    )


def _static(ipam: dict[str, Any]) -> tuple[IPv4Address | None, IPv6Address | None]:
    """IPAMConfig's (or `netbay run`'s) static addresses: --ip and --ip6."""
    ip, ip6 = ipam.get("IPv4Address"), ipam.get("IPv6Address")
    return (addresses.address4("ip", ip) if ip else None,
            addresses.address6("ip6", ip6) if ip6 else None)


def _own_networks(body: dict[str, Any]) -> list[AttachRequest]:
    """netbay's own list: [{"Network", "IPv4Address", "IPv6Address", "Aliases"}]."""
    out = []
    for entry in body.get("Networks") or [{"Network": "bridge"}]:
        ip, ip6 = _static(entry)
        out.append(AttachRequest(network=entry.get("Network") or "bridge", ip=ip, ip6=ip6,
                                 aliases=tuple(entry.get("Aliases") or ())))
    return out


def _docker_networks(body: dict[str, Any]) -> list[AttachRequest]:
    """Docker's: HostConfig.NetworkMode first ("default" is the bridge), then any other
    network of NetworkingConfig.EndpointsConfig, each with its IPAMConfig and aliases."""
    mode = (body.get("HostConfig") or {}).get("NetworkMode") or "default"
    mode = "bridge" if mode == "default" else mode
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    out = []
    for name in [mode, *(n for n in endpoints if n != mode)]:
        config = endpoints.get(name) or {}
        ip, ip6 = _static(config.get("IPAMConfig") or {})
        out.append(AttachRequest(network=name, ip=ip, ip6=ip6,
                                 aliases=tuple(config.get("Aliases") or ())))
    return out


def container_spec(body: dict[str, Any], name: str | None = None) -> ContainerSpec:
    """POST /containers/create: netbay's own body (`netbay run`), or Docker's (`docker
    create`: the command runs on the host's filesystem, as `netbay run`'s; NAME: the
    ?name= of Docker's request)."""
    check(body, CONTAINER_CREATE)
    docker = "HostConfig" in body or "NetworkingConfig" in body
    host_config = (body.get("HostConfig") or {}) if docker else body
    command = [*(body.get("Entrypoint") or ()), *(body.get("Cmd") or ())]
    if not command:
        raise ConfigError("command", command, "a command to run is required")
    extra_hosts = []
    for item in host_config.get("ExtraHosts") or []:
        host, sep, address = item.partition(":")  # a name has no ':', an IPv6 address has
        if not sep or not host:
            raise ConfigError("add-host", item, "expected HOST:IP")
        extra_hosts.append((host, addresses.address("add-host", address.strip("[]"))))
    env = {}
    for item in body.get("Env") or []:
        key, sep, value = item.partition("=")
        if not key:
            raise ConfigError("env", item, "expected KEY=VALUE")
        env[key] = value
    return ContainerSpec(
        command=tuple(command),
        name=body.get("Name") or name or None,
        hostname=body.get("Hostname") or None,
        networks=tuple(_docker_networks(body) if docker else _own_networks(body)),
        dns=tuple(addresses.address("dns", d) for d in host_config.get("Dns") or ()),
        dns_search=tuple(host_config.get("DnsSearch") or ()),
        dns_options=tuple(host_config.get("DnsOptions") or ()),
        extra_hosts=tuple(extra_hosts),
        workdir=body.get("WorkingDir") or None,
        env=env,
        publish=tuple(_docker_publish(host_config) if docker else body.get("Publish") or ()),
    )


def _docker_publish(host_config: dict[str, Any]) -> list[str]:
    """HostConfig.PortBindings ({"80/tcp": [{"HostIp", "HostPort"}]}) as `-p` specs; an
    IPv6 host address in brackets."""
    out = []
    for port, bindings in (host_config.get("PortBindings") or {}).items():
        for binding in bindings or [{}]:
            host_ip, host_port = binding.get("HostIp") or "", binding.get("HostPort") or ""
            shown = f"[{host_ip}]" if ":" in host_ip else host_ip
            if shown:  # "IP::80": any free host port
                out.append(f"{shown}:{host_port}:{port}")
            else:
                out.append(f"{host_port}:{port}" if host_port else port)
    return out


def connect_request(body: dict[str, Any], network: str) -> tuple[str, AttachRequest]:
    """POST /networks/{id}/connect: {"Container", "EndpointConfig": {"IPAMConfig",
    "Aliases"}}: the container and what it asks of NETWORK."""
    check(body, NETWORK_CONNECT)
    container = body.get("Container")
    if not container:
        raise ConfigError("container", container, "a container is required")
    config = body.get("EndpointConfig") or {}
    ip, ip6 = _static(config.get("IPAMConfig") or {})
    return container, AttachRequest(network=network, ip=ip, ip6=ip6,
                                    aliases=tuple(config.get("Aliases") or ()))


def attach_request(body: dict[str, Any]) -> tuple[str, IPv4Address | None, tuple[str, ...]]:
    """connect_request's IPv4 view: (container, --ip, aliases)."""
    container, request = connect_request(body, "")
    return container, request.ip, request.aliases


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
