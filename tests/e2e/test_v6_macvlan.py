"""A dual-stack macvlan network through the CLI and the daemon, with real packets (this
kernel has macvlan; ipvlan's IPv6 is in tests/vm/test_v6_ipvlan.py).

The parent phys0 is the host end of a veth; on its other end a "LAN" namespace is a switch
holding the gateways 192.168.129.1 and 2001:db8:29::1, with another machine (.50, ::50)
behind it. The LAN's addresses are static (nodad), as netbay's are: nothing waits.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest

from helpers import Env, link_names, snapshot
from lans import Machine, Site, host_ip, link_details
from netbay import ContainerSpec, Host, NetworkSpec, SubnetConfig

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

SUBNET, GATEWAY = "192.168.129.0/24", "192.168.129.1"
SUBNET6, GATEWAY6, OTHER6 = "2001:db8:29::/64", "2001:db8:29::1", "2001:db8:29::50"
DUAL = ("network", "create", "-d", "macvlan", "--ipv6", "--subnet", SUBNET, "--gateway",
        GATEWAY, "--subnet", SUBNET6, "--gateway", GATEWAY6, "-o", "parent=phys0")


@pytest.fixture
def lan(tmp_path: Path, host_ns: Path) -> Iterator[Machine]:
    """The switch (its bridge sw0 holds both gateways), with the other machine behind it."""
    site = Site(tmp_path)
    try:
        switch, other = site.machine("switch"), site.machine("other")
        site.cable("phys0", switch, "lan0")
        switch.ip(
            "link add sw0 type bridge", "link set sw0 up", "link set lan0 master sw0",
            f"addr add {GATEWAY}/24 dev sw0", f"addr add {GATEWAY6}/64 dev sw0 nodad",
            f"link add m0 type veth peer name eth0 netns {other.path}",
            "link set m0 master sw0", "link set m0 up",
        )
        other.ip("addr add 192.168.129.50/24 dev eth0", f"addr add {OTHER6}/64 dev eth0 nodad",
                 "link set eth0 up", f"route add default via {GATEWAY}",
                 f"route add ::/0 via {GATEWAY6}")
        yield other
    finally:
        site.close()


def run(env: Env, name: str, *extra: str, network: str = "dual") -> None:
    env.run("run", "-d", "--name", name, "--network", network, *extra, "--", "sleep", "infinity")


def ping(env: Env, name: str, address: str) -> bool:
    result = env.in_container(name, "ping", "-c", "1", "-W", "2", address, check=False)
    return result.returncode == 0


def inside(env: Env, name: str, *argv: str) -> Any:
    return json.loads(env.in_container(name, "ip", "-j", *argv).stdout)


def ipv6_conf(env: Env, name: str, key: str) -> str:
    return env.in_container(name, "cat", f"/proc/sys/net/ipv6/conf/eth0/{key}").stdout.strip()


def test_a_dual_stack_macvlan_network_on_the_lan(env: Env, lan: Machine) -> None:
    env.run(*DUAL, "dual")
    run(env, "env1", "--ip6", "2001:db8:29::8")
    run(env, "env2")  # IPAM's choice of each family: the lowest free after the gateway

    eth0 = inside(env, "env1", "-d", "addr", "show", "eth0")[0]
    assert eth0["linkinfo"]["info_kind"] == "macvlan"
    assert eth0["address"] != link_details("phys0")["address"]
    global6 = [a for a in eth0["addr_info"] if a["family"] == "inet6" and a["scope"] == "global"]
    assert [(a["local"], a["prefixlen"]) for a in global6] == [("2001:db8:29::8", 64)]
    assert not global6[0].get("tentative") and not global6[0].get("dadfailed")
    # static IPv6: no router advertisements, no autoconfiguration, no DAD
    assert [ipv6_conf(env, "env1", k) for k in ("accept_ra", "autoconf", "accept_dad")] == [
        "0", "0", "0"]
    assert inside(env, "env1", "-6", "route", "show", "default")[0]["gateway"] == GATEWAY6
    assert inside(env, "env1", "route", "show", "default")[0]["gateway"] == GATEWAY
    two = [a["local"] for a in inside(env, "env2", "addr", "show", "eth0")[0]["addr_info"]
           if a["scope"] == "global"]
    assert two == ["192.168.129.3", "2001:db8:29::2"]  # env1 holds .2 (and ::8)
    members = {c["Name"]: c for c in env.json("network", "inspect", "dual")[0][
        "Containers"].values()}
    assert members["env1"]["IPv6Address"] == "2001:db8:29::8/64"

    # out over v6: the gateway, the other machine on the LAN, the sibling (bridge mode)
    assert ping(env, "env1", GATEWAY6)
    assert ping(env, "env1", OTHER6)
    assert ping(env, "env1", "2001:db8:29::2")
    assert ping(env, "env1", GATEWAY)  # IPv4 as before
    # in over v6: the LAN reaches the container, and knows it under its own MAC
    assert _lan_ping(lan, ":8")
    found = json.loads(lan.sh("ip -j -6 neigh show 2001:db8:29::8 dev eth0"))
    assert found and found[0]["lladdr"] == eth0["address"]

    # no firewall rules for either family
    nft = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True)
    assert "2001:db8:29" not in nft.stdout and "192.168.129" not in nft.stdout

    for name in ("env1", "env2"):
        env.run("rm", "-f", name)
    env.run("network", "rm", "dual")
    assert "phys0" in link_names()


def _lan_ping(lan: Machine, suffix: str) -> bool:
    """ping from the LAN's other machine to 2001:db8:29:SUFFIX."""
    address = "2001:db8:29:" + suffix
    result = subprocess.run(["nsenter", f"--net={lan.path}", "ping", "-c", "1", "-W", "2",
                             address], capture_output=True)
    return result.returncode == 0


def test_an_ipv4_endpoint_keeps_ipv6_off_and_ipv6_only_works(env: Env, lan: Machine) -> None:
    env.run("network", "create", "-d", "macvlan", "--subnet", SUBNET, "-o", "parent=phys0",
            "flat")
    run(env, "v4", network="flat")
    assert ipv6_conf(env, "v4", "disable_ipv6") == "1"
    env.run("rm", "-f", "v4")
    env.run("network", "rm", "flat")

    env.run("network", "create", "-d", "macvlan", "--ipv6", "--ipv4=false", "--subnet", SUBNET6,
            "--gateway", GATEWAY6, "-o", "parent=phys0", "only6")
    run(env, "env6", network="only6")
    assert [a["family"] for a in inside(env, "env6", "addr", "show", "eth0")[0]["addr_info"]
            if a["scope"] == "global"] == ["inet6"]
    assert inside(env, "env6", "-6", "route", "show", "default")[0]["gateway"] == GATEWAY6
    assert inside(env, "env6", "-4", "route", "show") == []
    assert ping(env, "env6", OTHER6)
    assert _lan_ping(lan, ":2")
    env.run("rm", "-f", "env6")
    env.run("network", "rm", "only6")


def test_an_ip6_outside_the_subnet_is_refused_naming_it(env: Env, lan: Machine) -> None:
    env.run(*DUAL, "dual")
    before = snapshot(env.paths)
    result = env.run("run", "-d", "--name", "bad", "--network", "dual", "--ip6",
                     "2001:db8:30::5", "--", "sleep", "infinity", check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: invalid ip6 '2001:db8:30::5': not inside the network's subnets "
        f"({SUBNET6})"]
    assert snapshot(env.paths) == before
    env.run("network", "rm", "dual")


def test_the_host_shim_reaches_the_containers_over_ipv6_too(env: Env, lan: Machine) -> None:
    env.run(*DUAL, "--ip-range", "192.168.129.64/27", "--ip-range", "2001:db8:29::/80",
            "-o", "host_link=true", "shimmed")
    run(env, "env1", network="shimmed")
    net = env.json("network", "inspect", "shimmed")[0]
    assert [c["AuxiliaryAddresses"] for c in net["IPAM"]["Config"]] == [
        {"host_link": "192.168.129.254"}, {"host_link": "2001:db8:29:0:ffff:ffff:ffff:fffe"}]
    shim = "nbs" + net["Id"][:12]
    held = json.loads(subprocess.run(["ip", "-j", "addr", "show", "dev", shim],
                                     capture_output=True, text=True, check=True).stdout)[0]
    assert {(a["local"], a["prefixlen"]) for a in held["addr_info"] if a["scope"] == "global"} \
        == {("192.168.129.254", 32), ("2001:db8:29:0:ffff:ffff:ffff:fffe", 128)}
    routes = json.loads(subprocess.run(["ip", "-j", "-6", "route", "show", "2001:db8:29::/80"],
                                       capture_output=True, text=True, check=True).stdout)
    assert [(r["dst"], r["dev"]) for r in routes] == [("2001:db8:29::/80", shim)]
    host = subprocess.run(["ping", "-c", "1", "-W", "2", "2001:db8:29::2"], capture_output=True)
    assert host.returncode == 0
    assert ping(env, "env1", GATEWAY6)

    env.run("rm", "-f", "env1")
    env.run("network", "rm", "shimmed")
    assert shim not in link_names()
    assert "2001:db8:29::/80" not in subprocess.run(["ip", "-6", "route"], capture_output=True,
                                                    text=True).stdout


def test_the_reconciler_keeps_the_shims_ipv6_address(host: Host, lan: Machine) -> None:
    subnets = (SubnetConfig(ip_network(SUBNET), ip_range=ip_network("192.168.129.64/27")),
               SubnetConfig(ip_network(SUBNET6), ip_range=ip_network("2001:db8:29::/80")))
    made = host.create_network(NetworkSpec("shimmed", "macvlan", subnets, ipv6=True,
                                           options={"parent": "phys0", "host_link": "true"}))
    host.create_container(ContainerSpec(("sleep", "infinity"), "env1"))
    shim = "nbs" + made.id[:12]
    first = host.reconcile(full=True)
    assert (first.repaired, first.failed, first.waiting) == ([], [], [])  # nothing drifted
    assert host.audit() == []

    host_ip(f"addr del 2001:db8:29:0:ffff:ffff:ffff:fffe/128 dev {shim}")
    repaired = host.reconcile(full=True).repaired
    assert [d.subject for d in repaired] == [
        f"2001:db8:29:0:ffff:ffff:ffff:fffe/128 on {shim}"]
    held = json.loads(subprocess.run(["ip", "-j", "-6", "addr", "show", "dev", shim],
                                     capture_output=True, text=True).stdout)[0]["addr_info"]
    assert [a["local"] for a in held if a.get("scope") == "global"] == [
        "2001:db8:29:0:ffff:ffff:ffff:fffe"]

    host_ip(f"route del 2001:db8:29::/80 dev {shim}")
    repaired = host.reconcile(full=True).repaired
    assert [d.subject for d in repaired] == [f"route 2001:db8:29::/80 dev {shim}"]
    routes = json.loads(subprocess.run(["ip", "-j", "-6", "route", "show", "2001:db8:29::/80"],
                                       capture_output=True, text=True, check=True).stdout)
    assert [(r["dst"], r["dev"]) for r in routes] == [("2001:db8:29::/80", shim)]
    assert host.reconcile(full=True).repaired == []
    host.remove_container("env1", force=True)
    host.remove_network("shimmed")
