"""podman networks with IPv6 through the netavark interface, pure parts: the options of a
dual-stack and an IPv6-only network read into a spec and the addresses podman chose, and
the status block listing both families."""

from __future__ import annotations

import dataclasses
import json
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

from netbay.drivers import get_driver
from netbay.model import Endpoint, Network, SubnetConfig
from netbay.plan.ports import Mapping
from netbay.podman.daemon_side import status_block
from netbay.podman.options import OptionsError, parse

# the shape podman 4.3.1 sends for `podman network create --ipv6 --subnet 10.89.60.0/24
# --subnet fd00:89:60::/64 nbdual` and `podman run --network nbdual`
DUAL = json.loads(
    '{"container_id":"5a1f0c2e9d7b4f6a8c3e1d2b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a19",'
    '"container_name":"dual_web","port_mappings":[],"networks":{"nbdual":{"static_ips":'
    '["10.89.60.2","fd00:89:60::2"],"aliases":["5a1f0c2e9d7b"],"interface_name":"eth0"}},'
    '"network_info":{"nbdual":{"name":"nbdual","id":"6c2d8e4f0a1b3c5d7e9f1a2b3c4d5e6f7a8b9c0d1e'
    '2f3a4b5c6d7e8f9a0b1c","driver":"bridge","network_interface":"podman3","created":'
    '"2026-12-02T04:00:00.000000000Z","subnets":[{"subnet":"10.89.60.0/24","gateway":'
    '"10.89.60.1"},{"subnet":"fd00:89:60::/64","gateway":"fd00:89:60::1"}],"ipv6_enabled":'
    'true,"internal":false,"dns_enabled":true,"ipam_options":{"driver":"host-local"}}}}'
)


def changed(**info: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(DUAL))
    out["network_info"]["nbdual"].update(info)
    return out


def with_static_ips(*ips: str) -> dict[str, Any]:
    out = json.loads(json.dumps(DUAL))
    out["networks"]["nbdual"]["static_ips"] = list(ips)
    return out


@pytest.fixture
def v6_bridge(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bridge driver with IPv6 networks (whether or not the kernel side has it yet)."""
    bridge = get_driver("bridge")
    monkeypatch.setattr(bridge, "caps", dataclasses.replace(bridge.caps, ipv6=True))


def test_dual_stack_network_and_both_addresses(v6_bridge: None) -> None:
    (attachment,) = parse(DUAL).attachments
    assert (attachment.ip, attachment.ip6) == (IPv4Address("10.89.60.2"),
                                               IPv6Address("fd00:89:60::2"))
    spec = attachment.spec
    assert spec.ipv4 and spec.subnets == (
        SubnetConfig(IPv4Network("10.89.60.0/24"), IPv4Address("10.89.60.1")),
        SubnetConfig(IPv6Network("fd00:89:60::/64"), IPv6Address("fd00:89:60::1")))
    # IPv6 listed first: IPv4 first all the same
    flipped = changed(subnets=list(reversed(DUAL["network_info"]["nbdual"]["subnets"])))
    assert parse(flipped).attachments[0].spec.subnets == spec.subnets


def test_ipv6_only_network(v6_bridge: None) -> None:
    only = with_static_ips("fd00:89:60::7")
    only["network_info"]["nbdual"]["subnets"] = [{"subnet": "fd00:89:60::/64",
                                                  "gateway": "fd00:89:60::1"}]
    (attachment,) = parse(only).attachments
    assert (attachment.ip, attachment.ip6) == (None, IPv6Address("fd00:89:60::7"))
    assert not attachment.spec.ipv4  # netbay adds no IPv4 subnet to it
    assert parse(changed(subnets=[])).attachments[0].spec.ipv4  # no subnets: today's default


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (with_static_ips("fd00:89:60::2", "fd00:89:60::3"),
         "network nbdual: netbay gives one IPv6 address per interface, podman passed "
         "fd00:89:60::2 and fd00:89:60::3"),
        (with_static_ips("10.89.60.2", "10.89.60.3"),
         "network nbdual: netbay gives one IPv4 address per interface"),
        (changed(subnets=[{"subnet": "fd00:89:60::/64", "gateway": "10.89.60.1"}]),
         "network nbdual: gateway 10.89.60.1 is not of subnet fd00:89:60::/64's address "
         "family"),
        (changed(ipv6_enabled="yes"), "JSON Decoding error: invalid type for `ipv6_enabled`"),
        (changed(subnets=[{"subnet": "fd00:89:60::/129"}]), "JSON Decoding error"),
    ],
)
def test_refused(v6_bridge: None, document: Any, message: str) -> None:
    with pytest.raises(OptionsError) as caught:
        parse(document)
    assert str(caught.value).startswith(message), caught.value


def test_ipv6_subnet_on_a_driver_without_ipv6(monkeypatch: pytest.MonkeyPatch) -> None:
    bridge = get_driver("bridge")
    monkeypatch.setattr(bridge, "caps", dataclasses.replace(bridge.caps, ipv6=False))
    with pytest.raises(OptionsError) as caught:
        parse(DUAL)
    assert str(caught.value) == (
        "network nbdual: IPv6 subnet fd00:89:60::/64 is not supported by netbay's bridge "
        "networks")


NETWORK = Network(
    id="n" * 64, name="nbdual", driver="bridge", created="", device="podman3",
    subnets=(SubnetConfig(IPv4Network("10.89.60.0/24"), IPv4Address("10.89.60.1")),
             SubnetConfig(IPv6Network("fd00:89:60::/64"), IPv6Address("fd00:89:60::1"))),
)
ENDPOINT = Endpoint(
    id="e" * 64, network_id="n" * 64, container_id="c" * 64, ifname="eth0",
    host_ifname="nbveeeeeeeeeeee", mac="02:42:0a:59:3c:02",
    address=IPv4Interface("10.89.60.2/24"), gateway=IPv4Address("10.89.60.1"),
    address6=IPv6Interface("fd00:89:60::2/64"), gateway6=IPv6Address("fd00:89:60::1"),
)


def test_status_block_lists_both_families(v6_bridge: None) -> None:
    (attachment,) = parse(DUAL).attachments
    block = status_block(attachment, NETWORK, ENDPOINT, ("192.0.2.53",))
    assert block == {
        "dns_search_domains": [],
        "dns_server_ips": ["10.89.60.1"],  # netbay's DNS server, on the IPv4 gateway
        "interfaces": {"eth0": {"mac_address": "02:42:0a:59:3c:02", "subnets": [
            {"ipnet": "10.89.60.2/24", "gateway": "10.89.60.1"},
            {"ipnet": "fd00:89:60::2/64", "gateway": "fd00:89:60::1"}]}},
    }
    internal = status_block(attachment, dataclasses.replace(NETWORK, internal=True),
                            dataclasses.replace(ENDPOINT, gateway=None, gateway6=None), ())
    assert internal["interfaces"]["eth0"]["subnets"] == [
        {"ipnet": "10.89.60.2/24"}, {"ipnet": "fd00:89:60::2/64"}]
    # IPv6 only: netbay's DNS server on the IPv6 gateway; the runtime's servers are not used
    only6 = status_block(attachment, dataclasses.replace(NETWORK, subnets=NETWORK.subnets6),
                         dataclasses.replace(ENDPOINT, address=None, gateway=None), ())
    assert only6["dns_server_ips"] == ["fd00:89:60::1"]
    assert only6["interfaces"]["eth0"]["subnets"] == [
        {"ipnet": "fd00:89:60::2/64", "gateway": "fd00:89:60::1"}]


def test_port_mappings_of_both_families(v6_bridge: None) -> None:
    """As netavark reads host_ip: none is every host address of each family, 0.0.0.0 every
    IPv4 one, :: every IPv6 one; ::1 cannot be forwarded."""
    mappings = [{"host_ip": host, "container_port": 80, "host_port": port, "range": 1,
                 "protocol": "tcp"}
                for port, host in ((8001, ""), (8002, "0.0.0.0"), (8003, "::"),
                                   (8004, "fd00:89:60::1"))]
    options = parse({**DUAL, "port_mappings": [
        *mappings, {"host_ip": "::", "container_port": 90, "host_port": 9000, "range": 2,
                    "protocol": "tcp,udp"}]})
    assert options.ports[:4] == (
        Mapping("tcp", None, 8001, 80), Mapping("tcp", IPv4Address("0.0.0.0"), 8002, 80),
        Mapping("tcp", IPv6Address("::"), 8003, 80),
        Mapping("tcp", IPv6Address("fd00:89:60::1"), 8004, 80))
    assert options.ports[4:] == tuple(
        Mapping(proto, IPv6Address("::"), 9000 + i, 90 + i)
        for proto in ("tcp", "udp") for i in (0, 1))
    with pytest.raises(OptionsError) as caught:
        parse({**DUAL, "port_mappings": [{**mappings[0], "host_ip": "::1"}]})
    assert str(caught.value) == ("invalid host ip '::1': ::1 cannot be forwarded to a "
                                 "container (IPv6 has no route_localnet)")
