"""The real docker client against netbayd's Docker-Engine-compatible API, IPv6 (issue 17):
`docker network create --ipv6`, `docker network connect --ip6`, inspect; every outcome
checked on netbay's record and on the kernel (the bridge's and the containers' addresses,
and a ping between two containers over IPv6).

The client runs with `-H unix://<the test's socket>` and a throwaway DOCKER_CONFIG, inside
the test's own network namespace; NETBAY_DOCKER picks another client binary (e.g. Debian's
docker.io 20.10 one)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import Env, link_names

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

DOCKER = os.environ.get("NETBAY_DOCKER") or shutil.which("docker")
if DOCKER is None:
    pytestmark.append(pytest.mark.skip(reason="no docker client binary on PATH"))

Docker = Callable[..., subprocess.CompletedProcess[str]]
V6 = "fd12:3456::/64"


@pytest.fixture
def docker(env: Env, tmp_path: Path) -> Docker:
    """Runs the docker client against this test's netbayd (started through the netbay CLI)."""
    env.run("network", "ls")  # autostarts the daemon in the test's namespace
    config = tmp_path / "docker-config"
    config.mkdir()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    environ["DOCKER_CONFIG"] = str(config)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert DOCKER is not None
        result = subprocess.run([DOCKER, "-H", f"unix://{env.paths.socket}", *args],
                                capture_output=True, text=True, timeout=60, env=environ)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr}")
        return result

    return run


def addresses6(dev: str, enter: tuple[str, ...] = ()) -> list[tuple[str, int]]:
    """DEV's global IPv6 addresses, as the kernel lists them."""
    out = subprocess.run([*enter, "ip", "-j", "-6", "addr", "show", "dev", dev],
                         capture_output=True, text=True, check=True).stdout
    return [(a["local"], a["prefixlen"]) for link in json.loads(out)
            for a in link["addr_info"] if a.get("scope") == "global"]


def inspect(docker: Docker, name: str) -> Any:
    return json.loads(docker("network", "inspect", name).stdout)[0]


def test_create_dual_stack_and_ipv6_only_networks(env: Env, docker: Docker) -> None:
    created = docker("network", "create", "--ipv6", "--subnet", "10.60.0.0/24",
                     "--subnet", V6, "--gateway", "fd12:3456::fe", "net6").stdout.strip()
    net = inspect(docker, "net6")
    assert (net["Id"], net["EnableIPv6"], net["EnableIPv4"]) == (created, True, True)
    assert net["IPAM"]["Config"] == [{"Subnet": "10.60.0.0/24", "Gateway": "10.60.0.1"},
                                     {"Subnet": V6, "Gateway": "fd12:3456::fe"}]
    bridge = "br-" + created[:12]
    assert addresses6(bridge) == [("fd12:3456::fe", 64)]
    # --ipv6 with no subnet: the IPv4 default pool and a /64 of this host's ULA /48
    docker("network", "create", "--ipv6", "auto6")
    config = inspect(docker, "auto6")["IPAM"]["Config"]
    assert [":" in c["Subnet"] for c in config] == [False, True]
    assert config[1]["Subnet"].startswith("fd") and config[1]["Subnet"].endswith("::/64")
    # the docker client's table and template fields
    rows = [json.loads(line) for line in docker("network", "ls", "--format", "{{json .}}")
            .stdout.splitlines()]
    assert {r["Name"]: r["IPv6"] for r in rows} == {
        "net6": "true", "auto6": "true", "bridge": "false", "host": "false", "none": "false"}
    # netbay's own CLI agrees
    assert env.json("network", "inspect", "net6")[0]["EnableIPv6"] is True


def test_containers_get_ipv6_through_the_api_and_talk(env: Env, docker: Docker) -> None:
    docker("network", "create", "--ipv6", "--subnet", "10.60.0.0/24", "--subnet", V6, "net6")
    docker("network", "create", "--ipv6", "--subnet", "fd12:9::/64", "other6")
    for name, ip6 in (("c1", "fd12:3456::10"), ("c2", "fd12:3456::11")):
        env.run("run", "-d", "--name", name, "--network", "net6", "--ip6", ip6, "--",
                "sleep", "infinity")
    docker("network", "connect", "--ip6", "fd12:9::20", "other6", "c1")

    members = {m["Name"]: m for m in inspect(docker, "net6")["Containers"].values()}
    assert {n: (m["IPv4Address"], m["IPv6Address"]) for n, m in members.items()} == {
        "c1": ("10.60.0.2/24", "fd12:3456::10/64"), "c2": ("10.60.0.3/24", "fd12:3456::11/64")}
    [member] = inspect(docker, "other6")["Containers"].values()
    assert (member["Name"], member["IPv6Address"]) == ("c1", "fd12:9::20/64")

    settings = env.json("inspect", "c1")[0]["NetworkSettings"]["Networks"]
    assert (settings["other6"]["GlobalIPv6Address"], settings["other6"]["IPv6Gateway"],
            settings["other6"]["IPAMConfig"]) == (
        "fd12:9::20", "fd12:9::1", {"IPv6Address": "fd12:9::20"})
    # the kernel: each address on the container's link, and IPv6 traffic between them
    interfaces = {settings[n]["Interface"] for n in ("net6", "other6")}
    shown = env.in_container("c1", "ip", "-6", "-o", "addr", "show").stdout
    assert "inet6 fd12:3456::10/64" in shown and "inet6 fd12:9::20/64" in shown, shown
    assert len(interfaces) == 2
    ping = env.in_container("c1", "ping", "-6", "-c", "1", "-W", "5", "fd12:3456::11",
                            check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    docker("network", "disconnect", "other6", "c1")
    assert inspect(docker, "other6")["Containers"] == {}
    assert "fd12:9::20" not in env.in_container("c1", "ip", "-6", "-o", "addr").stdout


def test_ipv6_refusals_come_back_as_docker_error_responses(env: Env, docker: Docker) -> None:
    docker("network", "create", "--ipv6", "--subnet", V6, "net6")
    docker("network", "create", "--subnet", "10.62.0.0/24", "v4only")
    env.run("run", "-d", "--name", "c1", "--", "sleep", "infinity")  # on the default bridge
    before = (link_names(), env.run("network", "ls", "-q").stdout)
    for args, message in (
        (("network", "create", "--ipv6", "--subnet", "fd12:3456::/80", "x"),
         "invalid subnet 'fd12:3456::/80': overlaps fd12:3456::/64 of network net6"),
        (("network", "create", "--ipv6", "--subnet", "fd13::/64", "--gateway", "fd14::1", "x"),
         "no matching subnet for gateway fd14::1"),  # the client's own check
        (("network", "connect", "--ip6", "fd99::1", "net6", "c1"),
         "invalid ip6 'fd99::1': not inside the network's subnets (fd12:3456::/64)"),
        (("network", "connect", "--ip6", "fd12:3456::5", "v4only", "c1"),
         "invalid ip6 'fd12:3456::5': network v4only has no IPv6 subnet"),
    ):
        result = docker(*args, check=False)
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr)
    assert (link_names(), env.run("network", "ls", "-q").stdout) == before



def test_docker_run_detached_with_ip6(env: Env, docker: Docker) -> None:
    """`docker run -d --network net6 --ip6 ...` through netbay's API (the image is not
    netbay's: the command runs on the host's filesystem, as `netbay run`'s)."""
    docker("network", "create", "--ipv6", "--subnet", "10.64.0.0/24", "--subnet", V6, "net6")
    cid = docker("run", "-d", "--name", "d1", "--network", "net6", "--ip6", "fd12:3456::33",
                 "--network-alias", "web", "localhost/any", "sleep", "infinity").stdout.strip()
    out = docker("container", "inspect", "-f", "{{json .NetworkSettings.Networks.net6}}",
                 "d1").stdout
    settings = json.loads(out)
    assert (settings["IPAddress"], settings["GlobalIPv6Address"], settings["IPv6Gateway"],
            settings["GlobalIPv6PrefixLen"], settings["IPAMConfig"], settings["Aliases"]) == (
        "10.64.0.2", "fd12:3456::33", "fd12:3456::1", 64, {"IPv6Address": "fd12:3456::33"},
        ["web"])
    record = env.json("inspect", "d1")[0]
    assert (record["Id"], record["State"]["Running"]) == (cid, True)
    shown = env.in_container("d1", "ip", "-6", "-o", "addr", "show", "dev", "eth0").stdout
    assert "inet6 fd12:3456::33/64" in shown
