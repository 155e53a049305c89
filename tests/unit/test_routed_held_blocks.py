"""A node's several blocks of a routed network (issue 15's leftovers): `cluster nodes` shows
every one (the table and the JSON, older daemons' answers still read); a block held in etcd
that the share's record lacks (a daemon killed between the claim and the record) is adopted
into the record with its kernel objects and firewall elements; the cluster view tells its
consumer when a listing has been delivered (the agent syncs no BGP before)."""

from __future__ import annotations

import argparse
import json
import threading
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from test_cluster_names import FakeClient
from test_cluster_state import kv, node

from netbay import NetworkSpec
from netbay.cli.cluster import nodes
from netbay.client import Client
from netbay.cluster.etcd import EtcdClient
from netbay.cluster.layout import (
    GlobalNetwork,
    Layout,
    encode_alive,
    encode_network,
    encode_node,
    encode_subnet_holder,
)
from netbay.cluster.state import Peer
from netbay.cluster.view import ClusterView
from netbay.daemon.cluster_api import node_json
from netbay.drivers.routed import local_options
from netbay.engine.blocks import adopt_held
from netbay.model import SubnetConfig
from netbay.plan.routed import Encapsulation
from netbay.testing import fake_host

LAYOUT = Layout()
A, B = "a" * 32, "b" * 32
POOL = IPv4Network("10.70.0.0/16")
CALICO = GlobalNetwork("calico", "c" * 64, POOL, 26, 7, "t0", driver="routed")
PODNET = GlobalNetwork("podnet", "p" * 64, IPv4Network("10.5.0.0/16"), 24, 1, "t1")
FIRST, SECOND = IPv4Network("10.70.0.0/26"), IPv4Network("10.70.0.192/26")


def listing() -> list[Any]:
    """Node A with two blocks of calico (the second claimed when the first was full) and one
    of podnet; node B with one block of calico."""
    held = ((A, CALICO, SECOND), (A, CALICO, FIRST), (A, PODNET, IPv4Network("10.5.1.0/24")),
            (B, CALICO, IPv4Network("10.70.0.64/26")))
    return [
        *(kv(LAYOUT.network(n.name), encode_network(n)) for n in (CALICO, PODNET)),
        *(kv(LAYOUT.node(n), encode_node(node(n, name, address)))
          for n, name, address in ((A, "alpha", "192.0.2.1"), (B, "beta", "192.0.2.2"))),
        *(kv(LAYOUT.alive(n), encode_alive(5)) for n in (A, B)),
        *(kv(LAYOUT.subnet(network.name, block), encode_subnet_holder(holder))
          for holder, network, block in held),
    ]


def answered(view: ClusterView) -> list[dict[str, Any]]:
    """`GET /netbay/cluster/nodes` as the daemon answers it, through JSON."""
    return list(json.loads(json.dumps([node_json(n) for n in view.nodes()])))


def cli_nodes(found: list[dict[str, Any]], fmt: str | None,
              capsys: pytest.CaptureFixture[str]) -> list[str]:
    client = SimpleNamespace(get=lambda path: found)
    assert nodes(cast(Client, client), argparse.Namespace(format=fmt)) == 0
    return capsys.readouterr().out.splitlines()


@pytest.fixture
def view() -> Any:
    started = ClusterView(cast(EtcdClient, FakeClient(listing())), LAYOUT, None, A)
    started.start()
    assert started.wait_synced(5)
    yield started
    started.stop()


# -- cluster nodes


def test_cluster_nodes_shows_every_block_a_node_holds(
    view: ClusterView, capsys: pytest.CaptureFixture[str],
) -> None:
    found = answered(view)
    alpha = next(n for n in found if n["Name"] == "alpha")
    assert alpha["Blocks"] == {"calico": ["10.70.0.0/26", "10.70.0.192/26"],
                               "podnet": ["10.5.1.0/24"]}
    assert alpha["Subnets"] == {"calico": "10.70.0.0/26", "podnet": "10.5.1.0/24"}  # as before
    table = cli_nodes(found, None, capsys)
    assert table[0].split()[:4] == ["NAME", "ADDRESS", "STATE", "SUBNETS"]
    assert "calico 10.70.0.0/26,10.70.0.192/26, podnet 10.5.1.0/24" in table[1], table
    assert "calico 10.70.0.64/26" in table[2], table
    as_json = [json.loads(line) for line in cli_nodes(found, "json", capsys)]
    assert as_json[0]["Blocks"]["calico"] == ["10.70.0.0/26", "10.70.0.192/26"]
    assert cli_nodes(found, "{{json .Blocks.calico}}", capsys) == [
        '["10.70.0.0/26", "10.70.0.192/26"]', '["10.70.0.64/26"]']


def test_cluster_nodes_reads_a_daemon_of_before_blocks(
    view: ClusterView, capsys: pytest.CaptureFixture[str],
) -> None:
    older = [{k: v for k, v in n.items() if k != "Blocks"} for n in answered(view)]
    table = cli_nodes(older, None, capsys)
    assert "calico 10.70.0.0/26, podnet 10.5.1.0/24" in table[1], table


# -- a block held in etcd, not recorded


def test_a_block_held_but_not_recorded_is_adopted_with_its_kernel_objects(
    tmp_path: Path,
) -> None:
    fake = fake_host(tmp_path)
    share = fake.host.create_network(NetworkSpec(
        name="calico", driver="routed", subnets=(SubnetConfig(FIRST),),
        options=local_options(POOL, 7, Encapsulation.CROSS_SUBNET, 64512, 1450)))
    other = fake.host.create_network(NetworkSpec(name="local", subnets=(
        SubnetConfig(IPv4Network("10.80.0.0/24")),)))
    assert fake.kernel.blackholes == {FIRST}
    # the view's record: calico's first block and the one a killed daemon claimed
    held = {"calico": (FIRST, SECOND), "local": (IPv4Network("10.80.1.0/24"),)}
    [grown] = adopt_held(fake.host, [share, other], held)
    assert [s.subnet for s in grown.subnets] == [FIRST, SECOND]
    assert [s.subnet for s in fake.host.network("calico").subnets] == [FIRST, SECOND]
    assert fake.kernel.blackholes == {FIRST, SECOND}
    assert fake.kernel.local_addresses == {IPv4Address("10.70.0.1"), IPv4Address("10.70.0.193")}
    assert fake.nft.elements("inet", "masq_nets") == {str(FIRST), str(SECOND),
                                                      "10.80.0.0/24"}
    assert [s.subnet for s in fake.host.network("local").subnets] == [
        IPv4Network("10.80.0.0/24")]  # a bridge's network claims no blocks
    assert adopt_held(fake.host, [fake.host.network("calico")], held) == []  # once only
    fake.host.remove_network("calico")
    assert adopt_held(fake.host, [share], held) == []  # a share gone is not made again
    assert fake.kernel.blackholes == set()


# -- the view's listing, delivered


def test_the_view_says_when_a_listing_has_been_delivered() -> None:
    events: list[str] = []
    synced = threading.Event()

    def on_peers(network: str, peers: tuple[Peer, ...]) -> None:
        events.append(f"peers {network}: " + ", ".join(str(p.subnet) for p in peers))

    def on_synced() -> None:
        events.append(f"synced {watched.wait_synced(0)}")
        synced.set()

    watched = ClusterView(cast(EtcdClient, FakeClient(listing())), LAYOUT, on_peers, B,
                          on_synced=on_synced)
    watched.start()
    try:
        assert synced.wait(5)
        assert events == ["peers calico: 10.70.0.0/26, 10.70.0.192/26",
                          "peers podnet: 10.5.1.0/24", "synced True"]
        assert watched.blocks_of(A) == {"calico": (FIRST, SECOND),
                                        "podnet": (IPv4Network("10.5.1.0/24"),)}
    finally:
        watched.stop()
