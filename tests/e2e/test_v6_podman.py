"""Podman 4.3.1 with IPv6 networks through netbay's netavark-compatible executable, inside the
test's throwaway host namespace: a dual-stack network (`--ipv6`, a subnet of each family)
gives each container both addresses and both default routes, podman learns both from the
status block, containers ping their IPv6 gateway and each other over IPv6; an IPv6-only
network too; nothing is left after rm."""

from __future__ import annotations

import ipaddress
import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import podman_env
from helpers import Env, link_names, poll, sh, wait_until
from runtimes import NetavarkCli

pytestmark = [pytest.mark.kernel, pytest.mark.e2e, pytest.mark.shared_sys]
HTTPD = ("httpd", "-f", "-p", "80", "-h", "/www")
PAGE = "hello from podman via netbay\n"


@pytest.fixture
def podman(env: Env, tmp_path: Path) -> Iterator[podman_env.Podman]:
    why = podman_env.missing()
    if why:
        pytest.skip(why)
    bin_dir = tmp_path / "bin"
    NetavarkCli(bin_dir, env.environ)
    env.run("daemon", "start")
    made = podman_env.Podman(tmp_path, env.environ, "netavark", bin_dir, ["10.90.6.1"])
    try:
        made.import_image()
        yield made
    finally:
        made.close()


def netbay_state(env: Env) -> dict[str, Any]:
    networks = [json.loads(line)["Name"] for line in
                env.run("network", "ls", "--format", "json").stdout.splitlines()]
    return {
        "networks": sorted(networks),
        "containers": env.run("ps", "-a", "-q").stdout.split(),
        "links": sorted(link_names()),
        "nft": sh("nft list ruleset").stdout,
    }


def settings(podman: podman_env.Podman, name: str, network: str) -> dict[str, Any]:
    found: dict[str, Any] = podman.json("inspect", name)[0]["NetworkSettings"]["Networks"][
        network]
    return found


def container_addresses(podman: podman_env.Podman, name: str, family: int) -> list[str]:
    """eth0's global addresses of FAMILY, as busybox's ip shows them inside the container."""
    out = podman.exec(name, "ip", f"-{family}", "addr", "show", "dev", "eth0").stdout
    return [m for m, scope in re.findall(r"inet6? (\S+) .*?scope (\w+)", out)
            if scope == "global"]


def default_route6(podman: podman_env.Podman, name: str) -> str:
    return podman.exec(name, "ip", "-6", "route", "show", "default").stdout.strip()


def ping(podman: podman_env.Podman, name: str, target: str) -> None:
    """TARGET answers NAME over IPv6 (a new address may be tentative for a moment)."""
    def once() -> bool:
        out = podman.exec(name, "ping", "-6", "-c", "1", "-W", "1", target, check=False)
        return out.returncode == 0

    wait_until(once, 10, f"an answer from {target} to {name}", interval=0.2)


def fetch(url: str, deadline: float = 15) -> str | None:
    """The page at URL, once it answers within DEADLINE seconds; None if it never does."""
    def page() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return str(response.read().decode())
        except OSError:
            return None  # not published (yet), or the server is still starting

    return poll(page, deadline, interval=0.2)


def test_podman_dual_stack_network(env: Env, podman: podman_env.Podman) -> None:
    before = netbay_state(env)
    podman.run("network", "create", "--ipv6", "--subnet", "10.90.6.0/24",
               "--subnet", "fd00:90:6::/64", "nbdual")
    defined = podman.json("network", "inspect", "nbdual")[0]
    assert defined["ipv6_enabled"] is True
    assert [s["subnet"] for s in defined["subnets"]] == ["10.90.6.0/24", "fd00:90:6::/64"]
    # host addresses of each family (podman holds the ports it publishes open on them)
    sh("ip addr add 198.51.100.6/24 dev lo && ip addr add 2001:db8:106::1/64 dev lo nodad")
    podman.start("web", "--network", "nbdual", "--cap-add", "NET_RAW", "-p", "18406:80",
                 "-p", "[::]:18407:80", "-p", "198.51.100.6:18408:80", command=HTTPD)
    podman.start("client", "--network", "nbdual", "--cap-add", "NET_RAW")
    web, client = settings(podman, "web", "nbdual"), settings(podman, "client", "nbdual")
    # podman's view: what netbay's status block told it, both families
    for seen in (web, client):
        assert ipaddress.ip_address(seen["IPAddress"]) in ipaddress.ip_network("10.90.6.0/24")
        assert ipaddress.ip_address(seen["GlobalIPv6Address"]) in ipaddress.ip_network(
            "fd00:90:6::/64")
        assert (seen["Gateway"], seen["IPv6Gateway"]) == ("10.90.6.1", "fd00:90:6::1")
        assert seen["GlobalIPv6PrefixLen"] == 64
    # the kernel's view, inside the containers
    web6 = web["GlobalIPv6Address"]
    assert container_addresses(podman, "web", 6) == [f"{web6}/64"]
    assert container_addresses(podman, "web", 4) == [f"{web['IPAddress']}/24"]
    assert "default via fd00:90:6::1 dev eth0" in default_route6(podman, "client")
    ping(podman, "client", "fd00:90:6::1")
    ping(podman, "client", web6)
    # netbay's record: one dual-stack network, both leases of each container
    netbay_net = env.json("network", "inspect", "nbdual")[0]
    assert [c["Subnet"] for c in netbay_net["IPAM"]["Config"]] == ["10.90.6.0/24",
                                                                   "fd00:90:6::/64"]
    assert sorted(c["IPv6Address"] for c in netbay_net["Containers"].values()) == sorted(
        [f"{web6}/64", f"{client['GlobalIPv6Address']}/64"])
    # published ports: host_ip none (podman sends none for 0.0.0.0 too) on both families,
    # :: on IPv6 ones only, an IPv4 address on that address only
    assert fetch("http://[2001:db8:106::1]:18406/") == PAGE
    assert fetch("http://198.51.100.6:18406/") == PAGE
    assert fetch("http://[2001:db8:106::1]:18407/") == PAGE
    assert fetch("http://198.51.100.6:18408/") == PAGE
    assert fetch("http://198.51.100.6:18407/", 0.5) is None
    assert fetch("http://[2001:db8:106::1]:18408/", 0.5) is None
    # network reload: torn down and set up again, the same addresses
    podman.run("network", "reload", "--all")
    assert settings(podman, "web", "nbdual")["GlobalIPv6Address"] == web6
    ping(podman, "client", web6)
    assert fetch("http://[2001:db8:106::1]:18407/") == PAGE
    podman.run("rm", "-f", "-t", "0", "web", "client")
    assert netbay_state(env) == before
    assert "fd00:90:6::" not in sh("ip -6 route show").stdout
    podman.run("network", "rm", "nbdual")


def test_podman_ipv6_only_network(env: Env, podman: podman_env.Podman) -> None:
    before = netbay_state(env)
    # an IPv6 subnet alone (with --ipv6 podman 4.3 adds an IPv4 subnet of its own)
    podman.run("network", "create", "--subnet", "fd00:90:7::/64", "nbv6only")
    defined = podman.json("network", "inspect", "nbv6only")[0]
    assert defined["ipv6_enabled"] is True
    assert [s["subnet"] for s in defined["subnets"]] == ["fd00:90:7::/64"]
    podman.start("a", "--network", "nbv6only", "--cap-add", "NET_RAW")
    podman.start("b", "--network", "nbv6only", "--cap-add", "NET_RAW")
    a, b = settings(podman, "a", "nbv6only"), settings(podman, "b", "nbv6only")
    assert a["IPAddress"] == "" and a["IPv6Gateway"] == "fd00:90:7::1"
    assert container_addresses(podman, "a", 4) == []
    assert container_addresses(podman, "a", 6) == [f"{a['GlobalIPv6Address']}/64"]
    ping(podman, "a", "fd00:90:7::1")
    ping(podman, "a", b["GlobalIPv6Address"])
    netbay_net = env.json("network", "inspect", "nbv6only")[0]
    assert [c["Subnet"] for c in netbay_net["IPAM"]["Config"]] == ["fd00:90:7::/64"]
    podman.run("rm", "-f", "-t", "0", "a", "b")
    assert netbay_state(env) == before
    podman.run("network", "rm", "nbv6only")
