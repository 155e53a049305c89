"""CNI results from netbay's records, in the configuration's spec version. Pure.

- interface result (`netbay`): the interfaces the attachment made (bridge networks: the
  bridge, the host end of the veth, the container's interface, like the reference bridge
  plugin, so portmap, bandwidth and firewall find what they look for), the addresses on the
  container's interface (one per family, IPv4 first), the default routes, DNS.
- IPAM result (`netbay-ipam`): ips without interface indexes, routes, DNS (spec section 5).
Versions before 1.0.0 carry "version": "4" or "6" in each ip; 1.1.0 adds the interface MTU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface, IPv6Network
from typing import Any

from ..drivers import get_driver
from ..model import Endpoint, IPAddress, Network, only_v4_address
from .asks import Dns
from .config import CniRoute

DEFAULT_ROUTE6 = IPv6Network("::/0")


def _before_1_0(version: str) -> bool:
    return version.split(".")[0] == "0"


def subnet_gateway(network: Network, endpoint: Endpoint) -> IPv4Address | None:
    """The endpoint's gateway (a routed one's is 169.254.1.1, outside its subnet); for one
    whose default route is another network's, its subnet's."""
    if endpoint.address is None:
        return None
    if endpoint.gateway is not None:
        return endpoint.gateway
    for config in network.subnets4:
        if endpoint.address.ip in config.subnet:
            return only_v4_address(config.gateway)
    return None


def subnet_gateway6(network: Network, endpoint: Endpoint) -> IPAddress | None:
    """subnet_gateway of the endpoint's IPv6 address."""
    if endpoint.address6 is None:
        return None
    if endpoint.gateway6 is not None:
        return endpoint.gateway6
    return next((c.gateway for c in network.subnets6 if endpoint.address6.ip in c.subnet), None)


def _ip(
    version: str, address: IPv4Interface | IPv6Interface, gateway: IPAddress | None,
    interface: int | None,
) -> Any:
    entry: dict[str, Any] = {}
    if _before_1_0(version):
        entry["version"] = str(address.version)
    entry["address"] = str(address)
    if gateway is not None:
        entry["gateway"] = str(gateway)
    if interface is not None:
        entry["interface"] = interface
    return entry


def _ips(
    version: str, network: Network, endpoint: Endpoint, interface: int | None, gateways: bool
) -> list[Any]:
    """The endpoint's addresses, IPv4 first, each with its subnet's gateway if GATEWAYS."""
    found = ((endpoint.address, subnet_gateway), (endpoint.address6, subnet_gateway6))
    return [
        _ip(version, address, gateway(network, endpoint) if gateways else None, interface)
        for address, gateway in found if address is not None
    ]


def container_routes(network: Network, endpoint: Endpoint) -> list[CniRoute]:
    """The routes attach gave the container's link: the driver's, and the IPv6 default route
    via the endpoint's IPv6 gateway (the driver lists IPv4 ones only)."""
    routes: list[CniRoute] = list(get_driver(network.driver).container_routes(network, endpoint))
    if endpoint.gateway6 is not None and not any(dst.version == 6 for dst, _ in routes):
        routes.append((DEFAULT_ROUTE6, endpoint.gateway6))
    return routes


def interface_result(
    version: str, network: Network, endpoint: Endpoint, netns: str, dns: Dns
) -> dict[str, Any]:
    container_iface: dict[str, Any] = {"name": endpoint.ifname}
    if endpoint.mac:
        container_iface["mac"] = endpoint.mac
    if network.mtu and not _before_1_0(version) and version != "1.0.0":
        container_iface["mtu"] = network.mtu
    container_iface["sandbox"] = netns
    driver = get_driver(network.driver)
    interfaces: list[dict[str, Any]] = []
    if driver.caps.host_bridge and network.device and endpoint.host_ifname:
        interfaces = [{"name": network.device}, {"name": endpoint.host_ifname}]
    interfaces.append(container_iface)
    ips = _ips(version, network, endpoint, len(interfaces) - 1, not network.internal)
    result: dict[str, Any] = {"cniVersion": version, "interfaces": interfaces, "ips": ips}
    routes = container_routes(network, endpoint)
    if routes:
        result["routes"] = _routes(routes)
    if dns.as_dict():
        result["dns"] = dns.as_dict()
    return result


def ipam_result(
    version: str,
    network: Network,
    endpoint: Endpoint,
    routes: Sequence[CniRoute],
    dns: Dns,
) -> dict[str, Any]:
    ips = _ips(version, network, endpoint, None, True)
    result: dict[str, Any] = {"cniVersion": version, "ips": ips}
    if routes:
        result["routes"] = _routes(routes)
    if dns.as_dict():
        result["dns"] = dns.as_dict()
    return result


def _routes(routes: Sequence[CniRoute]) -> list[dict[str, str]]:
    return [{"dst": str(dst), **({"gw": str(gw)} if gw is not None else {})} for dst, gw in routes]


def chained(prev: Any, mine: Mapping[str, Any]) -> dict[str, Any]:
    """ADD with a prevResult (netbay after another interface plugin): its interfaces and ips
    first, netbay's appended (their interface indexes moved along)."""
    if not isinstance(prev, dict):
        return dict(mine)
    interfaces = list(prev.get("interfaces") or [])
    offset = len(interfaces)
    ips = list(prev.get("ips") or [])
    for ip in mine.get("ips", []):
        moved = dict(ip)
        if "interface" in moved:
            moved["interface"] += offset
        ips.append(moved)
    out = dict(prev)
    out["cniVersion"] = mine["cniVersion"]
    out["interfaces"] = interfaces + list(mine.get("interfaces", []))
    out["ips"] = ips
    if mine.get("routes"):
        out["routes"] = list(prev.get("routes") or []) + list(mine["routes"])
    if mine.get("dns") and not prev.get("dns"):
        out["dns"] = mine["dns"]
    return out


def recorded_addresses(prev: Any) -> set[str]:
    """The addresses a prevResult lists ("10.1.0.5/24")."""
    if not isinstance(prev, dict):
        return set()
    return {
        str(ip.get("address"))
        for ip in prev.get("ips") or []
        if isinstance(ip, dict) and ip.get("address")
    }
