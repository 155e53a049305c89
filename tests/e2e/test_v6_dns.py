"""DNS on dual-stack and IPv6-only networks with real packets (issue 17): netbay's server answers
on the IPv6 gateway too, AAAA and ip6.arpa PTR for the containers, no data for a family a
name has no address of, and forwards other names to upstreams on IPv6 addresses, here a
fake one on the test's LAN machine (nothing leaves the test's namespaces)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest

from helpers import Lan, wait_until
from netbay import AttachRequest, Container, ContainerSpec, Host, NetworkSpec, SubnetConfig
from netbay.dns.message import reverse_name
from netbay.dns.supervisor import DnsSupervisor

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

DNSPROBE = str(Path(__file__).parents[1] / "dnsprobe.py")
LAN6 = "2001:db8:77::"  # the host's external link (ext0 ::1, the LAN machine lan0 ::2, ::3)
UPSTREAM6, OTHER_UPSTREAM6 = LAN6 + "2", LAN6 + "3"
DUAL4, DUAL6 = "10.91.0.0/24", "fd00:91::/64"
GATEWAY4, GATEWAY6 = "10.91.0.1", "fd00:91::1"


class World:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.dns = DnsSupervisor(host.paths, host.store)

    def network(self, name: str, *subnets: str, ipv4: bool = True) -> None:
        configs = tuple(SubnetConfig(IPv6Network(s) if ":" in s else IPv4Network(s))
                        for s in subnets)
        self.host.create_network(NetworkSpec(name=name, subnets=configs, ipv6=True, ipv4=ipv4))

    def run(self, name: str, *networks: str, aliases: tuple[str, ...] = (),
            dns: tuple[str, ...] = ()) -> Container:
        container = self.host.create_container(ContainerSpec(
            command=("sleep", "infinity"), name=name, hostname=name + "host",
            networks=tuple(AttachRequest(n, aliases=aliases) for n in networks),
            dns=tuple(IPv6Address(s) for s in dns)))
        self.dns.sync()
        return container

    def address(self, container: Container, network: str, version: int) -> str:
        nid = self.host.network(network).id
        (endpoint,) = [e for e in self.host.store.endpoints(container_id=container.id)
                       if e.network_id == nid]
        interface = endpoint.address if version == 4 else endpoint.address6
        assert interface is not None, (container.name, network, version)
        return str(interface.ip)

    def resolv_conf(self, container: Container) -> str:
        return (self.host.paths.container_dir(container.id) / "resolv.conf").read_text()

    def ask(self, who: Container, server: str, qname: str, qtype: str = "A",
            tcp: bool = False) -> dict[str, Any]:
        """A query from inside WHO's namespace to SERVER."""
        assert who.netns is not None
        argv = ["nsenter", f"--net={who.netns}", sys.executable, DNSPROBE, "query", server,
                qname, qtype, "--timeout", "3", *(["--tcp"] if tcp else [])]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        return dict(json.loads(out.stdout))

    def addresses(self, who: Container, server: str, qname: str, qtype: str = "A",
                  tcp: bool = False) -> list[str]:
        answer = self.ask(who, server, qname, qtype, tcp)
        assert answer.get("rcode") == "NOERROR", (who.name, qname, qtype, answer)
        return list(answer["answers"])


@pytest.fixture
def world(host: Host) -> Iterator[World]:
    w = World(host)
    try:
        yield w
    finally:
        w.dns.close()


def use_host_resolver(*servers: str) -> None:
    """What the host's resolv.conf says (the `paths` fixture points netbay at this file)."""
    Path(os.environ["NETBAY_RESOLV_CONF"]).write_text(
        "".join(f"nameserver {s}\n" for s in servers))


def start_upstream(lan: Lan, tmp: Path, address: str, *zone: str) -> Path:
    """A fake resolver on the LAN machine at an IPv6 address; the file that logs what it was
    asked."""
    log = tmp / f"upstream-{address}.log"
    log.write_text("")
    server = subprocess.Popen(lan.argv(sys.executable, DNSPROBE, "serve", address, str(log),
                                       *zone))
    lan._servers.append(server)  # stopped (by its PID) with the LAN machine

    def answers() -> bool:
        out = subprocess.run([sys.executable, DNSPROBE, "query", address, "ready.check",
                              "--timeout", "0.3"], capture_output=True, text=True)
        return '"rcode"' in out.stdout

    wait_until(answers, 10, f"the fake upstream on {address} to answer", interval=0.1)
    log.write_text("")
    return log


@pytest.fixture
def lan6(lan: Lan) -> Lan:
    """The LAN machine, reachable over IPv6 too (no DAD: usable at once)."""
    subprocess.run(["ip", "addr", "add", LAN6 + "1/64", "dev", "ext0", "nodad"], check=True)
    lan.sh(f"ip addr add {UPSTREAM6}/64 dev lan0 nodad"
           f" && ip addr add {OTHER_UPSTREAM6}/64 dev lan0 nodad")
    return lan


def test_dual_stack_names_reverse_names_no_data_and_forwarding(
    world: World, lan6: Lan, tmp_path: Path
) -> None:
    host_log = start_upstream(lan6, tmp_path, UPSTREAM6, "outside.test=2001:db8:99::7",
                              "outside4.test=192.0.2.7")
    own_log = start_upstream(lan6, tmp_path, OTHER_UPSTREAM6, "outside.test=2001:db8:99::8")
    use_host_resolver(UPSTREAM6)
    world.network("dual", DUAL4, DUAL6)
    c1 = world.run("c1", "dual")
    c2 = world.run("c2", "dual", aliases=("api",))
    c3 = world.run("c3", "dual", dns=(OTHER_UPSTREAM6,))
    c1_6, c2_4, c2_6 = (world.address(c1, "dual", 6), world.address(c2, "dual", 4),
                        world.address(c2, "dual", 6))
    assert GATEWAY6 in world.dns.health()["listening"]
    assert world.dns.health()["healthy"]
    # dual stack keeps the IPv4 server in resolv.conf; both gateways answer
    assert "nameserver 10.91.0.1\n" in world.resolv_conf(c1)

    for name in ("c2", "C2", "c2host", "api", "c2.dual", "api.dual"):
        assert world.addresses(c1, GATEWAY6, name, "AAAA") == [c2_6], name
        assert world.addresses(c1, GATEWAY6, name, "A") == [c2_4], name
    assert world.addresses(c1, GATEWAY4, "c2", "AAAA") == [c2_6]
    assert world.addresses(c1, GATEWAY6, "c2", "AAAA", tcp=True) == [c2_6]
    assert world.addresses(c2, GATEWAY6, reverse_name(IPv6Address(c1_6)), "PTR") == ["c1.dual"]
    assert world.ask(c1, GATEWAY6, "nobody", "AAAA")["rcode"] == "NXDOMAIN"

    # names a netbay network serves never go upstream; others go over IPv6
    assert world.addresses(c1, GATEWAY6, "outside.test", "AAAA") == ["2001:db8:99::7"]
    assert world.addresses(c1, GATEWAY6, "outside4.test", "A") == ["192.0.2.7"]
    assert world.addresses(c1, GATEWAY6, "outside.test", "AAAA", tcp=True) == ["2001:db8:99::7"]
    assert world.addresses(c3, GATEWAY6, "outside.test", "AAAA") == ["2001:db8:99::8"]
    assert host_log.read_text().splitlines() == [
        "udp outside.test 28", "udp outside4.test 1", "tcp outside.test 28"]
    assert own_log.read_text().splitlines() == ["udp outside.test 28"]


def test_a_name_with_no_ipv6_address_is_no_data(world: World) -> None:
    world.network("dual", DUAL4, DUAL6)
    world.host.create_network(NetworkSpec(
        name="four", subnets=(SubnetConfig(IPv4Network("10.92.0.0/24")),)))
    c1 = world.run("c1", "dual")
    world.host.connect("four", "c1")
    old = world.run("old", "four")
    world.dns.sync()
    answer = world.ask(c1, GATEWAY6, "old", "AAAA")
    assert (answer.get("rcode"), answer.get("answers")) == ("NOERROR", []), answer
    assert world.addresses(c1, GATEWAY6, "old", "A") == [world.address(old, "four", 4)]
    assert world.addresses(c1, GATEWAY6, "c1", "AAAA") == [world.address(c1, "dual", 6)]


def test_an_ipv6_only_network(world: World) -> None:
    world.network("six", "fd00:93::/64", ipv4=False)
    s1 = world.run("s1", "six")
    s2 = world.run("s2", "six")
    s2_6 = world.address(s2, "six", 6)
    resolv = world.resolv_conf(s1)
    assert [ln for ln in resolv.splitlines() if ln.startswith("nameserver")] == [
        "nameserver fd00:93::1"]
    assert world.addresses(s1, "fd00:93::1", "s2", "AAAA") == [s2_6]
    assert world.addresses(s1, "fd00:93::1", "s2", "A") == []  # no IPv4: no data
    assert world.addresses(s1, "fd00:93::1", reverse_name(IPv6Address(s2_6)), "PTR") == [
        "s2.six"]
    # as programs resolve: the C library with that resolv.conf, in s1's namespace
    assert s1.netns is not None
    conf = world.host.paths.container_dir(s1.id) / "resolv.conf"
    out = subprocess.run(
        ["nsenter", f"--net={s1.netns}", "unshare", "-m", "sh", "-c",
         f"mount --bind {conf} /etc/resolv.conf && getent ahostsv6 s2"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == s2_6
