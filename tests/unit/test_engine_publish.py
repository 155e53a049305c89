"""Publishing (`-p`): the nft map elements added and removed, host ports refused twice, the
firewall rebuilt from the record when nft refuses a change; on the fakes."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from netbay import AttachRequest, ContainerSpec, NetworkSpec
from netbay.engine.sandboxes import SandboxRequest
from netbay.errors import ConfigError, ConflictError
from netbay.plan.ports import Mapping
from netbay.testing import FakeHost, fake_host


def published(name: str, *publish: str, network: str = "asgard") -> ContainerSpec:
    return ContainerSpec(command=("sleep", "inf"), name=name, publish=publish,
                         networks=(AttachRequest(network),))


@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    fake = fake_host(tmp_path)
    fake.host.create_network(NetworkSpec(name="asgard"))
    return fake


def test_a_published_port_is_one_map_element_until_the_container_goes(fake: FakeHost) -> None:
    container = fake.host.create_container(published("web", "8080:80", "127.0.0.1:53:53/udp"))
    ((_, endpoint),) = fake.host.container_endpoints(container)
    assert endpoint.host_ifname is not None
    assert fake.nft.elements("inet", "pub_any") == {"tcp . 8080 : 172.18.0.2 . 80"}
    assert fake.nft.elements("inet", "pub_ip") == {"127.0.0.1 . udp . 53 : 172.18.0.2 . 53"}
    assert fake.kernel.links[endpoint.host_ifname].hairpin  # the container reaches itself
    fake.host.remove_container("web")
    assert fake.nft.elements("inet", "pub_any") == set()
    assert fake.nft.elements("inet", "pub_ip") == set()
    # a UDP client reusing its 5-tuple would keep going to the old address
    assert fake.flows.forgotten == [IPv4Address("172.18.0.2")]


def test_a_host_port_already_published_is_refused_and_nothing_changes(fake: FakeHost) -> None:
    fake.host.create_container(published("web", "8080:80"))
    before = fake.snapshot()
    refused = "invalid publish 8080/tcp: host port already published"
    with pytest.raises(ConflictError, match=refused):
        fake.host.create_container(published("web2", "8080:8080"))
    assert fake.snapshot() == before


def test_an_automatic_host_port_is_one_that_is_free(fake: FakeHost) -> None:
    first = fake.host.create_container(published("web", "80"))
    second = fake.host.create_container(published("web2", "80"))
    ports = [c.config["ports"] for c in (first, second)]
    assert ports[0] != ports[1]
    assert len(fake.nft.elements("inet", "pub_any")) == 2


def test_publishing_needs_a_network_that_publishes(fake: FakeHost) -> None:
    fake.host.create_network(NetworkSpec(name="inside", internal=True))
    before = fake.snapshot()
    with pytest.raises(ConfigError, match="needs a bridge network that is not internal"):
        fake.host.create_container(published("web", "8080:80", network="inside"))
    assert fake.snapshot() == before


def test_a_refused_change_rebuilds_the_table_from_the_record(fake: FakeHost) -> None:
    fake.nft.fail_next("element missing")
    fake.host.create_container(published("web", "8080:80"))
    assert fake.nft.elements("inet", "pub_any") == {"tcp . 8080 : 172.18.0.2 . 80"}
    assert fake.nft.applied[-1].startswith("add table inet netbay\ndelete table inet netbay")


def test_a_flushed_ruleset_is_restored_once(fake: FakeHost) -> None:
    fake.host.create_container(published("web", "8080:80"))
    fake.nft.flush()
    assert not fake.host.firewall_intact()
    assert fake.host.restore_firewall()
    assert fake.nft.elements("inet", "pub_any") == {"tcp . 8080 : 172.18.0.2 . 80"}
    assert not fake.host.restore_firewall()


def sandbox(fake: FakeHost, external_id: str, *ports: Mapping) -> SandboxRequest:
    netns = fake.kernel.runtime_netns(fake.host.paths.root / f"runtime-{external_id}")
    return SandboxRequest(external_id=external_id, runtime="cni", netns=netns, ifname="eth0",
                          ports=ports, tag="asgard")


def test_a_runtime_cannot_publish_a_host_port_twice(fake: FakeHost) -> None:
    network = fake.host.network("asgard")
    fake.host.attach_sandbox(network, sandbox(fake, "c1", Mapping("tcp", None, 8080, 80)))
    assert fake.nft.elements("inet", "pub_any") == {"tcp . 8080 : 172.18.0.2 . 80"}
    second = sandbox(fake, "c2", Mapping("tcp", None, 8080, 81))
    before = fake.snapshot()
    with pytest.raises(ConflictError, match="invalid publish 8080/tcp: host port already"):
        fake.host.attach_sandbox(network, second)
    assert fake.snapshot() == before
    assert fake.host.detach_sandbox("c1", "eth0")
    assert fake.nft.elements("inet", "pub_any") == set()
