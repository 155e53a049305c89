from __future__ import annotations

import argparse
from ipaddress import IPv4Address, IPv4Network

import pytest

from netbay.cli import render
from netbay.cli.network import ipam_config
from netbay.daemon import docker_json
from netbay.daemon.filters import network_matches, parse_filters
from netbay.errors import ConfigError
from netbay.model import Network
from netbay.plan.naming import host_veth, mac_for, next_ifname


def test_network_spec_from_docker_body() -> None:
    spec = docker_json.network_spec(
        {
            "Name": "asgard",
            "Driver": "bridge",
            "Internal": True,
            "IPAM": {
                "Config": [
                    {
                        "Subnet": "10.5.0.0/24",
                        "Gateway": "10.5.0.9",
                        "IPRange": "10.5.0.128/25",
                        "AuxiliaryAddresses": {"r": "10.5.0.2"},
                    }
                ]
            },
            "Options": {"com.docker.network.driver.mtu": "1400"},
            "Labels": {"a": "b"},
        }
    )
    assert spec.internal and spec.labels == {"a": "b"}
    sub = spec.subnets[0]
    assert (sub.subnet, sub.gateway, sub.ip_range) == (
        IPv4Network("10.5.0.0/24"),
        IPv4Address("10.5.0.9"),
        IPv4Network("10.5.0.128/25"),
    )
    assert sub.aux_addresses == {"r": IPv4Address("10.5.0.2")}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.5.0.1/24"}]}}, "subnet"),
        ({"Name": "x", "IPAM": {"Config": [{"Subnet": "nonsense"}]}}, "subnet"),
        (
            {"Name": "x", "IPAM": {"Config": [{"Subnet": "10.5.0.0/24", "Gateway": "10.5.0.300"}]}},
            "gateway",
        ),
        ({"Name": ""}, "name"),
        ({"Name": "x", "IPAM": {"Config": [{"Subnet": "fd12::zz/64"}]}}, "subnet"),  # IPv6 now
    ],
)
def test_bad_network_bodies_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        docker_json.network_spec(body)
    assert err.value.field == field
    assert str(err.value).startswith(f"invalid {field} ")


def test_cli_pairs_gateways_with_their_subnets() -> None:
    args = argparse.Namespace(
        subnet=["10.1.0.0/24", "10.2.0.0/24"],
        gateway=["10.2.0.254"],
        ip_range=["10.1.0.0/25"],
        aux_address=["r=10.2.0.3"],
    )
    assert ipam_config(args) == [
        {"Subnet": "10.1.0.0/24", "IPRange": "10.1.0.0/25"},
        {"Subnet": "10.2.0.0/24", "Gateway": "10.2.0.254", "AuxiliaryAddresses": {"r": "10.2.0.3"}},
    ]
    args.gateway = ["10.3.0.1"]
    with pytest.raises(ConfigError, match="invalid gateway '10.3.0.1': not inside any --subnet"):
        ipam_config(args)


def test_filters_accept_both_docker_forms_and_refuse_unknown_keys() -> None:
    assert parse_filters('{"name": {"as": true}}') == {"name": ["as"]}
    assert parse_filters('{"driver": ["bridge"]}') == {"driver": ["bridge"]}
    with pytest.raises(ConfigError, match="filter 'colour'"):
        parse_filters('{"colour": ["red"]}')
    net = Network(
        id="ab" * 32,
        name="asgard",
        driver="bridge",
        created="",
        subnets=(),
        labels={"team": "odin"},
    )
    assert network_matches(net, {"name": ["sga"], "label": ["team=odin"]}, lambda n: False)
    assert not network_matches(net, {"label": ["team=thor"]}, lambda n: False)
    assert network_matches(net, {"type": ["custom"], "dangling": ["true"]}, lambda n: False)


def test_table_and_template_rendering() -> None:
    text = render.table(("A", "LONGER"), [("x", "1"), ("yyyy", "2")])
    assert text.splitlines() == ["A      LONGER", "x      1", "yyyy   2"]
    item = {"Name": "n", "IPAM": {"Config": [1]}, "Labels": {"a": "b"}}
    assert render.template("{{.Name}}\\t{{json .Labels}}", item) == 'n\t{"a": "b"}'


def test_names_fit_ifnamsiz_and_macs_follow_the_address() -> None:
    assert len(host_veth("f" * 64)) <= 15
    assert mac_for(IPv4Address("172.18.0.2")) == "02:42:ac:12:00:02"
    assert next_ifname(["eth0", "eth2"]) == "eth1"
