"""A runtime's setup and teardown (CNI, podman) through the engine, on the fakes: networks
made from the runtime's definition, undone together when one attachment fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from netbay import NetworkSpec
from netbay.engine.runtime_networks import RUNTIME_LABEL, UnusableNetwork
from netbay.engine.sandboxes import RuntimeAttachment, SandboxRequest
from netbay.errors import ConfigError
from netbay.model import Network
from netbay.testing import FakeHost, fake_host


@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    return fake_host(tmp_path)


def attachment(netns: Path, ifname: str, network: str | NetworkSpec) -> RuntimeAttachment:
    def request(found: Network) -> SandboxRequest:
        return SandboxRequest(external_id="c1", runtime="netavark", netns=netns, ifname=ifname,
                              tag=found.name)

    return RuntimeAttachment(network, request)


@pytest.fixture
def netns(fake: FakeHost, tmp_path: Path) -> Path:
    return fake.kernel.runtime_netns(tmp_path / "runtime-ns")


def test_setup_makes_the_runtimes_networks_and_teardown_removes_them(
    fake: FakeHost, netns: Path
) -> None:
    before = fake.snapshot()
    done = fake.host.setup_sandbox("netavark", [
        attachment(netns, "eth0", NetworkSpec(name="podman1")),
        attachment(netns, "eth1", NetworkSpec(name="podman2")),
    ])
    assert [(n.name, e.ifname) for n, e in done] == [("podman1", "eth0"), ("podman2", "eth1")]
    assert all(n.labels[RUNTIME_LABEL] == "netavark" for n, _ in done)
    assert fake.kernel.namespaces[str(netns)].links.keys() == {"lo", "eth0", "eth1"}
    assert fake.host.teardown_sandbox("c1", [("eth0", "podman1"), ("eth1", "podman2")]) == []
    assert fake.snapshot() == before


def test_a_failing_attachment_undoes_the_others(fake: FakeHost, netns: Path) -> None:
    before = fake.snapshot()

    def refuse(found: Network) -> SandboxRequest:
        raise ConfigError("network", found.name, "refused")

    with pytest.raises(ConfigError, match="invalid network 'podman2': refused"):
        fake.host.setup_sandbox("netavark", [
            attachment(netns, "eth0", NetworkSpec(name="podman1")),
            RuntimeAttachment(NetworkSpec(name="podman2"), refuse),
        ])
    assert fake.snapshot() == before


def test_a_missing_or_unfit_network_is_unusable_and_nothing_is_made(
    fake: FakeHost, netns: Path
) -> None:
    fake.host.create_network(NetworkSpec(name="asgard", internal=True))
    before = fake.snapshot()
    with pytest.raises(UnusableNetwork, match="network nowhere not found"):
        fake.host.setup_sandbox("cni", [attachment(netns, "eth0", "nowhere")])
    with pytest.raises(UnusableNetwork, match="network asgard exists with other settings"):
        fake.host.setup_sandbox("cni", [attachment(netns, "eth0", NetworkSpec(name="asgard"))])
    assert fake.snapshot() == before


def test_an_attachment_of_an_existing_network_keeps_the_network(
    fake: FakeHost, netns: Path
) -> None:
    fake.host.create_network(NetworkSpec(name="asgard"))
    ((network, endpoint),) = fake.host.setup_sandbox("cni", [attachment(netns, "eth0", "asgard")])
    assert fake.host.sandbox_problems(network, endpoint, netns) == []
    assert fake.host.detach_sandbox("c1", "eth0")
    assert fake.host.network("asgard") == network
    assert fake.host.sandbox("c1") is None
