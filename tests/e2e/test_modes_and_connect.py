"""host and none modes, and connect/disconnect on a running container."""

from __future__ import annotations

import json
import os

import pytest

from helpers import Env, link_names

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]


def links_inside(env: Env, name: str) -> set[str]:
    out = env.in_container(name, "ip", "-j", "link").stdout
    return {link["ifname"] for link in json.loads(out)}


def test_host_mode_sees_the_hosts_interfaces(env: Env) -> None:
    env.run("run", "-d", "--name", "h", "--network", "host", "--", "sleep", "infinity")
    assert links_inside(env, "h") == link_names()
    pid = env.host_pid(env.json("inspect", "h")[0]["State"]["Pid"])
    assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/thread-self/ns/net")
    members = env.json("network", "inspect", "host")[0]["Containers"]
    assert [m["Name"] for m in members.values()] == ["h"]


def test_none_mode_has_only_loopback(env: Env) -> None:
    env.run("run", "-d", "--name", "n", "--network", "none", "--", "sleep", "infinity")
    out = json.loads(env.in_container("n", "ip", "-j", "link").stdout)
    assert [(link["ifname"], "UP" in link["flags"]) for link in out] == [("lo", True)]


def test_connect_and_disconnect_a_running_container(env: Env) -> None:
    env.run("network", "create", "--subnet", "10.61.0.0/24", "front")
    env.run("network", "create", "--subnet", "10.62.0.0/24", "back")
    env.run("run", "-d", "--name", "app", "--network", "front", "--", "sleep", "infinity")
    env.run("run", "-d", "--name", "db", "--network", "back", "--", "sleep", "infinity")
    assert links_inside(env, "app") == {"lo", "eth0"}

    env.run("network", "connect", "--ip", "10.62.0.50", "back", "app")
    assert links_inside(env, "app") == {"lo", "eth0", "eth1"}
    addrs = json.loads(env.in_container("app", "ip", "-j", "-4", "addr", "show", "eth1").stdout)
    assert addrs[0]["addr_info"][0]["local"] == "10.62.0.50"
    db_ip = env.json("inspect", "db")[0]["NetworkSettings"]["Networks"]["back"]["IPAddress"]
    assert env.in_container("app", "ping", "-c1", "-W2", db_ip, check=False).returncode == 0
    # the default route stays with the first network
    routes = json.loads(env.in_container("app", "ip", "-j", "route").stdout)
    assert [r for r in routes if r["dst"] == "default"][0]["gateway"] == "10.61.0.1"
    hosts = env.in_container("app", "cat", "/etc/hosts").stdout
    assert "10.62.0.50\t" in hosts

    env.run("network", "disconnect", "back", "app")
    assert links_inside(env, "app") == {"lo", "eth0"}
    assert "app" not in {
        m["Name"] for m in env.json("network", "inspect", "back")[0]["Containers"].values()
    }
    assert "10.62.0.50" not in env.in_container("app", "cat", "/etc/hosts").stdout
    back_bridge = "br-" + env.json("network", "inspect", "back")[0]["Id"][:12]
    assert env.json("inspect", "app")[0]["NetworkSettings"]["Networks"].keys() == {"front"}
    assert back_bridge in link_names()


def test_container_files_hostname_and_lo(env: Env) -> None:
    env.run("network", "create", "asgard")
    env.run(
        "run",
        "-d",
        "--name",
        "env1",
        "--hostname",
        "odin",
        "--network",
        "asgard",
        "--dns",
        "10.99.0.53",
        "--dns-search",
        "example.test",
        "--add-host",
        "db.test:10.1.2.3",
        "--",
        "sleep",
        "infinity",
    )
    assert env.in_container("env1", "hostname").stdout.strip() == "odin"
    resolv = env.in_container("env1", "cat", "/etc/resolv.conf").stdout
    # netbay's DNS server on the network's gateway, forwarding to the --dns server
    gateway = env.json("network", "inspect", "asgard")[0]["IPAM"]["Config"][0]["Gateway"]
    assert f"nameserver {gateway}\n" in resolv and "search example.test" in resolv
    assert "forwarded to: 10.99.0.53" in resolv
    hosts = env.in_container("env1", "cat", "/etc/hosts").stdout
    assert "10.1.2.3\tdb.test" in hosts and "odin env1" in hosts
    lo = json.loads(env.in_container("env1", "ip", "-j", "link", "show", "lo").stdout)[0]
    assert "UP" in lo["flags"]
    # the host's own files are untouched
    with open("/etc/hostname") as f:
        assert "odin" not in f.read()


def test_host_resolver_on_loopback_is_left_out(env: Env) -> None:
    """Without a bridge network (none mode) the container asks the host's resolvers itself:
    a loopback one would be its own loopback, so it is left out."""
    env.run("run", "-d", "--name", "r", "--network", "none", "--", "sleep", "infinity")
    resolv = env.in_container("r", "cat", "/etc/resolv.conf").stdout
    assert "127.0.0.53" not in resolv
    assert "nameserver 10.99.99.53" in resolv


def test_foreground_run_returns_the_exit_code_and_rm_cleans_up(env: Env) -> None:
    result = env.run(
        "run", "--rm", "--name", "fg", "--", "sh", "-c", "ip -br link; exit 7", check=False
    )
    assert result.returncode == 7
    assert "eth0" in result.stdout
    assert env.run("ps", "-a", "-q").stdout.strip() == ""
    kept = env.run("run", "--name", "kept", "--", "true", check=False)
    assert kept.returncode == 0
    ps = env.run("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.split("\n")
    assert "kept Exited (0)" in ps
