"""Records to the Docker Engine API's JSON shapes (requests the other way round:
docker_requests, whose parsers are named here too for the routes that import them)."""

from __future__ import annotations

import re
from typing import Any

from ..drivers import Route
from ..engine.static_addresses import STATIC
from ..model import Container, Endpoint, Network, SubnetConfig
from ..plan.ports import container_ports
from .docker_requests import attach_request as attach_request  # the routes' parsers,
from .docker_requests import connect_request as connect_request  # named here as before
from .docker_requests import container_spec as container_spec
from .docker_requests import detach_request as detach_request
from .docker_requests import exit_code as exit_code
from .docker_requests import network_spec as network_spec
from .docker_requests import started_pid as started_pid
from .docker_requests import stop_seconds as stop_seconds

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"


# --- responses ---------------------------------------------------------------------------
def _ipam_entry(s: SubnetConfig) -> dict[str, Any]:
    entry: dict[str, Any] = {"Subnet": str(s.subnet)}
    if s.ip_range:
        entry["IPRange"] = str(s.ip_range)
    if s.gateway:
        entry["Gateway"] = str(s.gateway)
    if s.aux_addresses:
        entry["AuxiliaryAddresses"] = {k: str(v) for k, v in s.aux_addresses.items()}
    return entry


def network_json(
    network: Network, members: list[tuple[Container, Endpoint | None]]
) -> dict[str, Any]:
    """Docker's Network object: both families' IPAM configs, IPv4 first; each member with
    its address of each family (with the prefix length, as Docker shows them)."""
    containers = {}
    for container, endpoint in members:
        containers[container.id] = {
            "Name": container.name,
            "EndpointID": endpoint.id if endpoint else "",
            "MacAddress": (endpoint.mac or "") if endpoint else "",
            "IPv4Address": str(endpoint.address) if endpoint and endpoint.address else "",
            "IPv6Address": str(endpoint.address6) if endpoint and endpoint.address6 else "",
        }
    return {
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Scope": network.scope,
        "Driver": network.driver,
        "EnableIPv4": network.ipv4,
        "EnableIPv6": network.ipv6,
        "IPAM": {"Driver": "default", "Options": {},
                 "Config": [_ipam_entry(s) for s in network.subnets]},
        "Internal": network.internal,
        "Attachable": network.attachable,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": dict(network.options),
        "Labels": dict(network.labels),
    }


def _gateway_of(network: Network, address: object) -> str:
    """The gateway of the pool ADDRESS is in ("" if none)."""
    return next((str(s.gateway) for s in network.subnets
                 if address is not None and s.gateway and address in s.subnet), "")


def _endpoint_json(network: Network, e: Endpoint, static: object = None) -> dict[str, Any]:
    """Docker's EndpointSettings. STATIC: the addresses the container asked for (Docker's
    IPAMConfig, null when it asked for none)."""
    v4, v6 = e.address, e.address6
    return {
        "IPAMConfig": static or None,
        "NetworkID": network.id,
        "EndpointID": e.id,
        "Gateway": _gateway_of(network, v4.ip if v4 else None),
        "IPAddress": str(v4.ip) if v4 else "",
        "IPPrefixLen": v4.network.prefixlen if v4 else 0,
        "IPv6Gateway": _gateway_of(network, v6.ip if v6 else None),
        "GlobalIPv6Address": str(v6.ip) if v6 else "",
        "GlobalIPv6PrefixLen": v6.network.prefixlen if v6 else 0,
        "MacAddress": e.mac or "",
        "Aliases": list(e.aliases),
        "Interface": e.ifname,
        "HostInterface": e.host_ifname or "",
        "DefaultRoute": e.gateway is not None,
        "DefaultRouteIPv6": e.gateway6 is not None,
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
    static = container.config.get(STATIC) or {}
    assert isinstance(static, dict)
    networks = {network.name: _endpoint_json(network, e, static.get(network.id))
                for network, e in endpoints}
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
    parent: str, routes: list[Route]
) -> list[dict[str, str]]:
    """netbay's own inspect field: the routes a router upstream of the host needs to reach
    an ipvlan L3 network's containers, each via the host's address of its family on the
    parent."""
    out = []
    for destination, via in routes:
        if via is None:
            family = "IPv4" if destination.version == 4 else "global IPv6"  # not link-local
            out.append({
                "Destination": str(destination),
                "Gateway": "",
                "Command": "",
                "Note": f"parent {parent} has no {family} address: route {destination} via "
                        f"the host's address on {parent}'s network",
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
