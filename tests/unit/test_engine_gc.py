"""gc's decisions and audit's findings from the record, on the fakes: a record caught mid-
operation by an owner that died is undone; one whose owner lives is left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from netbay import AttachRequest, ContainerSpec, NetworkSpec
from netbay.engine.sandboxes import SandboxRequest
from netbay.testing import FakeHost, FakeLink, fake_host

DEAD_OWNER = "1:1"  # pid 1 never started at tick 1: an owner that is certainly gone


@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    fake = fake_host(tmp_path)
    fake.host.create_network(NetworkSpec(name="asgard"))
    fake.host.create_container(
        ContainerSpec(command=("sleep", "inf"), name="env1", networks=(AttachRequest("asgard"),))
    )
    return fake


def test_an_attach_whose_owner_died_is_undone(fake: FakeHost) -> None:
    (endpoint,) = fake.host.endpoints()
    fake.store.update_endpoint(endpoint.id, state="creating", owner=DEAD_OWNER)
    report = fake.host.gc()
    assert report.endpoints == [endpoint.host_ifname]
    assert endpoint.host_ifname not in fake.kernel.links
    assert fake.host.endpoints() == []
    assert fake.store.used_addresses(endpoint.network_id) == set()
    assert fake.nft.elements("bridge", "ports") == set()


def test_an_attach_whose_owner_lives_is_left_alone(fake: FakeHost) -> None:
    (endpoint,) = fake.host.endpoints()
    fake.store.update_endpoint(endpoint.id, state="creating", owner=fake.host.owner)
    before = fake.snapshot()
    assert fake.host.gc().as_dict() == {
        "Endpoints": [], "Containers": [], "Networks": [], "OrphanLinks": []
    }
    assert fake.snapshot() == before
    assert fake.host.audit() == [f"endpoint {endpoint.id[:12]} is creating"]


def test_a_container_caught_mid_creation_is_removed_with_its_namespace(fake: FakeHost) -> None:
    container = fake.host.container("env1")
    fake.store.update_container(container.id, state="creating", owner=DEAD_OWNER)
    assert fake.host.gc().containers == ["env1"]
    assert fake.host.containers() == [] and fake.host.endpoints() == []
    assert container.netns is not None and not Path(container.netns).exists()
    assert not fake.host.paths.container_dir(container.id).exists()
    assert fake.host.audit() == []


def test_a_network_caught_mid_creation_is_removed_once_unused(fake: FakeHost) -> None:
    network = fake.host.create_network(NetworkSpec(name="vanaheim"))
    fake.store.update_network(network.id, state="creating", owner=DEAD_OWNER)
    assert fake.host.gc().networks == ["vanaheim"]
    assert network.device not in fake.kernel.links
    assert fake.host.find_network(network.id) is None


def test_a_port_no_record_names_is_an_orphan_removed_from_netbays_bridge(fake: FakeHost) -> None:
    device = fake.host.network("asgard").device
    assert device is not None
    fake.kernel.links["nbvlost"] = FakeLink("nbvlost", "veth", master=device)
    assert fake.host.audit() == [f"orphan port nbvlost on {device}"]
    assert fake.host.gc().orphan_links == ["nbvlost"]
    assert "nbvlost" not in fake.kernel.links


def test_audit_names_what_the_kernel_lost(fake: FakeHost) -> None:
    network = fake.host.network("asgard")
    (endpoint,) = fake.host.endpoints()
    assert network.device is not None and endpoint.host_ifname is not None
    fake.kernel.remove_link(endpoint.host_ifname)
    fake.kernel.remove_link(network.device)
    assert fake.host.audit() == [
        f"endpoint {endpoint.id[:12]}: {endpoint.host_ifname} missing",
        f"network asgard: bridge {network.device} missing",
    ]


def test_a_sandbox_whose_namespace_the_runtime_removed_goes(
    fake: FakeHost, tmp_path: Path
) -> None:
    netns = fake.kernel.runtime_netns(tmp_path / "runtime-ns")
    request = SandboxRequest(external_id="c1", runtime="cni", netns=netns, ifname="eth0")
    sandbox, _ = fake.host.attach_sandbox(fake.host.network("asgard"), request)
    assert fake.host.gc().containers == []
    fake.kernel.delete_netns(netns)  # by the runtime, without DEL
    assert fake.host.gc().containers == [sandbox.name]
    assert fake.host.sandbox("c1") is None
