"""CNI invocations and results of both address families: dual-stack range sets read into a
network spec, addresses asked for of each family, results listing both. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Any

import pytest

from netbay.cni import asks, results
from netbay.cni import config as cfg
from netbay.cni.plugin import CniError
from netbay.drivers import get_driver
from netbay.engine.runtime_networks import network_differences
from netbay.model import Endpoint, Network, SubnetConfig
from netbay.plan.ports import Mapping

V4 = {"subnet": "10.88.0.0/16"}
V6 = {"subnet": "fd00:88::/64"}


def inv(config: dict[str, Any], command: str = "ADD", args: str = "",
        kind: str = "netbay") -> cfg.Invocation:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/c1",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}
    if args:
        env["CNI_ARGS"] = args
    full = {"cniVersion": "1.0.0", "name": "net1", "type": kind, **config}
    return cfg.invocation({"kind": kind, "env": env, "config": full}, command)


def refused(config: dict[str, Any], reader: Any = cfg.interface_network, **kw: Any) -> CniError:
    with pytest.raises(CniError) as caught:
        reader(inv(config, **kw))
    return caught.value


def with_ipv6(driver: str, on: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    found = get_driver(driver)
    monkeypatch.setattr(found, "caps", dataclasses.replace(found.caps, ipv6=on))


@pytest.fixture
def v6_bridge(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The bridge driver with IPv6 networks (whether or not the kernel side has it yet)."""
    with_ipv6("bridge", True, monkeypatch)
    yield


def test_dual_stack_range_sets_make_a_dual_stack_spec(v6_bridge: None) -> None:
    for config in ({"ipam": {"type": "netbay-ipam", "ranges": [[V4], [V6]]}},
                   {"ranges": [[V6], [V4]]}):  # either order, top level or in ipam
        spec = cfg.interface_network(inv(config)).spec
        assert spec is not None and spec.ipv4
        assert spec.subnets == (SubnetConfig(IPv4Network("10.88.0.0/16")),
                                SubnetConfig(IPv6Network("fd00:88::/64")))
    ranged = cfg.interface_network(inv({"ranges": [[V4], [{
        "subnet": "fd00:88::/64", "gateway": "fd00:88::1", "rangeStart": "fd00:88::100",
        "rangeEnd": "fd00:88::1ff"}]]})).spec
    assert ranged is not None and ranged.subnets[1] == SubnetConfig(
        IPv6Network("fd00:88::/64"), IPv6Address("fd00:88::1"), IPv6Network("fd00:88::100/120"))
    # IPv6 only: no IPv4 subnet is added to it
    only = cfg.interface_network(inv({"subnet": "fd00:89::/64"})).spec
    assert only is not None and not only.ipv4
    assert only.subnets == (SubnetConfig(IPv6Network("fd00:89::/64")),)
    # a network without subnets keeps today's IPv4 default
    default = cfg.interface_network(inv({})).spec
    assert default is not None and default.ipv4 and default.subnets == ()


def test_ipv6_routes_and_the_ipam_plugin(v6_bridge: None) -> None:
    section = {"ranges": [[V4], [V6]], "routes": [{"dst": "0.0.0.0/0"},
                                                  {"dst": "::/0", "gw": "fd00:88::1"}]}
    assert cfg.interface_network(inv({"ipam": {"type": "netbay-ipam", **section}})).spec
    assert cfg.routes(section, "") == [(IPv4Network("0.0.0.0/0"), None),
                                       (IPv6Network("::/0"), IPv6Address("fd00:88::1"))]
    # the external driver (netbay-ipam) has no IPv6 networks: refused, naming the field
    error = refused({"ipam": {"type": "netbay-ipam", "ranges": [[V4], [V6]]}},
                    cfg.ipam_network, kind="netbay-ipam")
    assert (error.code, error.msg, error.details) == (
        2, "unsupported field ipam.ranges[1][0].subnet: fd00:88::/64",
        "the external driver has no IPv6 networks")


@pytest.mark.parametrize(
    ("config", "code", "msg"),
    [
        ({"ranges": [[V4, V6]]}, 7, "invalid ranges[0]: IPv4 and IPv6 ranges in one range set"),
        ({"ranges": [[V6], [{"subnet": "fd00:90::/64"}]]}, 2,
         "unsupported field ranges: 2 range sets of IPv6"),
        ({"ranges": [[V4], [V6], [{"subnet": "10.89.0.0/16"}]]}, 2,
         "unsupported field ranges: 3 range sets"),
        ({"ranges": [[V4], []]}, 7, "invalid ranges[1]: an empty range set"),
        ({"ranges": []}, 2, "unsupported field ranges: 0 range sets"),
        ({"ranges": [[{"subnet": "fd00:88::/64", "gateway": "10.88.0.1"}]]}, 7,
         "invalid ranges[0][0].gateway: 10.88.0.1 is not of subnet fd00:88::/64's address "
         "family"),
        ({"ranges": [[{"subnet": "fd00:88::/64", "rangeStart": "fd00:89::1"}]]}, 7,
         "invalid ranges[0][0]: range fd00:89::1-"),
        ({"ranges": [[{"subnet": "fd00:88::/64", "rangeStart": "fd00:88::3",
                       "rangeEnd": "fd00:88::9"}]]}, 2,
         "unsupported field ranges[0][0].rangeStart/rangeEnd: fd00:88::3-fd00:88::9"),
        ({"subnet": "fd00:88::/64", "routes": [{"dst": "fd00::/8"}]}, 2,
         "unsupported field routes: fd00::/8"),
        ({"subnet": "fd00:88::/64", "routes": [{"dst": "::/0", "gw": "10.0.0.1"}]}, 7,
         "invalid routes.gw: 10.0.0.1 is not of ::/0's address family"),
        ({"subnet": "fd00:88::/64", "gateway": "fd00:88::zz"}, 7, "invalid gateway: not an IP"),
    ],
)
def test_dual_stack_configuration_refused(
    v6_bridge: None, config: dict[str, Any], code: int, msg: str
) -> None:
    error = refused(config)
    assert error.code == code and error.msg.startswith(msg), (error.code, error.msg)


def test_ipv6_refused_on_a_driver_without_ipv6(monkeypatch: pytest.MonkeyPatch) -> None:
    with_ipv6("macvlan", False, monkeypatch)
    error = refused({"driver": "macvlan", "master": "eth1",
                     "ipam": {"type": "netbay-ipam", "ranges": [[V4], [V6]]}})
    assert (error.code, error.msg, error.details) == (
        2, "unsupported field ipam.ranges[1][0].subnet: fd00:88::/64",
        "the macvlan driver has no IPv6 networks")
    top = refused({"driver": "macvlan", "master": "eth1", "subnet": "fd00:88::/64"})
    assert top.msg == "unsupported field subnet: fd00:88::/64"
    # an unknown driver is refused by name, whatever its subnets
    assert refused({"driver": "warp", "subnet": "fd00:88::/64"}).msg == (
        "unsupported field driver: 'warp'")


def test_addresses_of_both_families_asked_for() -> None:
    want = asks.requested(inv({"runtimeConfig": {"ips": ["fd00:88::9/64", "10.88.0.9/16"]}}))
    assert (want.ip, want.prefixlen) == (IPv4Address("10.88.0.9"), 16)
    assert (want.ip6, want.prefixlen6) == (IPv6Address("fd00:88::9"), 64)
    by_args = asks.requested(inv({}, args="IP=10.88.0.7,fd00:88::7"))
    assert (by_args.ip, by_args.ip6) == (IPv4Address("10.88.0.7"), IPv6Address("fd00:88::7"))
    only6 = asks.requested(inv({"args": {"cni": {"ips": ["fd00:88::5"]}}}))
    assert (only6.ip, only6.ip6, only6.prefixlen6) == (None, IPv6Address("fd00:88::5"), None)
    two = refused({"runtimeConfig": {"ips": ["fd00:88::9", "fd00:88::10"]}}, asks.requested)
    assert two.code == 7 and two.details == "netbay gives one address of each family per " \
        "attachment"


DUAL = Network(
    id="n" * 64, name="dual", driver="bridge", created="", device="br-dual", mtu=1400,
    subnets=(SubnetConfig(IPv4Network("10.88.0.0/16"), IPv4Address("10.88.0.1")),
             SubnetConfig(IPv6Network("fd00:88::/64"), IPv6Address("fd00:88::1"))),
)
ENDPOINT = Endpoint(
    id="e" * 64, network_id="n" * 64, container_id="c" * 64, ifname="eth0",
    host_ifname="nbveeeeeeeeeeee", mac="02:42:0a:58:00:02",
    address=IPv4Interface("10.88.0.2/16"), gateway=IPv4Address("10.88.0.1"),
    address6=IPv6Interface("fd00:88::2/64"), gateway6=IPv6Address("fd00:88::1"),
)


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_interface_result_lists_both_families(version: str) -> None:
    out = results.interface_result(version, DUAL, ENDPOINT, "/run/netns/c1",
                                   asks.Dns(("10.88.0.1",)))
    old = version.startswith("0.")
    assert out["ips"] == [
        {**({"version": "4"} if old else {}), "address": "10.88.0.2/16",
         "gateway": "10.88.0.1", "interface": 2},
        {**({"version": "6"} if old else {}), "address": "fd00:88::2/64",
         "gateway": "fd00:88::1", "interface": 2},
    ]
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.88.0.1"},
                             {"dst": "::/0", "gw": "fd00:88::1"}]
    assert out["dns"] == {"nameservers": ["10.88.0.1"]}
    assert results.recorded_addresses(out) == {"10.88.0.2/16", "fd00:88::2/64"}


def test_second_network_internal_ipv6_only_and_ipam_results() -> None:
    # not the default route's network: gateways listed, no routes
    second = dataclasses.replace(ENDPOINT, gateway=None, gateway6=None)
    out = results.interface_result("1.0.0", DUAL, second, "/n", asks.Dns())
    assert [ip["gateway"] for ip in out["ips"]] == ["10.88.0.1", "fd00:88::1"]
    assert "routes" not in out
    internal = results.interface_result("1.0.0", dataclasses.replace(DUAL, internal=True),
                                        second, "/n", asks.Dns())
    assert all("gateway" not in ip for ip in internal["ips"])
    only6 = dataclasses.replace(ENDPOINT, address=None, gateway=None)
    out6 = results.interface_result("1.1.0", dataclasses.replace(DUAL, subnets=DUAL.subnets6),
                                    only6, "/n", asks.Dns())
    assert out6["ips"] == [{"address": "fd00:88::2/64", "gateway": "fd00:88::1",
                            "interface": 2}]
    assert out6["routes"] == [{"dst": "::/0", "gw": "fd00:88::1"}]
    external = dataclasses.replace(DUAL, driver="external", device=None)
    lease = dataclasses.replace(ENDPOINT, host_ifname=None, mac=None, gateway=None, gateway6=None)
    ipam = results.ipam_result("0.4.0", external, lease, [(IPv6Network("::/0"), None)],
                               asks.Dns())
    assert ipam == {"cniVersion": "0.4.0", "ips": [
        {"version": "4", "address": "10.88.0.2/16", "gateway": "10.88.0.1"},
        {"version": "6", "address": "fd00:88::2/64", "gateway": "fd00:88::1"}],
        "routes": [{"dst": "::/0"}]}


def test_chained_after_another_plugin_moves_both_indexes() -> None:
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "x"}],
            "ips": [{"address": "192.0.2.2/24", "interface": 0}]}
    mine = results.interface_result("1.0.0", DUAL, ENDPOINT, "/n", asks.Dns())
    merged = results.chained(prev, mine)
    assert [ip["interface"] for ip in merged["ips"]] == [0, 3, 3]


def test_a_runtime_listing_ipv6_first_fits_the_record() -> None:
    spec = cfg.NetworkSpec(name="dual", subnets=tuple(reversed(DUAL.subnets)))
    assert network_differences(DUAL, spec) == []
    v4_only = cfg.NetworkSpec(name="dual", subnets=DUAL.subnets4)
    assert network_differences(DUAL, v4_only) == [
        "subnets 10.88.0.0/16, fd00:88::/64, not 10.88.0.0/16"]


def test_port_mappings_of_both_families() -> None:
    """As the reference portmap reads hostIP: none is every host address of each family,
    0.0.0.0 every IPv4 one, :: every IPv6 one; ::1 cannot be forwarded."""
    entries = [{"hostPort": port, "containerPort": 80, "hostIP": host}
               for port, host in ((8001, ""), (8002, "0.0.0.0"), (8003, "::"),
                                  (8004, "2001:db8::1"))]
    want = asks.requested(inv({"runtimeConfig": {"portMappings": entries}}))
    assert want.ports == (
        Mapping("tcp", None, 8001, 80), Mapping("tcp", IPv4Address("0.0.0.0"), 8002, 80),
        Mapping("tcp", IPv6Address("::"), 8003, 80),
        Mapping("tcp", IPv6Address("2001:db8::1"), 8004, 80))
    loopback = refused({"runtimeConfig": {"portMappings": [
        {"hostPort": 8006, "containerPort": 80, "hostIP": "::1"}]}}, asks.requested)
    assert (loopback.code, loopback.msg) == (7, "invalid portMappings hostIP: ::1")
    bracketed = refused({"runtimeConfig": {"portMappings": [
        {"hostPort": 8007, "containerPort": 80, "hostIP": "[::]"}]}}, asks.requested)
    assert (bracketed.code, bracketed.details) == (7, "[::]")
