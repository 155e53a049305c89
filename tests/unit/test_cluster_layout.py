"""The cluster record's key layout and value encoding (netbay.cluster.layout)."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from types import MappingProxyType

import pytest

from netbay.cluster.layout import (
    ALIVE,
    HOLDERS,
    NETWORKS,
    NODES,
    SUBNETS,
    GlobalNetwork,
    Layout,
    NodeRecord,
    ParsedKey,
    block_name,
    decode_held_subnets,
    decode_network,
    decode_node,
    decode_subnet_holder,
    encode_held_subnets,
    encode_network,
    encode_node,
    encode_subnet_holder,
    parse_block_name,
)
from netbay.errors import ConfigError

NODE = "0123456789abcdef0123456789abcdef"
BLOCK = IPv4Network("10.5.52.0/24")


def test_every_key_sits_under_the_root_by_kind() -> None:
    layout = Layout()
    assert layout.node(NODE) == f"/netbay/v1/nodes/{NODE}"
    assert layout.alive(NODE) == f"/netbay/v1/alive/{NODE}"
    assert layout.network("podnet") == "/netbay/v1/networks/podnet"
    assert layout.subnet("podnet", BLOCK) == "/netbay/v1/subnets/podnet/10.5.52.0-24"
    assert layout.holder("podnet", NODE) == f"/netbay/v1/holders/podnet/{NODE}"
    assert layout.prefix(SUBNETS, "podnet") == "/netbay/v1/subnets/podnet/"
    assert layout.prefix(NODES) == "/netbay/v1/nodes/"


def test_keys_parse_back_to_their_kind_and_unknown_ones_to_none() -> None:
    layout = Layout("/other/v1/")
    assert layout.parse(layout.node(NODE)) == ParsedKey(NODES, NODE)
    assert layout.parse(layout.alive(NODE)) == ParsedKey(ALIVE, NODE)
    assert layout.parse(layout.network("podnet")) == ParsedKey(NETWORKS, "podnet")
    assert layout.parse(layout.subnet("podnet", BLOCK)) == ParsedKey(SUBNETS, "podnet",
                                                                      "10.5.52.0-24")
    assert layout.parse(layout.holder("podnet", NODE)) == ParsedKey(HOLDERS, "podnet", NODE)
    for key in ("/netbay/v1/nodes/x", "/other/v1/nodes/", "/other/v1/things/x",
                "/other/v1/subnets/podnet", "/other/v1/nodes/a/b", "/other/v1/config"):
        assert layout.parse(key) is None, key


def test_a_root_must_be_a_directory_of_keys() -> None:
    with pytest.raises(ConfigError, match="^invalid etcd prefix 'netbay': must start and end"):
        Layout("netbay")
    with pytest.raises(ConfigError):
        Layout("/netbay")


def test_a_block_is_spelled_as_flannel_does_in_its_key() -> None:
    assert block_name(BLOCK) == "10.5.52.0-24"
    assert parse_block_name("10.5.52.0-24") == BLOCK
    with pytest.raises(ValueError):
        parse_block_name("10.5.52.1-24")  # not a block boundary


def test_records_survive_their_encoding() -> None:
    node = NodeRecord(NODE, "alpha", IPv4Address("192.0.2.1"), "0.1.0", 7, 15, 3600,
                      MappingProxyType({"podnet": "02:00:00:00:00:01"}))
    assert decode_node(encode_node(node)) == node
    network = GlobalNetwork("podnet", "f" * 64, IPv4Network("10.5.0.0/16"), 24, 42,
                            "2026-01-01T00:00:00.000000000Z", True,
                            MappingProxyType({"backend": "vxlan"}), MappingProxyType({"a": "b"}))
    assert decode_network(encode_network(network)) == network
    assert decode_subnet_holder(encode_subnet_holder(NODE)) == NODE
    second = IPv4Network("10.5.9.0/24")
    assert decode_held_subnets(encode_held_subnets([BLOCK, second])) == (BLOCK, second)


def test_a_holder_record_of_one_block_reads_as_before() -> None:
    # what a netbay before several blocks per node wrote, and still reads ("subnet")
    assert decode_held_subnets(b'{"subnet":"10.5.52.0/24"}') == (BLOCK,)
    assert json.loads(encode_held_subnets([BLOCK]))["subnet"] == "10.5.52.0/24"


def test_an_encoding_is_one_stable_line_of_json() -> None:
    node = NodeRecord(NODE, "alpha", IPv4Address("192.0.2.1"), "0.1.0", 7, 15, 3600)
    assert encode_node(node) == (
        b'{"address":"192.0.2.1","grace":3600,"grace_lease":7,"id":"' + NODE.encode()
        + b'","name":"alpha","ttl":15,"version":"0.1.0","vteps":{}}')
