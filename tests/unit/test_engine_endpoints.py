"""Attach and detach (the lease, the veth, the bridge port, the firewall elements), on the
fake kernel, nft and MemoryStore."""

from __future__ import annotations

import errno
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from netbay import AttachRequest, ContainerSpec, NetworkSpec
from netbay.errors import ConflictError, KernelError
from netbay.model import Container, Network
from netbay.plan.naming import host_veth, mac_for
from netbay.testing import FakeHost, FakeKernel, fake_host


def sleeper(name: str, *networks: AttachRequest) -> ContainerSpec:
    return ContainerSpec(command=("sleep", "inf"), name=name, networks=networks)


@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    fake = fake_host(tmp_path)
    fake.host.create_network(NetworkSpec(name="asgard"))
    return fake


def asgard(fake: FakeHost) -> tuple[Network, str]:
    network = fake.host.network("asgard")
    assert network.device is not None
    return network, network.device


def test_attach_leases_the_lowest_address_and_plugs_a_veth_into_the_bridge(
    fake: FakeHost,
) -> None:
    network, bridge = asgard(fake)
    container = fake.host.create_container(sleeper("env1", AttachRequest("asgard")))
    ((_, endpoint),) = fake.host.container_endpoints(container)
    address = IPv4Address("172.18.0.2")
    assert (endpoint.state, endpoint.ifname) == ("ready", "eth0")
    assert endpoint.address == IPv4Interface("172.18.0.2/16")
    assert endpoint.gateway == IPv4Address("172.18.0.1")
    assert (endpoint.host_ifname, endpoint.mac) == (host_veth(endpoint.id), mac_for(address))
    assert fake.store.used_addresses(network.id) == {int(address)}
    assert fake.kernel.bridge_ports(bridge) == {endpoint.host_ifname}
    assert container.netns is not None
    inside = fake.kernel.namespaces[container.netns]
    assert inside.links["eth0"].addresses == [endpoint.address]
    assert (inside.links["eth0"].mac, inside.gateway) == (endpoint.mac, endpoint.gateway)
    assert inside.links["lo"].up
    assert fake.nft.elements("bridge", "endpoints") == {
        f'"{endpoint.host_ifname}" . {endpoint.mac} . {address}'
    }
    assert fake.nft.elements("bridge", "ports") == {f'"{endpoint.host_ifname}"'}


def test_leases_follow_in_order_and_a_taken_static_address_is_refused(fake: FakeHost) -> None:
    fake.host.create_container(sleeper("env1", AttachRequest("asgard")))
    second = fake.host.create_container(
        sleeper("env2", AttachRequest("asgard", ip=IPv4Address("172.18.0.9")))
    )
    third = fake.host.create_container(sleeper("env3", AttachRequest("asgard")))
    assert [str(e.address) for _, e in fake.host.container_endpoints(second)] == ["172.18.0.9/16"]
    assert [str(e.address) for _, e in fake.host.container_endpoints(third)] == ["172.18.0.3/16"]
    before = fake.snapshot()
    with pytest.raises(ConflictError, match="invalid ip '172.18.0.9': already in use"):
        fake.host.create_container(
            sleeper("env4", AttachRequest("asgard", ip=IPv4Address("172.18.0.9")))
        )
    assert fake.snapshot() == before


def on_vanaheim(fake: FakeHost) -> Container:
    """A container on another network, to connect to asgard."""
    fake.host.create_network(NetworkSpec(name="vanaheim"))
    return fake.host.create_container(sleeper("env1", AttachRequest("vanaheim")))


def test_detach_releases_the_lease_the_veth_and_the_elements(fake: FakeHost) -> None:
    network, bridge = asgard(fake)
    container = on_vanaheim(fake)
    before = fake.snapshot()
    endpoint = fake.host.connect("asgard", "env1")
    assert [e for _, e in fake.host.container_endpoints(container)][1] == endpoint
    assert fake.kernel.bridge_ports(bridge) == {endpoint.host_ifname}
    fake.host.disconnect("asgard", "env1")
    assert fake.store.used_addresses(network.id) == set()
    assert fake.kernel.bridge_ports(bridge) == set()
    assert fake.snapshot() == before


def test_a_second_network_gets_eth1_and_no_second_default_route(fake: FakeHost) -> None:
    fake.host.create_network(NetworkSpec(name="vanaheim"))
    container = fake.host.create_container(
        sleeper("env1", AttachRequest("asgard"), AttachRequest("vanaheim"))
    )
    endpoints = [e for _, e in fake.host.container_endpoints(container)]
    assert [(e.ifname, e.gateway is not None) for e in endpoints] == [
        ("eth0", True), ("eth1", False)
    ]


@pytest.mark.parametrize("step", ["attach_veth", "attach_veth:configure"])
def test_a_failed_attach_leaves_nothing(fake: FakeHost, step: str) -> None:
    container = on_vanaheim(fake)
    before = fake.snapshot()
    fake.kernel.fail(step, errno.EEXIST)
    with pytest.raises(KernelError, match=f"injected failure at {step}"):
        fake.host.connect("asgard", "env1")
    assert fake.snapshot() == before
    assert len(fake.host.container_endpoints(container)) == 1


def test_a_failed_create_takes_the_container_and_its_namespace_away(fake: FakeHost) -> None:
    before = fake.snapshot()
    fake.kernel.fail("attach_veth:configure")
    with pytest.raises(KernelError):
        fake.host.create_container(sleeper("env1", AttachRequest("asgard")))
    assert fake.snapshot() == before
    assert list(fake.host.paths.netns_dir.iterdir()) == []
    assert list(fake.host.paths.containers.iterdir()) == []


def test_a_full_bridge_refuses_the_next_container(tmp_path: Path) -> None:
    fake = fake_host(tmp_path, kernel=FakeKernel(max_ports=1))
    fake.host.create_network(NetworkSpec(name="asgard"))
    fake.host.create_container(sleeper("env1", AttachRequest("asgard")))
    with pytest.raises(ConflictError, match="network asgard is full: a Linux bridge takes"):
        fake.host.create_container(sleeper("env2", AttachRequest("asgard")))
    assert [c.name for c in fake.host.containers()] == ["env1"]


def test_removing_a_container_deletes_its_namespace_and_so_its_veths(fake: FakeHost) -> None:
    _, bridge = asgard(fake)
    container: Container = fake.host.create_container(sleeper("env1", AttachRequest("asgard")))
    fake.host.remove_container("env1")
    assert container.netns is not None and not Path(container.netns).exists()
    assert fake.kernel.bridge_ports(bridge) == set()
    assert fake.host.containers() == [] and fake.host.endpoints() == []
