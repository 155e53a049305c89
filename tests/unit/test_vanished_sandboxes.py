"""Sandboxes whose namespace is gone (a runtime that never sends DEL), released after the
grace period, on the fakes; and the namespace identity a release is judged by."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from netbay import ContainerSpec, NetworkSpec
from netbay._linux import process_start_time
from netbay.engine.sandboxes import SandboxRequest
from netbay.engine.vanished import netns_identity, vanished_grace_from_env
from netbay.errors import ConfigError
from netbay.model import AttachRequest
from netbay.plan.ports import Mapping
from netbay.testing import FakeHost, fake_host

GRACE = 0.3


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    monkeypatch.setenv("NETBAY_VANISHED_GRACE", str(GRACE))
    fake = fake_host(tmp_path)
    fake.host.create_network(NetworkSpec(name="asgard"))
    return fake


def add(fake: FakeHost, netns: Path, external_id: str = "c1") -> None:
    request = SandboxRequest(
        external_id=external_id, runtime="cni", netns=netns, ifname="eth0", tag="asgard",
        ports=(Mapping("tcp", None, 18080, 80),),
    )
    fake.host.attach_sandbox(fake.host.network("asgard"), request)


def remake(fake: FakeHost, netns: Path) -> None:
    """Another namespace pinned at NETNS (an inode that was never ours), as after a reused
    PID or a runtime's restart without DEL; only `lo` in it."""
    other = fake.kernel.runtime_netns(netns.with_name("ns-other"))
    other.rename(netns)
    fake.kernel.namespaces[str(netns)] = fake.kernel.namespaces.pop(str(other))


def test_released_after_the_grace_period_leases_ports_records_and_a_log_line(
    fake: FakeHost, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = fake.snapshot()
    netns = fake.kernel.runtime_netns(tmp_path / "ns-c1")
    add(fake, netns)
    sandbox = fake.host.sandbox("c1")
    assert sandbox is not None
    assert (sandbox.netns_dev, sandbox.netns_ino) == netns_identity(netns)[:2]
    assert any("18080" in e for e in fake.nft.elements("inet", "pub_any"))
    fake.kernel.delete_netns(netns)  # the runtime removed it, and sends no DEL
    assert fake.host.release_vanished_sandboxes() == []  # seen gone: the grace begins
    assert fake.host.sandbox("c1") is not None
    time.sleep(GRACE)
    with caplog.at_level(logging.INFO, logger="netbay.sandboxes"):
        assert fake.host.release_vanished_sandboxes() == ["cni-c1"]
    assert caplog.messages == [
        f"released cni-c1 (eth0 172.18.0.2 on asgard; ports 18080/tcp): its network "
        f"namespace {netns} is gone"]
    assert fake.snapshot() == before  # lease, port mapping, records: all gone
    assert not fake.host.detach_sandbox("c1", "eth0", tag="asgard")  # a late DEL: nothing
    assert fake.host.release_vanished_sandboxes() == []


def test_a_path_that_names_another_namespace_now_is_gone(
    fake: FakeHost, tmp_path: Path
) -> None:
    netns = fake.kernel.runtime_netns(tmp_path / "ns-c1")
    add(fake, netns)
    remake(fake, netns)
    assert fake.host.release_vanished_sandboxes() == []
    time.sleep(GRACE)
    assert fake.host.release_vanished_sandboxes() == ["cni-c1"]
    assert fake.host.sandbox("c1") is None
    assert fake.store.used_addresses(fake.host.network("asgard").id) == set()
    # the new namespace was not touched: its links are what the runtime made
    assert fake.kernel.namespaces[str(netns)].links.keys() == {"lo"}


def test_a_live_namespace_and_netbays_own_containers_are_left_alone(
    fake: FakeHost, tmp_path: Path
) -> None:
    add(fake, fake.kernel.runtime_netns(tmp_path / "ns-c1"))
    own = fake.host.create_container(ContainerSpec(
        command=("true",), name="mine", networks=(AttachRequest("asgard"),)))
    assert own.netns is not None
    Path(own.netns).unlink()  # not a runtime's: `netbay system gc` and audit speak of it
    time.sleep(GRACE)
    before = fake.snapshot()
    assert fake.host.release_vanished_sandboxes() == []
    assert fake.snapshot() == before


def test_a_new_add_for_the_id_releases_the_one_whose_namespace_is_gone(
    fake: FakeHost, tmp_path: Path
) -> None:
    netns = fake.kernel.runtime_netns(tmp_path / "ns-c1")
    add(fake, netns)
    remake(fake, netns)  # a restart: no DEL before the new ADD
    add(fake, netns)  # the old attachment's address and host port are free for it again
    sandbox = fake.host.sandbox("c1")
    assert sandbox is not None and sandbox.netns_ino == netns_identity(netns)[1]
    (endpoint,) = fake.host.endpoints(container_id=sandbox.id)
    assert endpoint.address is not None and endpoint.address.ip == IPv4Address("172.18.0.2")
    assert fake.kernel.namespaces[str(netns)].links.keys() == {"lo", "eth0"}


def test_the_identity_of_a_process_namespace_includes_its_start_time() -> None:
    child = subprocess.Popen(["sleep", "100"])
    try:
        path = Path(f"/proc/{child.pid}/ns/net")
        dev, ino, start = netns_identity(path)
        assert (dev, ino) == (os.stat(path).st_dev, os.stat(path).st_ino)
        assert start == process_start_time(child.pid) != 0
    finally:
        child.kill()
        child.wait()
    assert netns_identity(path) == (0, 0, 0)


def test_the_grace_period_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NETBAY_VANISHED_GRACE", raising=False)
    assert vanished_grace_from_env() == 5.0
    monkeypatch.setenv("NETBAY_VANISHED_GRACE", "0")
    assert vanished_grace_from_env() == 0.0
    for bad in ("-1", "soon", "inf", "nan"):
        monkeypatch.setenv("NETBAY_VANISHED_GRACE", bad)
        with pytest.raises(ConfigError) as caught:
            vanished_grace_from_env()
        assert str(caught.value) == (
            f"invalid NETBAY_VANISHED_GRACE '{bad}': expected a number of seconds, 0 or more")
