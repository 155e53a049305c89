"""The default bridge (`bridge`, device netbay0) on the fakes: recorded at start-up, its device
made with its first endpoint and removed with its last, its subnet provisional until then."""

from __future__ import annotations

import errno
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from netbay import ContainerSpec, Host, NetworkSpec, SubnetConfig
from netbay.errors import ConfigError, ConflictError, KernelError
from netbay.model import AttachRequest
from netbay.testing import FakeFlows, FakeHost, FakeKernel, fake_host, fake_paths

DEFAULT = IPv4Network("172.17.0.0/16")


@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    return fake_host(tmp_path)


def run(fake: FakeHost, name: str, network: str = "bridge") -> None:
    fake.host.create_container(
        ContainerSpec(command=("true",), name=name, networks=(AttachRequest(network),))
    )


def restart(fake: FakeHost) -> Host:
    return Host(fake_paths(fake.host.paths.root.parent), store=fake.store, kernel=fake.kernel,
                nft=fake.nft, flows=FakeFlows())


def test_a_fresh_host_records_the_default_bridge_but_makes_no_device(fake: FakeHost) -> None:
    bridge = fake.host.network("bridge")
    assert (bridge.builtin, bridge.device, bridge.device_created) == (True, None, False)
    assert bridge.subnets[0].subnet == DEFAULT
    assert bridge.options["com.docker.network.bridge.name"] == "netbay0"
    assert fake.kernel.links == {} and fake.kernel.calls == []
    assert fake.nft.elements("inet", "bridges") == set()
    assert fake.nft.elements("inet", "masq_nets") == set()
    assert not fake.host.device_wanted(bridge)
    assert fake.host.audit() == []


def test_the_first_container_makes_it_and_the_last_one_removes_it(fake: FakeHost) -> None:
    before = fake.snapshot()
    run(fake, "a")
    bridge = fake.host.network("bridge")
    assert (bridge.device, bridge.device_created) == ("netbay0", True)
    assert fake.host.device_wanted(bridge)
    link = fake.kernel.links["netbay0"]
    assert (link.kind, link.addresses) == ("bridge", [IPv4Interface("172.17.0.1/16")])
    assert link.route_localnet and fake.kernel.forwarding
    assert fake.nft.elements("inet", "bridges") == {'"netbay0"'}
    assert fake.nft.elements("inet", "masq_nets") == {"172.17.0.0/16"}
    (endpoint,) = fake.host.endpoints(network_id=bridge.id)
    assert endpoint.address == IPv4Interface("172.17.0.2/16")
    assert fake.kernel.links[str(endpoint.host_ifname)].master == "netbay0"
    assert fake.host.audit() == []

    run(fake, "b")
    fake.host.remove_container("a")
    assert "netbay0" in fake.kernel.links  # b still uses it
    fake.host.remove_container("b")
    assert "netbay0" not in fake.kernel.links
    assert not fake.host.device_wanted(fake.host.network("bridge"))
    assert fake.snapshot() == before


def test_a_failed_first_attach_leaves_no_device(fake: FakeHost) -> None:
    before = fake.snapshot()
    fake.kernel.fail("attach_veth", errno.EPERM)
    with pytest.raises(KernelError, match="injected failure at attach_veth"):
        run(fake, "a")
    assert fake.snapshot() == before
    fake.host.create_network(NetworkSpec(name="asgard"))
    run(fake, "b", network="asgard")
    before = fake.snapshot()
    with pytest.raises(ConfigError, match="'10.9.9.9': not inside the network's subnets"):
        fake.host.connect("bridge", "b", ip=IPv4Address("10.9.9.9"))  # refused once recording
    assert fake.snapshot() == before


def test_the_subnet_moves_off_what_the_host_took_before_the_first_use(fake: FakeHost) -> None:
    fake.kernel.taken.append(DEFAULT)  # a Docker engine's docker0, say, came up since
    run(fake, "a")
    bridge = fake.host.network("bridge")
    assert [(s.subnet, s.gateway) for s in bridge.subnets] == [
        (IPv4Network("172.18.0.0/16"), IPv4Address("172.18.0.1"))]
    assert fake.kernel.links["netbay0"].addresses == [IPv4Interface("172.18.0.1/16")]
    assert fake.nft.elements("inet", "masq_nets") == {"172.18.0.0/16"}


def test_an_unused_default_bridge_holds_its_name_but_not_its_subnet(fake: FakeHost) -> None:
    with pytest.raises(ConflictError, match="'netbay0': used by network bridge"):
        fake.host.create_network(
            NetworkSpec(name="mine", options={"com.docker.network.bridge.name": "netbay0"}))
    auto = fake.host.create_network(NetworkSpec(name="auto"))
    assert auto.subnets[0].subnet == IPv4Network("172.18.0.0/16")  # chosen around it
    asked = fake.host.create_network(
        NetworkSpec(name="asked", subnets=(SubnetConfig(IPv4Network("172.17.5.0/24")),)))
    run(fake, "a")  # the first use moves the default bridge off both
    assert fake.host.network("bridge").subnets[0].subnet == IPv4Network("172.19.0.0/16")
    with pytest.raises(ConflictError, match="overlaps 172.19.0.0/16 of network bridge"):
        fake.host.create_network(
            NetworkSpec(name="late", subnets=(SubnetConfig(IPv4Network("172.19.1.0/24")),)))
    assert asked.subnets[0].subnet == IPv4Network("172.17.5.0/24")


def test_start_up_remakes_a_used_default_bridge_and_removes_an_unused_one(
    fake: FakeHost,
) -> None:
    run(fake, "a")
    fake.kernel.remove_link("netbay0")
    restart(fake)
    assert fake.kernel.links["netbay0"].addresses == [IPv4Interface("172.17.0.1/16")]
    # the record of a netbay that made netbay0 at start-up, or a crash before its removal
    fake.host.remove_container("a")
    bridge = fake.host.network("bridge")
    fake.store.update_network(bridge.id, device="netbay0", device_created=True)
    fake.kernel.ensure_bridge(bridge.id, "netbay0", None, [IPv4Interface("172.17.0.1/16")])
    again = restart(fake)
    assert "netbay0" not in fake.kernel.links
    assert again.network("bridge").device is None
    assert again.audit() == []


def test_a_bridge_the_user_made_is_used_but_never_removed(tmp_path: Path) -> None:
    kernel = FakeKernel()
    kernel.ensure_bridge("theirs", "netbay0", None, [])
    fake = fake_host(tmp_path, kernel=kernel)
    run(fake, "a")
    assert not fake.host.network("bridge").device_created
    fake.host.remove_container("a")
    assert "netbay0" in fake.kernel.links
    assert fake.host.network("bridge").device is None


def test_a_runtime_attached_to_the_default_bridge_gets_its_device_in_the_result(
    fake: FakeHost, tmp_path: Path
) -> None:
    from netbay.engine.sandboxes import RuntimeAttachment, SandboxRequest

    netns = fake.kernel.runtime_netns(tmp_path / "runtime-ns")
    request = SandboxRequest(external_id="c1", runtime="cni", netns=netns, ifname="eth0")
    ((network, _),) = fake.host.setup_sandbox("cni", [RuntimeAttachment("bridge",
                                                                        lambda _: request)])
    assert network.device == "netbay0"
    assert fake.host.detach_sandbox("c1", "eth0")
    assert "netbay0" not in fake.kernel.links
    assert fake.nft.elements("inet", "bridges") == set()
