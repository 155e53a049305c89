"""The user's scenario through the CLI and the daemon, with real packets."""

from __future__ import annotations

import json
import subprocess

import pytest

from helpers import Env, link_names

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]


def ping(env: Env, name: str, address: str) -> subprocess.CompletedProcess[str]:
    return env.in_container(name, "ping", "-c", "1", "-W", "2", address, check=False)


def test_two_containers_ping_each_other_and_the_host_pings_them(env: Env) -> None:
    env.run("network", "create", "asgard")
    env.run("run", "-d", "--name", "env1", "--network", "asgard", "--", "sleep", "infinity")
    env.run("run", "-d", "--name", "env2", "--network", "asgard", "--", "sleep", "infinity")
    net = env.json("network", "inspect", "asgard")[0]
    members = {c["Name"]: c for c in net["Containers"].values()}
    assert set(members) == {"env1", "env2"}
    ip1 = members["env1"]["IPv4Address"].split("/")[0]
    ip2 = members["env2"]["IPv4Address"].split("/")[0]
    assert ping(env, "env1", ip2).returncode == 0
    assert ping(env, "env2", ip1).returncode == 0
    # The host reaches them over the bridge, whose address is the gateway.
    gateway = net["IPAM"]["Config"][0]["Gateway"]
    assert subprocess.run(["ping", "-c", "1", "-W", "2", ip1], capture_output=True).returncode == 0
    bridge = "br-" + net["Id"][:12]
    route = env.in_container("env1", "ip", "-j", "route").stdout
    assert {"dst": "default", "gateway": gateway, "dev": "eth0"}.items() <= json.loads(route)[
        0
    ].items()
    assert bridge in link_names()
    # inspect matches the kernel: address and MAC of eth0 inside env1
    addr = json.loads(env.in_container("env1", "ip", "-j", "addr", "show", "eth0").stdout)[0]
    assert addr["address"] == members["env1"]["MacAddress"]
    assert (
        f"{addr['addr_info'][0]['local']}/{addr['addr_info'][0]['prefixlen']}"
        == members["env1"]["IPv4Address"]
    )
    assert (
        env.run("exec", "env1", "--", "hostname").stdout.strip()
        == env.json("inspect", "env1")[0]["Config"]["Hostname"]
    )


def test_static_ip_is_honoured(env: Env) -> None:
    env.run("network", "create", "--subnet", "10.77.0.0/24", "--gateway", "10.77.0.254", "asgard")
    env.run(
        "run",
        "-d",
        "--name",
        "env1",
        "--network",
        "asgard",
        "--ip",
        "10.77.0.8",
        "--",
        "sleep",
        "infinity",
    )
    out = json.loads(env.in_container("env1", "ip", "-j", "-4", "addr", "show", "eth0").stdout)
    assert out[0]["addr_info"][0]["local"] == "10.77.0.8"
    assert (
        env.json("inspect", "env1")[0]["NetworkSettings"]["Networks"]["asgard"]["IPAddress"]
        == "10.77.0.8"
    )
    route = json.loads(env.in_container("env1", "ip", "-j", "route").stdout)
    assert route[0]["gateway"] == "10.77.0.254"
