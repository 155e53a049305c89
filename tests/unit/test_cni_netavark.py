"""netavark's contract, pure parts: the options podman sends (captured from podman 4.3.1),
the command line, the status block."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netbay.model import Endpoint, Network, SubnetConfig
from netbay.plan.ports import Mapping
from netbay.podman import netavark
from netbay.podman.daemon_side import status_block
from netbay.podman.options import OptionsError, parse

# what podman 4.3.1 sent to netavark for `podman run --network nbtry -p 127.0.0.1:8080:80`
PODMAN = json.loads(
    '{"container_id":"4f19c528ccd47bcc1be383cea70a09ccec8e321d31c9eebf3d05236cabc9ab83",'
    '"container_name":"silly_swanson","port_mappings":[{"host_ip":"127.0.0.1",'
    '"container_port":80,"host_port":8080,"range":1,"protocol":"tcp"}],"networks":{"nbtry":'
    '{"static_ips":["10.89.50.2"],"aliases":["4f19c528ccd4"],"interface_name":"eth0"}},'
    '"network_info":{"nbtry":{"name":"nbtry","id":"9759196b17cb9dbd15e1fedcb6f5cf16d52b8d50a3'
    'dd0d574b34cea14d030823","driver":"bridge","network_interface":"podman1","created":'
    '"2026-11-27T22:14:10.827568241Z","subnets":[{"subnet":"10.89.50.0/24","gateway":'
    '"10.89.50.1"}],"ipv6_enabled":false,"internal":false,"dns_enabled":true,"ipam_options":'
    '{"driver":"host-local"}}}}'
)


def test_podman_options() -> None:
    options = parse(PODMAN)
    assert options.container_name == "silly_swanson"
    assert options.ports == (Mapping("tcp", IPv4Address("127.0.0.1"), 8080, 80),)
    (attachment,) = options.attachments
    assert (attachment.name, attachment.ifname, attachment.ip) == (
        "nbtry", "eth0", IPv4Address("10.89.50.2"))
    assert attachment.aliases == ("4f19c528ccd4",) and attachment.dns_enabled
    spec = attachment.spec
    assert spec.driver == "bridge" and spec.options == {
        "com.docker.network.bridge.name": "podman1"}
    assert spec.subnets == (SubnetConfig(IPv4Network("10.89.50.0/24"), IPv4Address("10.89.50.1")),)
    assert spec.labels["io.podman.network.id"].startswith("9759196b")


def test_ports_ranges_and_protocol_lists() -> None:
    options = parse({**PODMAN, "port_mappings": [
        {"host_ip": "", "container_port": 80, "host_port": 8000, "range": 3,
         "protocol": "tcp,udp"},
        {"host_ip": "::", "container_port": 1, "host_port": 1, "range": 1, "protocol": "tcp"},
    ]})
    assert len(options.ports) == 7 and options.ports[6].host_ip == IPv6Address("::")
    assert options.ports[0] == Mapping("tcp", None, 8000, 80)
    assert options.ports[5] == Mapping("udp", None, 8002, 82)


def broken(**change: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(PODMAN))
    for path, value in change.items():
        target = out
        *parents, last = path.split("__")
        for key in parents:
            target = target[key]
        if value is None:
            target.pop(last)
        else:
            target[last] = value
    return out


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (broken(container_id=None), "missing field `container_id`"),
        (broken(container_id="../x"), "invalid container id"),
        (broken(networks={}), "network options for network nbtry not found"),
        (broken(networks__nbtry__interface_name=""), "no container interface name given"),
        (broken(network_info__nbtry__driver="ipvlan"), "unsupported driver ipvlan"),
        (broken(network_info__nbtry__subnets=[{"subnet": "fd00::/64", "gateway": "10.0.0.1"}]),
         "is not of subnet fd00::/64's address family"),
        (broken(network_info__nbtry__ipam_options={"driver": "dhcp"}), "ipam driver 'dhcp'"),
        (broken(networks__nbtry__static_ips=["10.89.50.2", "10.89.50.3"]), "one IPv4 address"),
        (broken(port_mappings=[{"host_ip": "", "container_port": 80, "host_port": 65535,
                                "range": 2, "protocol": "tcp"}]), "invalid port mapping"),
        (broken(port_mappings=[{"host_ip": "", "container_port": 80, "host_port": 80,
                                "range": 1, "protocol": "icmp"}]), "unsupported protocol"),
        ([], "expected the network options object"),
    ],
)
def test_refused(document: Any, message: str) -> None:
    with pytest.raises(OptionsError) as caught:
        parse(document)
    assert message in str(caught.value)


@settings(max_examples=300)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-2, 70000) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(
        ["container_id", "container_name", "networks", "network_info", "port_mappings",
         "static_ips", "interface_name", "driver", "subnets", "subnet", "gateway", "nbtry",
         "host_port", "container_port", "range", "protocol", "host_ip"]), c, max_size=5),
    max_leaves=15))
def test_any_document_parses_or_is_refused_cleanly(document: Any) -> None:
    try:
        options = parse(document)
    except OptionsError as exc:
        assert str(exc)
    else:
        assert options.container_id


def test_command_line() -> None:
    options, rest = netavark.parse_argv(
        ["--config", "/run/x", "--rootless=false", "--aardvark-binary=/a", "setup", "/ns"])
    assert options == {"config": "/run/x", "rootless": "false", "aardvark": "/a"}
    assert rest == ["setup", "/ns"]
    assert netavark.parse_argv(["-f", "in.json", "teardown", "/ns"])[0]["file"] == "in.json"
    with pytest.raises(netavark.Failure):
        netavark.parse_argv(["--bogus", "setup"])
    code, out = netavark.run(["version"], None)
    assert code == 0 and json.loads(out)["version"] == netavark.NETAVARK_VERSION


def test_status_block() -> None:
    attachment = parse(PODMAN).attachments[0]
    network = Network(id="n" * 64, name="nbtry", driver="bridge", created="", device="podman1",
                      subnets=attachment.spec.subnets)
    endpoint = Endpoint(id="e" * 64, network_id="n" * 64, container_id="c" * 64, ifname="eth0",
                        host_ifname="nbv", mac="02:42:0a:59:32:02",
                        address=IPv4Interface("10.89.50.2/24"), gateway=IPv4Address("10.89.50.1"))
    assert status_block(attachment, network, endpoint, ()) == {
        "dns_search_domains": [],
        "dns_server_ips": ["10.89.50.1"],
        "interfaces": {"eth0": {"mac_address": "02:42:0a:59:32:02", "subnets": [
            {"ipnet": "10.89.50.2/24", "gateway": "10.89.50.1"}]}},
    }
