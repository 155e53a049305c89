"""Network create/remove on the engine's parts, with the fake kernel, nft and MemoryStore."""

from __future__ import annotations

import errno
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from netbay import ContainerSpec, Host, NetworkSpec, SubnetConfig
from netbay.errors import ConfigError, ConflictError, InUseError, KernelError
from netbay.model import AttachRequest
from netbay.testing import FakeFlows, FakeHost, FakeKernel, FakeNft, fake_host, fake_paths


@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    return fake_host(tmp_path)


def test_create_records_the_network_makes_its_bridge_and_its_firewall_elements(
    fake: FakeHost,
) -> None:
    network = fake.host.create_network(NetworkSpec(name="asgard"))
    assert (network.state, network.owner, network.device_created) == ("ready", "", True)
    assert fake.host.network("asgard") == network
    assert network.subnets[0].subnet == IPv4Network("172.18.0.0/16")  # 172.17: default bridge
    assert network.device is not None
    bridge = fake.kernel.links[network.device]
    assert (bridge.kind, bridge.addresses) == ("bridge", [IPv4Interface("172.18.0.1/16")])
    assert bridge.route_localnet and fake.kernel.forwarding
    device = f'"{network.device}"'
    assert device in fake.nft.elements("inet", "bridges")
    assert f"{device} . {device}" in fake.nft.elements("inet", "same_bridge")
    assert "172.18.0.0/16" in fake.nft.elements("inet", "masq_nets")


def test_new_networks_skip_subnets_the_host_uses(tmp_path: Path) -> None:
    fake = fake_host(tmp_path, kernel=FakeKernel(taken=[IPv4Network("172.18.0.0/16")]))
    created = fake.host.create_network(NetworkSpec(name="asgard"))
    assert created.subnets[0].subnet == IPv4Network("172.19.0.0/16")


def test_remove_takes_the_bridge_firewall_elements_and_record_away(fake: FakeHost) -> None:
    before = fake.snapshot()
    network = fake.host.create_network(NetworkSpec(name="asgard"))
    fake.host.remove_network("asgard")
    assert network.device not in fake.kernel.links
    assert fake.host.find_network(network.id) is None
    assert fake.snapshot() == before


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        (NetworkSpec(name="no/slash"), ConfigError, "invalid name 'no/slash'"),
        (NetworkSpec(name="n", driver="warp"), ConfigError, "unknown driver"),
        (NetworkSpec(name="n", options={"x": "1"}), ConfigError, "unknown option for driver"),
        (NetworkSpec(name="bridge"), ConflictError, "network with name bridge already exists"),
        (
            NetworkSpec(name="n", subnets=(SubnetConfig(IPv4Network("10.1.0.0/24")),
                                           SubnetConfig(IPv4Network("10.1.0.0/16")))),
            ConflictError,
            "overlaps 10.1.0.0/24 of the same network",
        ),
    ],
)
def test_bad_input_changes_nothing(
    fake: FakeHost, spec: NetworkSpec, error: type[Exception], message: str
) -> None:
    before, calls = fake.snapshot(), len(fake.kernel.calls)
    with pytest.raises(error, match=message):
        fake.host.create_network(spec)
    assert fake.snapshot() == before
    assert fake.kernel.calls[calls:] == []


def test_a_kernel_failure_while_making_the_bridge_leaves_nothing(fake: FakeHost) -> None:
    before = fake.snapshot()
    fake.kernel.fail("ensure_bridge", errno.EPERM)
    with pytest.raises(KernelError, match="injected failure at ensure_bridge"):
        fake.host.create_network(NetworkSpec(name="asgard"))
    assert fake.snapshot() == before


def test_a_network_in_use_or_built_in_is_not_removed(fake: FakeHost) -> None:
    network = fake.host.create_network(NetworkSpec(name="asgard"))
    fake.host.create_container(
        ContainerSpec(command=("true",), name="env1", networks=(AttachRequest("asgard"),))
    )
    before = fake.snapshot()
    with pytest.raises(InUseError, match=f"network asgard id {network.id} has active endpoints"):
        fake.host.remove_network("asgard")
    with pytest.raises(InUseError, match="bridge is a pre-defined network"):
        fake.host.remove_network("bridge")
    assert fake.snapshot() == before
    assert fake.host.prune_networks() == []


def test_start_up_remakes_missing_bridges_and_rebuilds_the_firewall(fake: FakeHost) -> None:
    network = fake.host.create_network(NetworkSpec(name="asgard"))
    assert network.device is not None
    fake.kernel.remove_link(network.device)
    nft = FakeNft()  # a reboot: no tables
    again = Host(fake_paths(fake.host.paths.root.parent), store=fake.store, kernel=fake.kernel,
                 nft=nft, flows=FakeFlows())
    assert set(fake.kernel.links) == {network.device}  # not the default bridge: it is unused
    assert nft.elements("inet", "bridges") == {f'"{network.device}"'}
    assert again.audit() == []
