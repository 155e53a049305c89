"""The default bridge through the CLI and the daemon: netbay0 is not made when the daemon
starts (a host where netbay only serves other runtimes keeps 172.17.0.0/16 free), it comes
with the first container on the `bridge` network, with real packets, and goes with the
last one; `bridge` is listed and inspected all along."""

from __future__ import annotations

import json
from typing import Any

import pytest

from helpers import Env, sh

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]


def netbay0() -> dict[str, Any] | None:
    """netbay0 as `ip -j addr` shows it; None if there is no such link."""
    shown = sh("ip -j addr show dev netbay0", check=False)
    return json.loads(shown.stdout)[0] if shown.returncode == 0 else None


def routes_172_17() -> list[Any]:
    return list(json.loads(sh("ip -j route show 172.17.0.0/16").stdout))


def test_netbay0_comes_with_the_first_container_and_goes_with_the_last(env: Env) -> None:
    env.run("daemon", "start")
    assert netbay0() is None and routes_172_17() == []
    names = [json.loads(line)["Name"] for line in env.run(
        "network", "ls", "--format", "json").stdout.splitlines()]
    assert names[:3] == ["bridge", "host", "none"]
    bridge = env.json("network", "inspect", "bridge")[0]
    assert bridge["IPAM"]["Config"] == [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]
    assert bridge["Options"]["com.docker.network.bridge.name"] == "netbay0"
    assert env.run("system", "audit").stdout == ""

    env.run("run", "-d", "--name", "a", "--", "sleep", "inf")  # the default network
    link = netbay0()
    assert link is not None
    assert [(a["local"], a["prefixlen"]) for a in link["addr_info"]
            if a["family"] == "inet"] == [("172.17.0.1", 16)]
    assert json.loads(sh("ip -j -d link show dev netbay0").stdout)[0]["linkinfo"][
        "info_kind"] == "bridge"
    ping = env.in_container("a", "ping", "-c", "1", "-W", "2", "172.17.0.1", check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    env.run("run", "-d", "--name", "b", "--", "sleep", "inf")
    env.run("rm", "-f", "a")
    assert netbay0() is not None  # b is still on it
    env.run("rm", "-f", "b")
    assert netbay0() is None and routes_172_17() == []
    assert "netbay0" not in sh("nft list set inet netbay bridges").stdout
    assert env.run("system", "audit").stdout == ""
