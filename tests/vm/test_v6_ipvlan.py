"""ipvlan L2 and L3 with IPv6 subnets (dual stack), with real packets (the VM tier: this
machine's kernel lacks ipvlan; scripts/vm-tests.sh -k v6 runs just these).

As tests/vm/test_parent_kinds.py: the library and the daemon's API handler in-process, and
pings in-process (ICMPv4 from tests/lans.py, ICMPv6 here): under emulation each process
start costs seconds. Other machines are namespaces cabled to the test host; their IPv6
addresses are static (nodad), as netbay's are.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import time
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest

from lans import Site, host_ip, link_details, ping
from netbay import AttachRequest, ContainerSpec, Host, NetworkSpec, SubnetConfig
from netbay.daemon.api import Api
from netbay.kernel import netns

pytestmark = [pytest.mark.kernel, pytest.mark.vm]


def call(api: Api, method: str, target: str, body: Any = None) -> Any:
    status, answer = api.dispatch(method, target, body)
    assert status < 300, answer
    return answer


def ping6(address: str, ns: Path | str | None = None, timeout: float = 3.0) -> bool:
    """True if ADDRESS answers an ICMPv6 echo sent from NS (None: this thread's namespace)
    within TIMEOUT; one request a second. (The kernel fills in an ICMPv6 checksum, and a
    raw IPv6 socket receives no IP header.)"""
    with netns.entered(ns):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    ident = (os.getpid() ^ id(sock)) & 0xFFFF
    deadline = time.monotonic() + timeout
    next_send, seq = 0.0, 0
    with sock:
        while (now := time.monotonic()) < deadline:
            if now >= next_send:
                seq += 1
                with contextlib.suppress(OSError):  # no route yet, unreachable: maybe later
                    sock.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, seq) + b"netbay",
                                (address, 0))
                next_send = now + 1.0
            sock.settimeout(max(0.01, min(deadline, next_send) - time.monotonic()))
            try:
                data, source = sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            kind, _, _, got = struct.unpack_from("!BBHH", data)
            if kind == 129 and got == ident and IPv6Address(source[0]) == IPv6Address(address):
                return True
    return False


def container(host: Host, name: str, network: str, ip: str | None = None,
              ip6: str | None = None) -> Path:
    """A container (not started: its namespace is what the tests need)."""
    request = AttachRequest(network, IPv4Address(ip) if ip else None,
                            ip6=IPv6Address(ip6) if ip6 else None)
    made = host.create_container(ContainerSpec(("sleep", "infinity"), name, networks=(request,)))
    assert made.netns is not None
    return Path(made.netns)


def subnet(cidr: str, gateway: str | None = None) -> SubnetConfig:
    return SubnetConfig(ip_network(cidr), ip_address(gateway) if gateway else None)


def ip_json(ns: Path | None, *argv: str) -> Any:
    command = ["ip", "-j", *argv]
    if ns is not None:
        command = ["nsenter", f"--net={ns}", *command]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def global6(ns: Path) -> list[dict[str, Any]]:
    held = ip_json(ns, "-6", "addr", "show", "dev", "eth0")[0]["addr_info"]
    return [a for a in held if a.get("scope") == "global"]


def test_v6_ipvlan_l2_dual_stack_on_the_parents_lan(host: Host, site: Site) -> None:
    lan = site.machine("lan")
    site.cable("phys0", lan, "lan0")
    lan.ip("addr add 10.0.40.1/24 dev lan0", "addr add 2001:db8:40::1/64 dev lan0 nodad",
           "addr add 2001:db8:40::50/64 dev lan0 nodad")
    host.create_network(NetworkSpec(
        "flat", "ipvlan", (subnet("10.0.40.0/24", "10.0.40.1"),
                           subnet("2001:db8:40::/64", "2001:db8:40::1")),
        ipv6=True, options={"parent": "phys0"},
    ))
    one = container(host, "env1", "flat", ip6="2001:db8:40::8")
    two = container(host, "env2", "flat")

    parent_mac = link_details("phys0")["address"]
    eth0 = link_details("eth0", one)
    assert eth0["linkinfo"]["info_data"]["mode"] == "l2" and eth0["address"] == parent_mac
    assert [(a["local"], a.get("tentative", False)) for a in global6(one)] == [
        ("2001:db8:40::8", False)]
    assert [a["local"] for a in global6(two)] == ["2001:db8:40::2"]
    assert ip_json(one, "-6", "route", "show", "default")[0]["gateway"] == "2001:db8:40::1"
    # the gateway, another address on the LAN, the sibling; IPv4 as before
    assert ping6("2001:db8:40::1", one) and ping6("2001:db8:40::50", one)
    assert ping6("2001:db8:40::8", two)
    assert ping("10.0.40.1", one)
    # in from the LAN, which knows env1's IPv6 address under the parent's MAC
    assert ping6("2001:db8:40::8", lan.path)
    neighbours = json.loads(lan.sh("ip -j -6 neigh show 2001:db8:40::8"))
    assert neighbours[0]["lladdr"] == parent_mac

    host.remove_container("env1", force=True)
    host.remove_container("env2", force=True)
    host.remove_network("flat")


def test_v6_ipvlan_l3_upstream_routes_for_each_family(
    host: Host, api: Api, site: Site
) -> None:
    router = site.machine("router")
    site.cable("ens802", router, "eth0")
    host_ip("addr add 203.0.113.1/24 dev ens802", "addr add 2001:db8:113::1/64 dev ens802 nodad")
    router.ip("addr add 203.0.113.2/24 dev eth0", "addr add 2001:db8:113::2/64 dev eth0 nodad")
    call(api, "POST", "/networks/create", {
        "Name": "newasgard", "Driver": "ipvlan", "EnableIPv6": True,
        "IPAM": {"Config": [{"Subnet": "192.168.94.0/24"}, {"Subnet": "2001:db8:94::/64"},
                            {"Subnet": "2001:db8:95::/64"}]},
        "Options": {"parent": "ens802", "ipvlan_mode": "l3"},
    })
    one = container(host, "env1", "newasgard", "192.168.94.8", "2001:db8:94::8")
    two = container(host, "env2", "newasgard", ip6="2001:db8:95::7")

    assert "NOARP" in link_details("eth0", one)["flags"]
    # no gateway: the default routes go straight out of eth0
    default6 = ip_json(one, "-6", "route", "show", "default")
    assert [(r["dst"], r["dev"], r.get("gateway")) for r in default6] == [
        ("default", "eth0", None)]
    assert ip_json(one, "route", "show", "default")[0]["dev"] == "eth0"
    assert [a["local"] for a in global6(two)] == ["2001:db8:95::7"]
    # the parent routes between the subnets
    assert ping6("2001:db8:95::7", one) and ping6("2001:db8:94::8", two)

    inspect = call(api, "GET", "/networks/newasgard")
    assert inspect["UpstreamRoutes"] == [
        {"Destination": "192.168.94.0/24", "Gateway": "203.0.113.1",
         "Command": "ip route add 192.168.94.0/24 via 203.0.113.1"},
        {"Destination": "2001:db8:94::/64", "Gateway": "2001:db8:113::1",
         "Command": "ip route add 2001:db8:94::/64 via 2001:db8:113::1"},
        {"Destination": "2001:db8:95::/64", "Gateway": "2001:db8:113::1",
         "Command": "ip route add 2001:db8:95::/64 via 2001:db8:113::1"},
    ]
    assert not ping6("2001:db8:94::8", router.path, timeout=1)
    router.ip(*(r["Command"].removeprefix("ip ") for r in inspect["UpstreamRoutes"]))
    assert ping6("2001:db8:94::8", router.path) and ping6("2001:db8:95::7", router.path)
    assert router.ping("192.168.94.8")
    assert ping6("2001:db8:113::2", two)

    host.remove_container("env1", force=True)
    host.remove_container("env2", force=True)
    host.remove_network("newasgard")


def test_v6_a_vlan_parent_netbay_makes_keeps_ipv6_where_it_routes_ipv6(
    host: Host, site: Site
) -> None:
    site.cable("ens802", site.machine("router"), "eth0")
    host.create_network(NetworkSpec("routed6", "ipvlan", (subnet("2001:db8:96::/64"),),
                                    ipv6=True, options={"parent": "ens802.96",
                                                        "ipvlan_mode": "l3"}))
    host.create_network(NetworkSpec("routed4", "ipvlan", (subnet("10.0.97.0/24"),),
                                    options={"parent": "ens802.97", "ipvlan_mode": "l3"}))
    host.create_network(NetworkSpec("flat6", "ipvlan", (subnet("2001:db8:98::/64"),),
                                    ipv6=True, options={"parent": "ens802.98"}))
    # the host routes routed6's traffic out of ens802.96 (and needs its own address there)
    conf = Path("/proc/sys/net/ipv6/conf")
    assert [(conf / f"ens802.{vid}" / "disable_ipv6").read_text().strip()
            for vid in (96, 97, 98)] == ["0", "1", "1"]
    for name in ("routed6", "routed4", "flat6"):
        host.remove_network(name)
