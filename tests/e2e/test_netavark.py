"""netbay's netavark-compatible backend exec'd as podman execs it (the same JSON podman 4.3
sends), in the test's throwaway host namespace: the status block, packets, names through
netbay's DNS server, published ports, teardown from the record, rollback, macvlan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import PROBE, Env, link_names, sh, snapshot, tcp_answer, wait_until
from runtimes import NetavarkCli, netavark_options

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]
DNSPROBE = str(Path(__file__).parent.parent / "dnsprobe.py")
NET = {"subnet": "10.88.7.0/24", "gateway": "10.88.7.1", "device": "podman7"}


@pytest.fixture
def nv(env: Env, tmp_path: Path) -> NetavarkCli:
    return NetavarkCli(tmp_path / "bin", env.environ, env.enter)


def in_ns(path: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={path}", *cmd], capture_output=True, text=True,
                          timeout=30)


def resolve(ns: Path, server: str, name: str) -> list[str]:
    out = in_ns(ns, sys.executable, DNSPROBE, "query", server, name)
    return list(json.loads(out.stdout).get("answers", []))


def test_setup_status_packets_names_ports_and_teardown(
    env: Env, nv: NetavarkCli, namespaces: Any
) -> None:
    env.run("daemon", "start")
    before = snapshot(env.paths)
    web, db = namespaces("web"), namespaces("db")
    ports = [{"host_ip": "127.0.0.1", "container_port": 80, "host_port": 18300, "range": 1,
              "protocol": "tcp"}]
    web_opts = netavark_options("a" * 64, "web", [("podnet", {**NET, "ip": "10.88.7.2",
                                                              "aliases": ["www", "aaaaaaaaaaaa"]})],
                                ports)
    db_opts = netavark_options("b" * 64, "db", [("podnet", {**NET, "ip": "10.88.7.3"})])
    out = nv.setup(web, web_opts)
    assert out.code == 0, out
    block = out.json["podnet"]
    assert block["dns_server_ips"] == ["10.88.7.1"]
    assert block["dns_search_domains"] == []
    iface = block["interfaces"]["eth0"]
    assert iface["subnets"] == [{"ipnet": "10.88.7.2/24", "gateway": "10.88.7.1"}]
    link = json.loads(in_ns(web, "ip", "-j", "link", "show", "eth0").stdout)[0]
    assert link["address"] == iface["mac_address"]
    assert "UP" in json.loads(in_ns(web, "ip", "-j", "link", "show", "lo").stdout)[0]["flags"]
    assert "podman7" in link_names()
    assert nv.setup(db, db_opts).code == 0
    assert in_ns(db, "ping", "-c", "1", "-W", "2", "10.88.7.2").returncode == 0
    # names: the container name and the aliases, through netbay's DNS server on the gateway
    wait_until(lambda: resolve(db, "10.88.7.1", "web") == ["10.88.7.2"], 10,
               "netbay's DNS server to answer web with 10.88.7.2", interval=0.1)
    assert resolve(db, "10.88.7.1", "www") == ["10.88.7.2"]
    assert resolve(web, "10.88.7.1", "db") == ["10.88.7.3"]
    # the published port from the host
    server = subprocess.Popen(["nsenter", f"--net={web}", sys.executable, PROBE, "tcp-serve",
                               "80"])
    try:
        wait_until(lambda: "saw" in tcp_answer("127.0.0.1", 18300), 20,
                   "an answer from web's server through the published port 127.0.0.1:18300",
                   interval=0)
    finally:
        server.kill()
        server.wait()
    # podman's `network reload`: teardown then setup with the same addresses and MAC
    assert nv.teardown(web, web_opts).code == 0
    again = {**web_opts, "networks": {"podnet": {**web_opts["networks"]["podnet"],
                                                 "static_mac": iface["mac_address"]}}}
    redone = nv.setup(web, again)
    assert redone.code == 0 and redone.json["podnet"]["interfaces"]["eth0"] == iface
    for ns, opts in ((web, again), (db, db_opts)):
        done = nv.teardown(ns, opts)
        assert (done.code, done.stdout) == (0, ""), done
    assert nv.teardown(web, again).code == 0  # idempotent
    assert snapshot(env.paths)["links"] == before["links"]  # the bridge went with the last
    assert "18300" not in sh("nft list ruleset").stdout


def test_teardown_when_the_namespace_is_gone(env: Env, nv: NetavarkCli, tmp_path: Path) -> None:
    from netbay.kernel import netns

    env.run("daemon", "start")
    before = snapshot(env.paths)
    path = tmp_path / "ns-gone"
    netns.create(path)
    opts = netavark_options("c" * 64, "gone", [("podnet", {**NET, "ip": "10.88.7.9"})])
    assert nv.setup(path, opts).code == 0
    netns.delete(path)
    out = nv.teardown(path, opts)  # netavark#1451: netavark skips this; netbay finishes it
    assert (out.code, out.stdout) == (0, ""), out
    wait_until(lambda: snapshot(env.paths) == before, 5,
               "the links, namespaces and record to be as before the setup")


def test_setup_of_two_networks_is_undone_when_the_second_fails(
    env: Env, nv: NetavarkCli, namespaces: Any
) -> None:
    env.run("network", "create", "--subnet", "10.88.9.0/24", "taken")
    before = snapshot(env.paths)
    ns = namespaces("c")
    opts = netavark_options("d" * 64, "two", [
        ("podnet", {**NET, "ip": "10.88.7.4"}),
        ("taken", {"subnet": "10.88.9.0/24", "gateway": "10.88.9.1", "ip": "10.88.9.1"}),
    ])
    out = nv.setup(ns, opts)
    assert out.code == 1 and "reserved" in out.json["error"], out
    assert snapshot(env.paths) == before


def test_macvlan_network(env: Env, nv: NetavarkCli, namespaces: Any) -> None:
    sh("ip link add phys7 type veth peer name lanside7 && ip link set phys7 up "
       "&& ip link set lanside7 up")
    try:
        a, b = namespaces("a"), namespaces("b")
        spec = {"driver": "macvlan", "device": "phys7", "subnet": "10.89.7.0/24",
                "gateway": "10.89.7.1", "options": {"mode": "bridge"}}
        oa = netavark_options("e" * 64, "ma", [("macnet", {**spec, "ip": "10.89.7.2"})])
        ob = netavark_options("f" * 64, "mb", [("macnet", {**spec, "ip": "10.89.7.3"})])
        ra, rb = nv.setup(a, oa), nv.setup(b, ob)
        assert ra.code == rb.code == 0, (ra, rb)
        kind = json.loads(in_ns(a, "ip", "-j", "-d", "link", "show", "eth0").stdout)[0]
        assert kind["linkinfo"]["info_kind"] == "macvlan"
        assert ra.json["macnet"]["interfaces"]["eth0"]["subnets"][0]["ipnet"] == "10.89.7.2/24"
        assert in_ns(a, "ping", "-c", "1", "-W", "2", "10.89.7.3").returncode == 0
        assert nv.teardown(a, oa).code == nv.teardown(b, ob).code == 0
        assert "macnet" not in env.run("network", "ls").stdout
    finally:
        sh("ip link del phys7", check=False)
