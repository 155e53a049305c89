"""macvlan and ipvlan with IPv6 subnets, without a kernel: the families they take, the host
shim's IPv6 address, ipvlan L3's upstream routes of each family, and what attach asks of
kernel/sublinks.py for each endpoint."""

from __future__ import annotations

import dataclasses
import threading
import time
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_network,
)
from pathlib import Path
from typing import Any

import pytest

from netbay.daemon.docker_json import upstream_routes_json
from netbay.drivers import get_driver
from netbay.drivers.parent import ParentDriver, host_link_addresses
from netbay.engine.families import families
from netbay.ipam.allocator import complete
from netbay.kernel import sublinks
from netbay.model import Endpoint, Network, NetworkSpec, SubnetConfig

ID = "0123456789abcdef" * 4
V4, V6 = "192.168.94.0/24", "2001:db8:94::/64"


def driver(name: str) -> ParentDriver:
    found = get_driver(name)
    assert isinstance(found, ParentDriver)
    return found


def config(cidr: str, ip_range: str | None = None) -> SubnetConfig:
    return complete(SubnetConfig(ip_network(cidr), ip_range=ip_network(ip_range)
                                 if ip_range else None))


def network(kind: str, *subnets: SubnetConfig, internal: bool = False, **options: str) -> Network:
    spec = NetworkSpec("lan", kind, subnets, internal=internal, options=options, ipv6=True)
    found = driver(kind)
    return found.fit(found.validate(spec, ID), [])


class Kernel:
    """What upstream_routes asks of a DriverKernel: its lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()


def endpoint(*, gateway: bool = True, gateway6: bool = True, v4: bool = True) -> Endpoint:
    return Endpoint(
        "e" * 64, ID, "c" * 64, "eth0", None, "02:42:c0:a8:5e:02",
        IPv4Interface("192.168.94.2/24") if v4 else None,
        IPv4Address("192.168.94.1") if gateway and v4 else None,
        address6=IPv6Interface("2001:db8:94::2/64"),
        gateway6=IPv6Address("2001:db8:94::1") if gateway6 else None,
    )


# --- the families ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["macvlan", "ipvlan"])
def test_macvlan_and_ipvlan_take_ipv6_dual_stack_or_alone(kind: str) -> None:
    assert driver(kind).caps.ipv6
    assert families(NetworkSpec("n", kind, ipv6=True), driver(kind)) == (True, True)
    assert families(NetworkSpec("n", kind, ipv6=True, ipv4=False), driver(kind)) == (False, True)
    only6 = network(kind, config(V6), parent="ens802")
    assert (only6.ipv4, only6.ipv6, only6.device) == (False, True, "ens802")
    assert only6.subnets[0].gateway == IPv6Address("2001:db8:94::1")


@pytest.mark.parametrize(("kind", "dummy"), [("macvlan", "dm-"), ("ipvlan", "di-")])
def test_an_ipv6_network_without_parent_is_internal_on_a_dummy(kind: str, dummy: str) -> None:
    inside = network(kind, config(V4), config(V6))
    assert inside.internal and inside.device == dummy + ID[:12]
    routed = network("ipvlan", config(V6), ipvlan_mode="l3")
    assert routed.internal and driver("ipvlan").upstream_routes(Kernel(), routed) == []


def test_networks_of_either_family_on_one_parent_must_not_overlap() -> None:
    one = network("macvlan", config(V4), config(V6), parent="ens802")
    wider = network("macvlan", config("2001:db8:94::/48"), parent="ens802")
    with pytest.raises(Exception, match="invalid subnet '2001:db8:94::/48': overlaps "
                       "2001:db8:94::/64 of network lan on parent ens802"):
        driver("macvlan").fit(wider, [one])
    other = network("macvlan", config("10.9.0.0/24"), config("2001:db8:95::/64"),
                    parent="ens802")
    assert driver("macvlan").fit(other, [one]) == other


# --- the host shim --------------------------------------------------------------------------
def test_the_host_shim_takes_an_ipv6_address_outside_the_containers_range_too() -> None:
    net = network("macvlan", config(V4, "192.168.94.0/25"),
                  config(V6, "2001:db8:94::/80"), parent="ens802", host_link="true")
    assert [c.aux_addresses for c in net.subnets] == [
        {"host_link": IPv4Address("192.168.94.254")},
        {"host_link": IPv6Address("2001:db8:94:0:ffff:ffff:ffff:fffe")},
    ]
    assert host_link_addresses(net) == [
        (IPv4Network("192.168.94.0/25"), IPv4Interface("192.168.94.254/24")),
        (IPv6Network("2001:db8:94::/80"), IPv6Interface("2001:db8:94:0:ffff:ffff:ffff:fffe/64")),
    ]
    desired = driver("macvlan").desired(net, [])
    shim = desired.links[1]
    assert shim.name == "nbs0123456789ab" and shim.lower == "ens802"
    assert shim.addresses == frozenset({
        IPv4Interface("192.168.94.254/32"),
        IPv6Interface("2001:db8:94:0:ffff:ffff:ffff:fffe/128"),
    })
    # an IPv6 route carries no source (the kernel prefers the shim's own address)
    assert [(str(r.destination), r.device, str(r.source)) for r in desired.routes] == [
        ("192.168.94.0/25", "nbs0123456789ab", "192.168.94.254"),
        ("2001:db8:94::/80", "nbs0123456789ab", "None"),
    ]
    assert driver("macvlan").audit(net, {"ens802"}) == [
        "network lan: host link nbs0123456789ab missing"]


def test_the_shims_ipv6_address_is_found_at_once_when_the_range_fills_the_subnet() -> None:
    started = time.monotonic()
    net = network("ipvlan", config(V6, V6), parent="ens802", host_link="true")
    assert net.subnets[0].aux_addresses == {
        "host_link": IPv6Address("2001:db8:94:0:ffff:ffff:ffff:fffe")}
    assert time.monotonic() - started < 1  # not a walk over 2^64 addresses
    # IPv4 as before: the highest address outside the range, else the highest inside
    below = network("macvlan", config("10.5.0.0/24", "10.5.0.128/25"), parent="e1",
                    host_link="true")
    assert below.subnets[0].aux_addresses == {"host_link": IPv4Address("10.5.0.127")}
    full = network("macvlan", config("10.5.0.0/24", "10.5.0.0/24"), parent="e1",
                   host_link="true")
    assert full.subnets[0].aux_addresses == {"host_link": IPv4Address("10.5.0.254")}


# --- ipvlan L3: the routes an upstream router needs -------------------------------------------
def fake_addresses(
    monkeypatch: pytest.MonkeyPatch, v4: list[str], v6: list[str]
) -> list[str]:
    asked: list[str] = []

    def of(family: list[str], kind: type[Any]) -> Any:
        def read(name: str) -> list[Any]:
            asked.append(f"{kind.__name__} {name}")
            return [kind(a) for a in family]
        return read

    monkeypatch.setattr(sublinks, "ipv4_addresses", of(v4, IPv4Interface))
    monkeypatch.setattr(sublinks, "ipv6_addresses", of(v6, IPv6Interface))
    return asked


def test_ipvlan_l3_routes_each_subnet_via_the_parents_address_of_its_family(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = fake_addresses(monkeypatch, ["203.0.113.1/24"],
                           ["fe80::1/64", "2001:db8:1::1/64", "2001:db8:1::2/64"])
    net = network("ipvlan", config(V4), config(V6), config("2001:db8:95::/64"),
                  parent="ens802", ipvlan_mode="l3")
    routes = driver("ipvlan").upstream_routes(Kernel(), net)
    # the link-local address is no next hop a router can be told without its interface
    assert routes == [
        (IPv4Network(V4), IPv4Address("203.0.113.1")),
        (IPv6Network(V6), IPv6Address("2001:db8:1::1")),
        (IPv6Network("2001:db8:95::/64"), IPv6Address("2001:db8:1::1")),
    ]
    assert upstream_routes_json("ens802", routes)[1:] == [
        {"Destination": V6, "Gateway": "2001:db8:1::1",
         "Command": f"ip route add {V6} via 2001:db8:1::1"},
        {"Destination": "2001:db8:95::/64", "Gateway": "2001:db8:1::1",
         "Command": "ip route add 2001:db8:95::/64 via 2001:db8:1::1"},
    ]
    assert asked == ["IPv4Interface ens802", "IPv6Interface ens802"]

    # an IPv6-only network reads no IPv4 address; L2 routes nothing upstream
    asked.clear()
    only6 = network("ipvlan", config(V6), parent="ens802", ipvlan_mode="l3s")
    assert driver("ipvlan").upstream_routes(Kernel(), only6) == [
        (IPv6Network(V6), IPv6Address("2001:db8:1::1"))]
    assert asked == ["IPv6Interface ens802"]
    flat = network("ipvlan", config(V4), config(V6), parent="ens802")
    assert driver("ipvlan").upstream_routes(Kernel(), flat) == []


def test_a_parent_with_only_a_link_local_ipv6_address_gets_a_note(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_addresses(monkeypatch, [], ["fe80::1/64"])
    net = network("ipvlan", config(V4), config(V6), parent="ens802", ipvlan_mode="l3")
    routes = driver("ipvlan").upstream_routes(Kernel(), net)
    assert routes == [(IPv4Network(V4), None), (IPv6Network(V6), None)]
    shown = upstream_routes_json("ens802", routes)
    assert [(r["Gateway"], r["Command"]) for r in shown] == [("", ""), ("", "")]
    assert shown[0]["Note"].startswith("parent ens802 has no IPv4 address: route "
                                       f"{V4} via the host's address")
    assert shown[1]["Note"] == (f"parent ens802 has no global IPv6 address: route {V6} via "
                                "the host's address on ens802's network")


# --- attach: what each endpoint asks of sublinks ----------------------------------------------
def attached(monkeypatch: pytest.MonkeyPatch, net: Network, found: Endpoint) -> dict[str, Any]:
    asked: dict[str, Any] = {}
    monkeypatch.setattr(sublinks, "attach_sublink", lambda **kw: asked.update(kw))
    driver(net.driver).attach(Kernel(), net, found, Path("/run/netns/x"),  # type: ignore[arg-type]
                              default_route=found.gateway is not None)
    return {k: asked[k] for k in ("address", "gateway", "device_route", "address6", "gateway6",
                                  "device_route6")}


def test_attach_gives_the_link_both_addresses_and_each_familys_default_route(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dual = network("macvlan", config(V4), config(V6), parent="ens802")
    assert attached(monkeypatch, dual, endpoint()) == {
        "address": IPv4Interface("192.168.94.2/24"), "gateway": IPv4Address("192.168.94.1"),
        "device_route": False, "address6": IPv6Interface("2001:db8:94::2/64"),
        "gateway6": IPv6Address("2001:db8:94::1"), "device_route6": False,
    }
    # another network carries the container's default routes: addresses only
    assert attached(monkeypatch, dual, endpoint(gateway=False, gateway6=False)) == {
        "address": IPv4Interface("192.168.94.2/24"), "gateway": None, "device_route": False,
        "address6": IPv6Interface("2001:db8:94::2/64"), "gateway6": None,
        "device_route6": False,
    }
    # IPv6 only: its default route whatever IPv4's (there is none)
    only6 = network("ipvlan", config(V6), parent="ens802")
    assert attached(monkeypatch, only6, endpoint(v4=False)) == {
        "address": None, "gateway": None, "device_route": False,
        "address6": IPv6Interface("2001:db8:94::2/64"),
        "gateway6": IPv6Address("2001:db8:94::1"), "device_route6": False,
    }


def test_ipvlan_l3_default_routes_go_straight_out_of_the_link(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    routed = network("ipvlan", config(V4), config(V6), parent="ens802", ipvlan_mode="l3")
    assert attached(monkeypatch, routed, endpoint()) == {
        "address": IPv4Interface("192.168.94.2/24"), "gateway": None, "device_route": True,
        "address6": IPv6Interface("2001:db8:94::2/64"), "gateway6": None,
        "device_route6": True,
    }
    assert attached(monkeypatch, routed, endpoint(gateway6=False))["device_route6"] is False


def test_a_vlan_parent_netbay_makes_keeps_ipv6_only_where_the_host_routes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[tuple[str, str, bool]] = []
    monkeypatch.setattr(sublinks, "ensure_parent",
                        lambda name, kind, lower, ipv6=False: made.append((name, kind.kind, ipv6)))
    cases = [
        network("ipvlan", config(V4), config(V6), parent="ens802.94", ipvlan_mode="l3"),
        network("ipvlan", config(V4), parent="ens802.95", ipvlan_mode="l3"),
        network("ipvlan", config(V6), parent="ens802.96"),
        network("macvlan", config(V6), parent="ens802.97"),
        network("ipvlan", config(V6), ipvlan_mode="l3"),  # internal: a dummy
    ]
    for net in cases:
        net = dataclasses.replace(net, device_created=True)
        driver(net.driver).setup(Kernel(), net)  # type: ignore[arg-type]
    assert made == [("ens802.94", "vlan", True), ("ens802.95", "vlan", False),
                    ("ens802.96", "vlan", False), ("ens802.97", "vlan", False),
                    ("di-0123456789ab", "dummy", False)]
