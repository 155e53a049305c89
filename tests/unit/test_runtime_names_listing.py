"""`netbay ps` and `netbay inspect` of the attachments runtimes made (podman's netavark
interface, CNI from Kubernetes and from containerd's ctr, Docker's plugin), on the fakes: the
runtimes' requests go through the daemon's services, the CLI's commands through the API."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netbay import ContainerSpec, NetworkSpec
from netbay._linux import process_start_time
from netbay.cli.main import main
from netbay.client import ApiError
from netbay.cni.daemon_side import CniService
from netbay.daemon.api import Api
from netbay.daemon.reaper import Reaper
from netbay.engine.sandboxes import SandboxRequest
from netbay.errors import NetbayError
from netbay.podman.daemon_side import NetavarkService
from netbay.testing import FakeHost, fake_host

PODMAN_ID = "4f19c528ccd47bcc1be383cea70a09ccec8e321d31c9eebf3d05236cabc9ab83"
DOCKER_ENDPOINT = "9d1f0c3a5b7e4d2f8a6c1b3e5d7f9a0c2e4b6d8f1a3c5e7b9d0f2a4c6e8b1d3f"


class ApiClient:
    """The CLI's Client, answered by the daemon's Api in this process."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def get(self, path: str, **query: Any) -> Any:
        pairs = [f"{k}={v}" for k, v in query.items() if v is not None]
        target = path + ("?" + "&".join(pairs) if pairs else "")
        try:
            status, payload = self.api.dispatch("GET", target, None)
        except NetbayError as exc:  # what the daemon's server answers for it
            raise ApiError(getattr(exc, "http_status", 500), str(exc)) from None
        assert status == 200, payload
        return payload

    def close(self) -> None:
        """Nothing held."""


@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    fake = fake_host(tmp_path)
    fake.host.create_network(NetworkSpec(name="asgard"))
    return fake


@pytest.fixture
def netbay(
    fake: FakeHost, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Any]:
    """`netbay ARGS...` against the fake host: (exit code, stdout lines, stderr)."""
    reaper = Reaper(lambda *_: None)
    client = ApiClient(Api(fake.host, reaper))
    monkeypatch.setattr("netbay.cli.main.Client", lambda **_: client)

    def run(*args: str) -> tuple[int, list[str], str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out.splitlines(), out.err

    yield run
    reaper.close()


def podman_setup(fake: FakeHost, netns: Path, name: str = "silly_swanson") -> None:
    """What podman 4.3 sends netavark for `podman run --name NAME --network nbtry`."""
    options = {
        "container_id": PODMAN_ID, "container_name": name,
        "networks": {"nbtry": {"static_ips": ["10.89.50.2"], "interface_name": "eth0"}},
        "network_info": {"nbtry": {
            "name": "nbtry", "id": "97" * 32, "driver": "bridge",
            "network_interface": "podman1", "subnets": [
                {"subnet": "10.89.50.0/24", "gateway": "10.89.50.1"}],
            "ipv6_enabled": False, "internal": False, "dns_enabled": True,
        }},
    }
    status, answer = NetavarkService(fake.host).handle(
        "setup", {"netns": str(netns), "input": json.dumps(options)})
    assert status == 200, answer


def cni_add(fake: FakeHost, container_id: str, netns: Path, args: str = "") -> None:
    """An ADD of netbay's CNI plugin onto asgard, CNI_ARGS ARGS."""
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": container_id, "CNI_NETNS": str(netns),
           "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin", "CNI_ARGS": args}
    config = {"cniVersion": "1.0.0", "name": "mynet", "type": "netbay", "network": "asgard"}
    status, answer = CniService(fake.host).handle("add", {"env": env, "config": config})
    assert status == 200, answer


def docker_join(fake: FakeHost, netns: Path) -> None:
    """A Join of Docker's plugin as it records it: Docker's endpoint id, its network id as
    the tag, no name (libnetwork's remote protocol carries none)."""
    request = SandboxRequest(external_id=DOCKER_ENDPOINT, runtime="docker", netns=netns,
                             ifname=f"nbd{DOCKER_ENDPOINT[:12]}", tag="d0" * 32)
    fake.host.attach_sandbox(fake.host.network("asgard"), request)


def netbay_container(fake: FakeHost, name: str, running: bool) -> str:
    made = fake.host.create_container(ContainerSpec(("sleep", "1000"), name))
    if running:  # this test's process stands in for the container's
        fake.host.mark_started(made.id, os.getpid())
        assert process_start_time(os.getpid())
    return made.id


@pytest.fixture
def attached(fake: FakeHost, tmp_path: Path) -> dict[str, str]:
    """netbay's own containers (one running, one stopped) and one attachment of each
    runtime: netbay's record id of each, by the name `netbay ps` shows."""
    podman_setup(fake, fake.kernel.runtime_netns(tmp_path / "ns-podman"))
    cni_add(fake, "k8s-sandbox-1", fake.kernel.runtime_netns(tmp_path / "ns-k8s"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0")
    cni_add(fake, "demo", fake.kernel.runtime_netns(tmp_path / "ns-ctr"))
    docker_join(fake, fake.kernel.runtime_netns(tmp_path / "ns-docker"))
    ids = {
        "silly_swanson": fake.host.sandbox(PODMAN_ID),
        "shop/web-0": fake.host.sandbox("k8s-sandbox-1"),
        "demo": fake.host.sandbox("demo"),
        DOCKER_ENDPOINT[:12]: fake.host.sandbox(DOCKER_ENDPOINT),
    }
    found = {name: c.id for name, c in ids.items() if c is not None}
    assert len(found) == 4
    found["web"] = netbay_container(fake, "web", running=True)
    found["old"] = netbay_container(fake, "old", running=False)
    return found


def columns(line: str) -> list[str]:
    return re.split(r" {3,}", line)


def test_ps_lists_runtime_attachments_by_their_runtimes_names(
    netbay: Any, attached: dict[str, str]
) -> None:
    code, lines, _ = netbay("ps")
    assert code == 0
    assert columns(lines[0]) == [
        "CONTAINER ID", "COMMAND", "CREATED", "STATUS", "NETWORKS", "RUNTIME", "NAMES"]
    rows = {columns(line)[-1]: columns(line) for line in lines[1:]}
    assert sorted(rows) == sorted(["silly_swanson", "shop/web-0", "demo", DOCKER_ENDPOINT[:12],
                                   "web"])
    assert [rows[n][0] for n in sorted(rows)] == [attached[n][:12] for n in sorted(rows)]
    assert rows["silly_swanson"][3:] == ["Attached", "nbtry", "podman", "silly_swanson"]
    assert rows["shop/web-0"][3:] == ["Attached", "asgard", "cni", "shop/web-0"]
    assert rows["demo"][3:] == ["Attached", "asgard", "cni", "demo"]
    assert rows[DOCKER_ENDPOINT[:12]][3:] == [
        "Attached", "asgard", "docker", DOCKER_ENDPOINT[:12]]
    assert rows["web"][1] == '"sleep 1000"' and rows["web"][3:] == [
        "Up", "bridge", "netbay", "web"]


def test_ps_all_adds_the_stopped_netbay_containers_only(
    netbay: Any, attached: dict[str, str]
) -> None:
    _, lines, _ = netbay("ps", "-a", "--format", "{{.Names}} {{.Runtime}} {{.Status}}")
    assert sorted(lines) == sorted([
        "silly_swanson podman Attached", "shop/web-0 cni Attached", "demo cni Attached",
        f"{DOCKER_ENDPOINT[:12]} docker Attached", "web netbay Up", "old netbay Created"])
    _, quiet, _ = netbay("ps", "-q", "--no-trunc")
    assert sorted(quiet) == sorted(v for k, v in attached.items() if k != "old")


def test_ps_json_has_the_runtime_and_its_id(netbay: Any, attached: dict[str, str]) -> None:
    _, lines, _ = netbay("ps", "--no-trunc", "--format", "json")
    rows = {row["Names"]: row for row in map(json.loads, lines)}
    wanted = {
        "silly_swanson": ("podman", PODMAN_ID), "shop/web-0": ("cni", "k8s-sandbox-1"),
        "demo": ("cni", "demo"), DOCKER_ENDPOINT[:12]: ("docker", DOCKER_ENDPOINT),
        "web": ("netbay", attached["web"]),
    }
    assert {name: (r["Runtime"], r["RuntimeID"]) for name, r in rows.items()} == wanted
    assert {name: r["ID"] for name, r in rows.items()} == {n: attached[n] for n in wanted}


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("silly_swanson", "silly_swanson"), (PODMAN_ID, "silly_swanson"),
        (PODMAN_ID[:12], "silly_swanson"), ("shop/web-0", "shop/web-0"),
        ("demo", "demo"), (DOCKER_ENDPOINT[:12], DOCKER_ENDPOINT[:12]),
        (("netavark-" + PODMAN_ID)[:63], "silly_swanson"),  # netbay's record name
    ],
)
def test_inspect_finds_an_attachment_by_its_runtimes_id_or_name(
    netbay: Any, attached: dict[str, str], ref: str, name: str
) -> None:
    code, lines, _ = netbay("inspect", ref)
    (found,) = json.loads("\n".join(lines))
    assert code == 0 and found["Id"] == attached[name]
    runtime_id = {"silly_swanson": PODMAN_ID, "shop/web-0": "k8s-sandbox-1", "demo": "demo",
                  DOCKER_ENDPOINT[:12]: DOCKER_ENDPOINT}[name]
    runtime = {"silly_swanson": "podman", DOCKER_ENDPOINT[:12]: "docker"}.get(name, "cni")
    assert found["Runtime"] == {"Name": runtime, "ContainerID": runtime_id,
                                "ContainerName": name}
    _, template, _ = netbay("inspect", "-f", "{{.Runtime.ContainerID}}", ref)
    assert template == [runtime_id]


def test_inspect_of_a_netbay_container_names_netbay(
    netbay: Any, attached: dict[str, str]
) -> None:
    _, lines, _ = netbay("inspect", "web")
    (found,) = json.loads("\n".join(lines))
    assert found["Runtime"] == {"Name": "netbay", "ContainerID": attached["web"],
                                "ContainerName": "web"}


def test_a_name_two_runtimes_gave_is_refused_as_ambiguous(
    fake: FakeHost, netbay: Any, tmp_path: Path
) -> None:
    podman_setup(fake, fake.kernel.runtime_netns(tmp_path / "ns-podman"), name="twin")
    cni_add(fake, "k8s-1", fake.kernel.runtime_netns(tmp_path / "ns-k8s"), "K8S_POD_NAME=twin")
    code, lines, err = netbay("inspect", "twin")
    assert (code, lines, err) == (1, [], "Error: 'twin' matches more than one container\n")
    code, _, err = netbay("inspect", "nosuch")
    assert (code, err) == (1, "Error: no such object: nosuch\n")


def test_records_from_before_the_name_show_the_dns_name_else_the_short_id(
    fake: FakeHost, netbay: Any, attached: dict[str, str]
) -> None:
    for name in ("silly_swanson", "shop/web-0"):
        record = fake.store.find_container(attached[name])
        assert record is not None
        config = {k: v for k, v in record.config.items() if k != "name"}
        fake.store.update_container(record.id, config=config)
    _, lines, _ = netbay("ps", "--format", "{{.Runtime}} {{.Names}}")
    assert "podman silly_swanson" in lines and "cni web-0" in lines  # K8S_POD_NAME
    fake.store.update_container(attached["silly_swanson"], hostname="")  # podman's DNS off
    _, lines, _ = netbay("ps", "--format", "{{.Runtime}} {{.Names}}")
    assert f"podman {PODMAN_ID[:12]}" in lines
