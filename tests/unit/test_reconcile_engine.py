"""The reconciler on the engine's fakes: the record's desired state against the fake kernel,
what is repaired (under the kernel lock, only then), what is reported, and the counters
and backoff the audit shows."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from netbay import AttachRequest, ContainerSpec, Host, NetworkSpec
from netbay.model import Network
from netbay.reconcile.state import RouteState
from netbay.store.memory import MemoryStore
from netbay.testing import FakeFlows, FakeHost, FakeKernel, FakeNft, fake_paths


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingLock:
    """The kernel's lock, counting how often it is taken."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.taken = 0

    def __enter__(self) -> None:
        self._lock.__enter__()
        self.taken += 1

    def __exit__(self, *exc: Any) -> None:
        self._lock.__exit__(*exc)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(tmp_path: Path, clock: Clock) -> FakeHost:
    store, kernel, nft, flows = MemoryStore(), FakeKernel(), FakeNft(), FakeFlows()
    host = Host(fake_paths(tmp_path), store=store, kernel=kernel, nft=nft, flows=flows,
                clock=clock)
    fake = FakeHost(host, store, kernel, nft, flows)
    fake.host.create_network(NetworkSpec(name="asgard"))
    for name in ("env1", "env2"):
        fake.host.create_container(ContainerSpec(command=("sleep", "inf"), name=name,
                                                 networks=(AttachRequest("asgard"),)))
    return fake


def asgard(fake: FakeHost) -> Network:
    return fake.host.network("asgard")


def veths(fake: FakeHost) -> list[str]:
    return sorted(str(e.host_ifname) for e in fake.host.endpoints())


def kinds(fake: FakeHost) -> list[str]:
    return [d.kind for d in fake.host.reconcile().repaired]


@pytest.fixture
def counting(fake: FakeHost) -> Iterator[CountingLock]:
    lock = CountingLock()
    fake.kernel.lock = lock  # type: ignore[assignment]
    yield lock


def test_in_sync_nothing_is_repaired_and_the_kernel_lock_is_not_taken(
    fake: FakeHost, counting: CountingLock,
) -> None:
    before = fake.snapshot()
    result = fake.host.reconcile(full=True)
    assert (result.repaired, result.failed, result.waiting) == ([], [], [])
    assert counting.taken == 0
    assert fake.snapshot() == before
    assert fake.host.audit() == []


def test_a_deleted_bridge_is_re_made_with_its_ports_and_its_mac(
    fake: FakeHost, counting: CountingLock,
) -> None:
    bridge = str(asgard(fake).device)
    fake.kernel.links[bridge].mac = "02:00:00:00:00:01"
    fake.host.reconcile()  # learns the MAC
    del fake.kernel.links[bridge]
    for veth in veths(fake):
        fake.kernel.links[veth].master = None  # as the kernel releases a deleted bridge's ports
    assert fake.host.audit() == [f"network asgard: bridge {bridge} missing"]
    assert kinds(fake) == ["missing", "mac", "port", "port"]
    assert counting.taken > 0
    assert fake.kernel.links[bridge].mac == "02:00:00:00:00:01"
    assert fake.kernel.links[bridge].addresses == [IPv4Interface("172.18.0.1/16")]
    assert all(fake.kernel.links[v].master == bridge for v in veths(fake))
    assert fake.host.audit() == []
    assert fake.host.reconcile_status()["Repairs"] == {"mac": 1, "missing": 1, "port": 2}


def test_a_network_being_removed_is_not_re_made(fake: FakeHost) -> None:
    network = fake.host.create_network(NetworkSpec(name="vanaheim"))
    fake.store.update_network(network.id, state="removing", owner=fake.host.owner)
    del fake.kernel.links[str(network.device)]
    assert kinds(fake) == []
    assert str(network.device) not in fake.kernel.links


def test_the_unused_default_bridge_is_not_wanted(fake: FakeHost) -> None:
    default = fake.host.network("bridge")
    assert default.device is None or fake.host.device_wanted(default) is False
    assert kinds(fake) == []


def test_a_detached_or_downed_port_is_put_back(fake: FakeHost) -> None:
    one, two = veths(fake)
    fake.kernel.links[one].master = None
    fake.kernel.links[two].up = False
    assert sorted(fake.host.audit()) == sorted([
        f"endpoint {one[3:]}: {one} is not a port of {asgard(fake).device}",
        f"endpoint {two[3:]}: {two} is down"])
    assert sorted(kinds(fake)) == ["down", "port"]
    assert fake.kernel.links[one].master == asgard(fake).device and fake.kernel.links[two].up


def test_address_route_sysctls_and_firewall_are_put_back(fake: FakeHost) -> None:
    bridge = fake.kernel.links[str(asgard(fake).device)]
    bridge.addresses.clear()
    fake.kernel.forwarding = False
    bridge.route_localnet = False
    fake.nft.flush()
    # route_localnet waits for the bridge's address (a drifted link's sysctls come after
    # it): the next round of the same pass
    assert kinds(fake) == ["address", "sysctl", "firewall", "sysctl"]
    assert kinds(fake) == []
    assert bridge.addresses == [IPv4Interface("172.18.0.1/16")]
    assert fake.kernel.forwarding and bridge.route_localnet and fake.host.firewall_intact()
    fake.kernel.remove_route(RouteState(IPv4Interface("172.18.0.1/16").network, bridge.name))
    assert kinds(fake) == ["route"]
    assert fake.host.audit() == []


def test_hairpin_is_put_back_on_a_published_ports_target(fake: FakeHost) -> None:
    container = fake.host.create_container(ContainerSpec(
        command=("sleep", "inf"), name="web", publish=("8080:80",),
        networks=(AttachRequest("asgard"),)))
    ((_, endpoint),) = fake.host.container_endpoints(container)
    port = fake.kernel.links[str(endpoint.host_ifname)]
    assert port.hairpin
    port.hairpin = False
    assert kinds(fake) == ["hairpin"]
    assert port.hairpin


def test_what_the_container_changes_on_its_side_is_reported_not_reverted(
    fake: FakeHost,
) -> None:
    container = fake.host.container("env1")
    namespace = fake.kernel.namespaces[str(container.netns)]
    namespace.links["eth0"].addresses = [IPv4Interface("172.18.0.77/16")]
    result = fake.host.reconcile(full=True)
    assert result.repaired == [] and result.waiting == []
    (endpoint,) = fake.host.endpoints(container_id=container.id)
    assert fake.host.audit() == [
        f"container env1: eth0 has 172.18.0.77/16, netbay gave it {endpoint.address} (the "
        "container's own side: reported, not reverted)"]
    assert namespace.links["eth0"].addresses == [IPv4Interface("172.18.0.77/16")]


def test_a_bridge_that_keeps_going_is_backed_off_and_flapping(
    fake: FakeHost, clock: Clock,
) -> None:
    bridge = str(asgard(fake).device)
    repaired = 0
    for _ in range(200):  # 4 s of a bridge deleted every 20 ms
        fake.kernel.links.pop(bridge, None)
        repaired += kinds(fake).count("missing")
        clock.now += 0.02
    assert repaired == 5  # at once, at once, then 0.5, 1 and 2 s after the one before
    (line,) = [a for a in fake.host.audit() if a.startswith("flapping: ")]
    assert line.startswith(f"flapping: network asgard: bridge {bridge} missing (repaired 5 "
                           "times in a row; next repair in ")
    assert fake.host.reconcile_status()["Flapping"][0]["Repairs"] == 5
    clock.now += 60
    assert kinds(fake)[:1] == ["missing"]  # left alone, it is due again; and then in sync
    clock.now += 11
    fake.host.reconcile()
    assert fake.host.reconcile_status()["Flapping"] == []


def test_a_failed_repair_is_counted_and_retried_later(fake: FakeHost, clock: Clock) -> None:
    veth = veths(fake)[0]
    fake.kernel.links[veth].master = None
    fake.kernel.fail("set_link")
    result = fake.host.reconcile()
    assert [d.kind for d in result.failed] == ["port"] and result.repaired == []
    assert fake.host.reconcile_status()["Failures"] == {"port": 1}
    assert kinds(fake) == ["port"]  # the first retry is at once; later ones back off
    assert fake.kernel.links[veth].master == asgard(fake).device


def test_what_is_watched_is_what_the_last_pass_wanted(fake: FakeHost) -> None:
    fake.host.reconcile()
    watched = fake.host.reconcile_watched()
    assert {str(asgard(fake).device), *veths(fake)} <= watched.names
    assert len(watched.indices) == 3


def test_an_interface_the_container_removed_is_reported(fake: FakeHost) -> None:
    container = fake.host.container("env2")
    del fake.kernel.namespaces[str(container.netns)].links["eth0"]
    assert fake.host.audit() == [
        "container env2: eth0 missing (the container's side: reported, not repaired)"]
    assert kinds(fake) == []
