"""The real Docker engine (Debian's dockerd 20.10) with netbay as its network and IPAM
driver, IPv6 (issue 17): `docker network create -d netbay --ipam-driver netbay --ipv6`,
`docker run --ip6`, the addresses and default routes of both families inside the container,
and IPv6 traffic between two containers. On a host of its own (tests/docker_env.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from docker_env import IMAGE, DockerHost, docker_host_fixture

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

docker_host = docker_host_fixture()


@pytest.fixture
def host(docker_host: DockerHost) -> Iterator[DockerHost]:
    if docker_host.plugin_missing:
        pytest.skip(docker_host.plugin_missing)
    yield docker_host
    docker_host.docker("rm", "-f", "a6", "b6", check=False)
    docker_host.docker("network", "rm", "dn6", check=False)


def netbay_network(host: DockerHost, docker_id: str) -> dict[str, Any]:
    listed = host.netbay("network", "ls", "-f", f"label=com.docker.network.id={docker_id}",
                         "--format", "{{.Name}}").stdout.split()
    assert len(listed) == 1, listed
    return dict(json.loads(host.netbay("network", "inspect", listed[0]).stdout)[0])


def test_dual_stack_network_and_containers(host: DockerHost) -> None:
    docker_id = host.docker("network", "create", "-d", "netbay", "--ipam-driver", "netbay",
                            "--ipv6", "--subnet", "10.72.0.0/24", "--subnet", "fd72::/64",
                            "dn6").stdout.strip()
    ours = netbay_network(host, docker_id)
    assert (ours["EnableIPv4"], ours["EnableIPv6"]) == (True, True)
    assert [c["Subnet"] for c in ours["IPAM"]["Config"]] == ["10.72.0.0/24", "fd72::/64"]
    theirs = json.loads(host.docker("network", "inspect", "dn6").stdout)[0]
    assert theirs["EnableIPv6"] is True
    assert [c["Subnet"] for c in theirs["IPAM"]["Config"]] == ["10.72.0.0/24", "fd72::/64"]

    for name, ip6 in (("a6", "fd72::9"), ("b6", "")):
        flags = ["--ip6", ip6] if ip6 else []
        host.docker("run", "-d", "--name", name, "--network", "dn6", *flags, IMAGE,
                    "sleep", "1000")
    members = {m["IPv6Address"] for m in netbay_network(host, docker_id)["Containers"].values()}
    assert members == {"fd72::9/64", "fd72::2/64"}
    settings = json.loads(host.docker("inspect", "b6").stdout)[0]["NetworkSettings"][
        "Networks"]["dn6"]
    assert (settings["GlobalIPv6Address"], settings["IPv6Gateway"]) == ("fd72::2", "fd72::1")

    shown = host.docker("exec", "a6", "sh", "-c", "ip -6 addr show eth0; ip -6 route").stdout
    assert "inet6 fd72::9/64" in shown and "default via fd72::1" in shown, shown
    ping = host.docker("exec", "a6", "ping", "-6", "-c", "1", "-W", "5", "fd72::2",
                       check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    host.docker("rm", "-f", "a6", "b6")
    assert netbay_network(host, docker_id)["Containers"] == {}
