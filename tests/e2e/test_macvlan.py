"""macvlan through the CLI and the daemon, with real packets (this kernel has macvlan).

The parent is the host end of a veth; on its other end a "LAN" namespace is a switch holding
the gateway 172.17.28.1, with another machine (172.17.28.50) behind it. The host itself is on
that LAN too (172.17.28.5), as the user's host is on its NIC's network: so netbay's default
bridge moves away from 172.17.0.0/16 and the user's subnet is free.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Env, link_names, snapshot
from lans import Machine, Site, host_ip, link_details

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

SUBNET, GATEWAY, OTHER = "172.17.28.0/24", "172.17.28.1", "172.17.28.50"
NEWASGARD = ("network", "create", "-d", "macvlan", "--subnet", SUBNET, "--gateway", GATEWAY,
             "-o", "parent=phys0")


class Lan:
    def __init__(self, switch: Machine, other: Machine) -> None:
        self.switch = switch
        self.other = other

    def neighbour_mac(self, address: str) -> str | None:
        found = json.loads(self.switch.sh(f"ip -j neigh show {address} dev sw0"))
        return found[0].get("lladdr") if found else None


@pytest.fixture
def lan(tmp_path: Path, host_ns: Path) -> Iterator[Lan]:
    site = Site(tmp_path)
    try:
        switch, other = site.machine("switch"), site.machine("other")
        site.cable("phys0", switch, "lan0")
        host_ip("addr add 172.17.28.5/24 dev phys0")
        switch.ip(
            "link add sw0 type bridge", "link set sw0 up", "link set lan0 master sw0",
            f"addr add {GATEWAY}/24 dev sw0",
            f"link add m0 type veth peer name eth0 netns {other.path}",
            "link set m0 master sw0", "link set m0 up",
        )
        other.ip(f"addr add {OTHER}/24 dev eth0", "link set eth0 up",
                 f"route add default via {GATEWAY}")
        yield Lan(switch, other)
    finally:
        site.close()


def run(env: Env, name: str, *extra: str, network: str = "newasgard") -> None:
    env.run("run", "-d", "--name", name, "--network", network, *extra, "--", "sleep", "infinity")


def ping(env: Env, name: str, address: str) -> bool:
    result = env.in_container(name, "ping", "-c", "1", "-W", "2", address, check=False)
    return result.returncode == 0


def host_ping(address: str, wait: str = "2") -> bool:
    result = subprocess.run(["ping", "-c", "1", "-W", wait, address], capture_output=True)
    return result.returncode == 0


def eth0(env: Env, name: str) -> dict[str, object]:
    return json.loads(env.in_container(name, "ip", "-d", "-j", "addr", "show", "eth0").stdout)[0]


def test_the_users_macvlan_network(env: Env, lan: Lan) -> None:
    env.run(*NEWASGARD, "newasgard")
    run(env, "env1", "--ip", "172.17.28.8")
    run(env, "env2", "--ip", "172.17.28.9")
    run(env, "env3")  # IPAM's choice: the lowest free address after the gateway

    one, two, three = (eth0(env, n) for n in ("env1", "env2", "env3"))
    assert [a["addr_info"][0]["local"] for a in (one, two, three)] == [  # type: ignore[index]
        "172.17.28.8", "172.17.28.9", "172.17.28.2"]
    assert one["linkinfo"]["info_kind"] == "macvlan"  # type: ignore[index]
    assert one["linkinfo"]["info_data"]["mode"] == "bridge"  # type: ignore[index]
    macs = {one["address"], two["address"], three["address"]}
    assert len(macs) == 3 and link_details("phys0")["address"] not in macs
    members = {c["Name"]: c for c in env.json("network", "inspect", "newasgard")[0][
        "Containers"].values()}
    assert members["env1"]["MacAddress"] == one["address"]
    route = json.loads(env.in_container("env1", "ip", "-j", "route", "show", "default").stdout)
    assert route[0]["gateway"] == GATEWAY and route[0]["dev"] == "eth0"

    # the gateway, another machine on the LAN, and a sibling (bridge mode)
    assert ping(env, "env1", GATEWAY)
    assert ping(env, "env1", OTHER)
    assert ping(env, "env1", "172.17.28.9")
    assert ping(env, "env2", "172.17.28.8")
    # the LAN saw env1 under its own MAC, not the host's
    assert lan.neighbour_mac("172.17.28.8") == one["address"]
    # as Docker: the host cannot reach its own macvlan containers through the parent
    assert not host_ping("172.17.28.8", wait="1")

    # no firewall rules, no publishing
    nft = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True)
    assert "172.17.28" not in nft.stdout
    refused = env.run("run", "-d", "--network", "newasgard", "-p", "8080:80", "--", "true",
                      check=False)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        "Error: invalid publish '8080:80': needs a bridge network that is not internal "
        "(macvlan network newasgard publishes no ports: its containers are reached at their "
        "own addresses)"]

    for name in ("env1", "env2", "env3"):
        env.run("rm", "-f", name)
    env.run("network", "rm", "newasgard")
    assert "phys0" in link_names()  # not netbay's: it stays


def test_host_link_shim_reaches_the_containers(env: Env, lan: Lan) -> None:
    # the host routes 172.17.28.0/24 to phys0 itself: the shim routes the containers' range
    env.run(*NEWASGARD, "--ip-range", "172.17.28.64/27", "-o", "host_link=true", "shimmed")
    run(env, "env1", network="shimmed")
    net = env.json("network", "inspect", "shimmed")[0]
    assert net["IPAM"]["Config"][0]["AuxiliaryAddresses"] == {"host_link": "172.17.28.254"}
    shim = "nbs" + net["Id"][:12]
    details = link_details(shim)
    assert details["linkinfo"]["info_kind"] == "macvlan"
    routes = json.loads(subprocess.run(["ip", "-j", "route", "show", "172.17.28.64/27"],
                                       capture_output=True, text=True).stdout)
    assert routes == [{"dst": "172.17.28.64/27", "dev": shim, "protocol": "static",
                       "scope": "link", "prefsrc": "172.17.28.254", "flags": []}]
    assert host_ping("172.17.28.64")
    assert ping(env, "env1", GATEWAY)

    env.run("rm", "-f", "env1")
    env.run("network", "rm", "shimmed")
    assert shim not in link_names()
    assert "172.17.28.64/27" not in subprocess.run(["ip", "route"], capture_output=True,
                                                   text=True).stdout


def test_passthru_gives_the_parent_to_one_container(env: Env, lan: Lan) -> None:
    env.run(*NEWASGARD, "-o", "macvlan_mode=passthru", "whole")
    run(env, "env1", "--ip", "172.17.28.8", network="whole")
    assert eth0(env, "env1")["address"] == link_details("phys0")["address"]
    assert ping(env, "env1", GATEWAY)
    refused = env.run("run", "-d", "--name", "env2", "--network", "whole", "--", "true",
                      check=False)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        "Error: network whole is in passthru mode: parent phys0 takes a single link, and has one"
    ]
    assert env.run("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["env1"]


REFUSALS = [
    (("network", "create", "-d", "macvlan", "-o", "parent=nosuch0", "x"),
     "invalid opt parent 'nosuch0': no such interface"),
    (("network", "create", "-d", "macvlan", "-o", "parent=nosuch0.10", "x"),
     "invalid opt parent 'nosuch0.10': no such interface, and no nosuch0 to make VLAN 10 on"),
    (("network", "create", "-d", "macvlan", "-o", "parent=phys0", "-o", "macvlan_mode=fast",
      "x"), "invalid opt macvlan_mode 'fast': expected private|vepa|bridge|passthru"),
    (("network", "create", "-d", "macvlan", "-o", "parent=phys0", "--internal", "x"),
     "invalid opt parent 'phys0': an internal network gets a dummy parent of its own"),
    (("network", "create", "-d", "macvlan", "-o", "parent=phys0", "-o", "host_link=maybe", "x"),
     "invalid opt host_link 'maybe': expected true or false"),
    (("network", "create", "-d", "macvlan", "-o", "parent=phys0", "-o", "ipvlan_mode=l3", "x"),
     "invalid opt 'ipvlan_mode': unknown option for driver macvlan"),
    (("network", "create", "-d", "macvlan", "--subnet", "172.17.28.128/25", "-o",
      "parent=phys0", "x"),
     "invalid subnet '172.17.28.128/25': overlaps 172.17.28.0/24 of network newasgard on "
     "parent phys0"),
    (("network", "create", "-d", "macvlan", "--subnet", "10.61.0.0/24", "-o", "parent=phys1",
      "x"), "invalid opt parent 'phys1': network pass uses it in passthru mode"),
    (("network", "create", "-d", "macvlan", "--subnet", "10.62.0.0/24", "-o", "parent=phys0",
      "-o", "macvlan_mode=passthru", "x"),
     "invalid opt macvlan_mode 'passthru': parent phys0 is used by network newasgard"),
    (("network", "create", "-d", "ipvlan", "--subnet", "10.63.0.0/24", "-o", "parent=phys0",
      "x"), "invalid opt parent 'phys0': used by macvlan network newasgard"),
    # the mode belongs to the parent: the kernel would switch the l3 network's containers
    (("network", "create", "-d", "ipvlan", "--subnet", "10.64.0.0/24", "-o", "parent=phys2",
      "-o", "ipvlan_mode=l2", "x"),
     "invalid opt ipvlan_mode 'l2': parent phys2 carries network routed with ipvlan_mode l3"),
    (("network", "create", "-d", "ipvlan", "--subnet", "10.64.0.0/24", "-o", "parent=phys2",
      "-o", "ipvlan_mode=l3", "-o", "ipvlan_flag=private", "x"),
     "invalid opt ipvlan_flag 'private': parent phys2 carries network routed with ipvlan_flag "
     "bridge"),
    (("run", "-d", "--network", "newasgard", "-p", "80", "--", "true"),
     "invalid publish '80': needs a bridge network that is not internal (macvlan network "
     "newasgard publishes no ports"),
]


@pytest.fixture
def parents(env: Env, lan: Lan) -> Env:
    host_ip(
        "link add phys1 type veth peer name phys1p", "link add phys2 type veth peer name phys2p"
    )
    env.run(*NEWASGARD, "newasgard")
    env.run("network", "create", "-d", "macvlan", "--subnet", "10.60.0.0/24",
            "-o", "parent=phys1", "-o", "macvlan_mode=passthru", "pass")
    env.run("network", "create", "-d", "ipvlan", "--subnet", "10.65.0.0/24", "-o", "parent=phys2",
            "-o", "ipvlan_mode=l3", "routed")
    return env


@pytest.mark.parametrize(("args", "message"), REFUSALS, ids=[" ".join(a) for a, _ in REFUSALS])
def test_refused_with_one_line_and_nothing_changed(
    parents: Env, args: tuple[str, ...], message: str
) -> None:
    before = snapshot(parents.paths)
    result = parents.run(*args, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: {message}")
    assert snapshot(parents.paths) == before
