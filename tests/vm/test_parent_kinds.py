"""ipvlan L2 and L3, 802.1q VLAN parents and dummy parents, with real packets.

These drive the library (netbay.Host) and the daemon's API handler in-process and ping
in-process: under emulation each process start costs seconds, and all of them share one
boot (scripts/vm-tests.sh). Other machines are namespaces cabled to the test host.
"""

from __future__ import annotations

import json
import subprocess
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from helpers import link_names, snapshot
from lans import Site, host_ip, link_details, ping
from netbay import AttachRequest, ContainerSpec, Host, NetworkSpec, SubnetConfig
from netbay.daemon.api import Api
from netbay.errors import ConflictError

pytestmark = [pytest.mark.kernel, pytest.mark.vm]

DEAD_OWNER = "1:1"  # pid 1 never started at tick 1: an owner that is certainly gone


def call(api: Api, method: str, target: str, body: Any = None) -> Any:
    status, answer = api.dispatch(method, target, body)
    assert status < 300, answer
    return answer


def container(host: Host, name: str, network: str, ip: str | None = None) -> Path:
    """A container (not started: its namespace is what the tests need) with ADDRESS."""
    request = AttachRequest(network, IPv4Address(ip) if ip else None)
    made = host.create_container(ContainerSpec(("sleep", "infinity"), name, networks=(request,)))
    assert made.netns is not None
    return Path(made.netns)


def routes(ns: Path | None = None, *args: str) -> list[dict[str, Any]]:
    argv = ["ip", "-j", "route", "show", *args]
    if ns is not None:
        argv = ["nsenter", f"--net={ns}", *argv]
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)  # type: ignore[no-any-return]


def subnet(cidr: str, gateway: str | None = None, ip_range: str | None = None) -> SubnetConfig:
    return SubnetConfig(
        IPv4Network(cidr),
        IPv4Address(gateway) if gateway else None,
        IPv4Network(ip_range) if ip_range else None,
    )


def test_ipvlan_l2_shares_the_parents_mac_and_sits_on_its_lan(host: Host, site: Site) -> None:
    lan = site.machine("lan")
    site.cable("phys0", lan, "lan0")
    lan.ip("addr add 10.0.40.1/24 dev lan0", "addr add 10.0.40.50/24 dev lan0")
    host.create_network(NetworkSpec(
        "flat", "ipvlan", (subnet("10.0.40.0/24", "10.0.40.1"),),
        options={"parent": "phys0", "host_link": "true"},
    ))
    one = container(host, "env1", "flat", "10.0.40.8")
    two = container(host, "env2", "flat")

    parent_mac = link_details("phys0")["address"]
    eth0 = link_details("eth0", one)
    assert eth0["linkinfo"]["info_kind"] == "ipvlan"
    assert eth0["linkinfo"]["info_data"]["mode"] == "l2"
    assert eth0["address"] == link_details("eth0", two)["address"] == parent_mac
    assert routes(one, "default")[0]["gateway"] == "10.0.40.1"
    assert ping("10.0.40.1", one) and ping("10.0.40.50", one)
    assert ping("10.0.40.2", one) and ping("10.0.40.8", two)
    # the LAN knows env1's address under the parent's MAC
    neighbours = json.loads(lan.sh("ip -j neigh show 10.0.40.8"))
    assert neighbours[0]["lladdr"] == parent_mac
    # the host reaches its own ipvlan containers through the shim only
    assert ping("10.0.40.8")
    shim = "nbs" + host.network("flat").id[:12]
    assert link_details(shim)["linkinfo"]["info_data"]["mode"] == "l2"

    host.remove_container("env1", force=True)
    host.remove_container("env2", force=True)
    host.remove_network("flat")
    assert shim not in link_names() and "phys0" in link_names()


def test_ipvlan_l3_the_users_two_subnets_routed_from_upstream(
    host: Host, api: Api, site: Site
) -> None:
    router = site.machine("router")
    site.cable("ens802", router, "eth0")
    host_ip("addr add 203.0.113.1/24 dev ens802")
    router.ip("addr add 203.0.113.2/24 dev eth0")
    # netbay network create -d ipvlan --subnet 192.168.94.0/24 --subnet 192.168.95.0/24
    #   -o parent=ens802 -o ipvlan_mode=l3 newasgard
    call(api, "POST", "/networks/create", {
        "Name": "newasgard", "Driver": "ipvlan",
        "IPAM": {"Config": [{"Subnet": "192.168.94.0/24"}, {"Subnet": "192.168.95.0/24"}]},
        "Options": {"parent": "ens802", "ipvlan_mode": "l3"},
    })
    one = container(host, "env1", "newasgard", "192.168.94.8")
    two = container(host, "env2", "newasgard", "192.168.95.7")

    eth0 = link_details("eth0", one)
    assert eth0["linkinfo"]["info_data"]["mode"] == "l3"
    assert "NOARP" in eth0["flags"]
    assert routes(one, "default") == [
        {"dst": "default", "dev": "eth0", "protocol": "static", "scope": "link", "flags": []}
    ]
    # the parent routes between the subnets
    assert ping("192.168.95.7", one) and ping("192.168.94.8", two)

    inspect = call(api, "GET", "/networks/newasgard")
    assert inspect["UpstreamRoutes"] == [
        {"Destination": "192.168.94.0/24", "Gateway": "203.0.113.1",
         "Command": "ip route add 192.168.94.0/24 via 203.0.113.1"},
        {"Destination": "192.168.95.0/24", "Gateway": "203.0.113.1",
         "Command": "ip route add 192.168.95.0/24 via 203.0.113.1"},
    ]
    assert not router.ping("192.168.94.8", timeout=1)
    router.ip(*(r["Command"].removeprefix("ip ") for r in inspect["UpstreamRoutes"]))
    assert router.ping("192.168.94.8") and router.ping("192.168.95.7")
    assert ping("203.0.113.2", two)

    # an l2 network on the same parent would switch env1 and env2 to l2: refused, untouched
    before = snapshot(host.paths)
    with pytest.raises(ConflictError, match=(
        "invalid opt ipvlan_mode 'l2': parent ens802 carries network newasgard with "
        "ipvlan_mode l3"
    )):
        host.create_network(NetworkSpec(
            "flat", "ipvlan", (subnet("10.0.50.0/24"),), options={"parent": "ens802"}
        ))
    assert snapshot(host.paths) == before
    assert link_details("eth0", one)["linkinfo"]["info_data"]["mode"] == "l3"
    assert router.ping("192.168.94.8")

    host.remove_container("env1", force=True)
    host.remove_container("env2", force=True)
    host.remove_network("newasgard")


def test_vlan_parent_is_made_shared_and_removed_only_when_netbays(
    host: Host, site: Site
) -> None:
    lan = site.machine("lan")
    site.cable("phys0", lan, "lan0")
    lan.ip(
        "link add link lan0 name lan0.10 type vlan id 10", "link set lan0.10 up",
        "addr add 10.0.10.1/24 dev lan0.10",
    )
    tagged = host.create_network(NetworkSpec(
        "tagged", "macvlan", (subnet("10.0.10.0/24", "10.0.10.1"),),
        options={"parent": "phys0.10"},
    ))
    assert tagged.device == "phys0.10" and tagged.device_created
    vlan = link_details("phys0.10")
    assert vlan["linkinfo"]["info_kind"] == "vlan"
    assert vlan["linkinfo"]["info_data"]["id"] == 10 and vlan["link"] == "phys0"
    one = container(host, "env1", "tagged")
    assert ping("10.0.10.1", one)  # reachable only through VLAN 10

    # a second network on the same parent: the parent outlives the network that made it
    host.create_network(NetworkSpec(
        "tenants", "macvlan", (subnet("10.0.11.0/24"),), options={"parent": "phys0.10"}
    ))
    assert not host.network("tenants").device_created
    host.remove_container("env1", force=True)
    host.remove_network("tagged")
    assert "phys0.10" in link_names() and host.network("tenants").device_created
    host.remove_network("tenants")
    assert "phys0.10" not in link_names()

    # a VLAN interface that was there before is the user's: it stays
    host_ip("link add link phys0 name phys0.20 type vlan id 20")
    host.create_network(NetworkSpec("mine", "macvlan", options={"parent": "phys0.20"}))
    host.remove_network("mine")
    assert "phys0.20" in link_names()

    # a crash mid-create: the record says netbay made phys0.30, so gc removes it
    crashed = host.create_network(NetworkSpec(
        "crashed", "ipvlan", options={"parent": "phys0.30"}
    ))
    host.store.update_network(crashed.id, state="creating", owner=DEAD_OWNER)
    assert host.gc().networks == ["crashed"]
    assert "phys0.30" not in link_names()
    assert [n.name for n in host.networks()] == ["bridge", "host", "none"]


def test_no_parent_makes_an_internal_network_on_a_dummy(host: Host, site: Site) -> None:
    inside = host.create_network(NetworkSpec("inside", "ipvlan", (subnet("10.0.60.0/24"),)))
    assert inside.internal and inside.device == "di-" + inside.id[:12]
    assert link_details(inside.device)["linkinfo"]["info_kind"] == "dummy"
    one = container(host, "env1", "inside")
    two = container(host, "env2", "inside")
    assert routes(one, "default") == []
    assert ping("10.0.60.3", one) and ping("10.0.60.2", two)

    alone = host.create_network(NetworkSpec("alone", "macvlan", (subnet("10.0.61.0/24"),)))
    assert alone.device == "dm-" + alone.id[:12]
    assert link_details(alone.device)["linkinfo"]["info_kind"] == "dummy"
    assert host.audit() == []

    host.remove_container("env1", force=True)
    host.remove_container("env2", force=True)
    host.remove_network("inside")
    host.remove_network("alone")
    assert not {inside.device, alone.device} & link_names()
