"""The firewall's fast path with real packets: a forwarded flow is accepted by its conntrack
state alone, so a change that would have dropped it must end its tracked state. A TCP flow
runs through a published port, the port is unpublished, the flow stops."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from echo import ECHO_CLIENT, ECHO_PORT, ECHO_SERVER
from helpers import Lan, sh, wait_until
from netbay.engine.sandboxes import SandboxRequest
from netbay.model import NetworkSpec, SubnetConfig
from netbay.plan.ports import PublishSpec

pytestmark = pytest.mark.kernel

HOST_PORT = 8080


def spawn(argv: list[str], cleanups: list[subprocess.Popen[Any]]) -> subprocess.Popen[str]:
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    cleanups.append(process)
    return process


@pytest.fixture
def processes() -> Any:
    started: list[subprocess.Popen[Any]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def test_a_running_flow_stops_when_its_published_port_goes(
    host: Any, lan: Lan, namespaces: Any, processes: list[subprocess.Popen[Any]]
) -> None:
    network = host.create_network(
        NetworkSpec(name="fast", subnets=(SubnetConfig(IPv4Network("10.97.0.0/24")),))
    )
    web: Path = namespaces("web")
    host.attach_sandbox(network, SandboxRequest("web", "cni", web, "eth0"))
    host.publish_sandbox_ports(
        "web", "eth0", [PublishSpec("tcp", None, (HOST_PORT, HOST_PORT),
                                    (ECHO_PORT, ECHO_PORT))]
    )
    spawn(["nsenter", f"--net={web}", sys.executable, "-c", ECHO_SERVER], processes)
    wait_until(lambda: lan.sh(f"{sys.executable} -c 'import socket; socket.create_connection("
                              f"(\"198.51.100.1\", {HOST_PORT}), timeout=1)'", False)
               .returncode == 0, 10, "the published port answering", interval=0.1)
    client = spawn(lan.argv(sys.executable, "-c", ECHO_CLIENT, "198.51.100.1", str(HOST_PORT)),
                   processes)
    assert client.stdout is not None
    for _ in range(20):  # the flow runs, accepted by its state
        assert client.stdout.readline() == "echo\n"

    assert host.unpublish_sandbox_ports("web", "eth0")

    client.wait(timeout=10)  # the flow's next packets are judged anew: no mapping any more
    last = [line for line in client.stdout.read().splitlines() if line != "echo"]
    assert len(last) == 1 and last[0].startswith("ended "), last
    assert "tcp . 8080" not in sh("nft list map inet netbay pub_any").stdout


def test_the_flows_a_container_started_end_when_its_endpoint_goes(
    host: Any, lan: Lan, namespaces: Any, processes: list[subprocess.Popen[Any]]
) -> None:
    """A masqueraded flow out: its replies come from the LAN, not from the container, so
    only the endpoint's departure can end it (the address's next owner gets no replies)."""
    network = host.create_network(
        NetworkSpec(name="out", subnets=(SubnetConfig(IPv4Network("10.96.0.0/24")),))
    )
    client_ns: Path = namespaces("client")
    _, endpoint = host.attach_sandbox(network, SandboxRequest("client", "cni", client_ns, "eth0"))
    spawn(lan.argv(sys.executable, "-c", ECHO_SERVER), processes)
    wait_until(lambda: lan.sh(f"ss -ltn sport = :{ECHO_PORT}").stdout.count("LISTEN") == 1, 10,
               "the LAN's echo server listening", interval=0.05)
    client = spawn(["nsenter", f"--net={client_ns}", sys.executable, "-c", ECHO_CLIENT,
                    "198.51.100.2", str(ECHO_PORT)], processes)
    assert client.stdout is not None
    for _ in range(5):
        assert client.stdout.readline() == "echo\n"
    assert flows_started_by(str(endpoint.address.ip)) == 1

    host.detach_sandbox("client", "eth0")

    wait_until(lambda: flows_started_by(str(endpoint.address.ip)) == 0, 5,
               "the container's outbound flow forgotten", interval=0.05)


def flows_started_by(address: str) -> int:
    """Conntrack entries of this namespace whose original source is ADDRESS."""
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    from netbay.kernel.netlink import open_conntrack

    match = NFCTAttrTuple(saddr=address)
    ct = open_conntrack()
    try:
        return sum(match.nla_eq(m["nfgen_family"], m.get_attr("CTA_TUPLE_ORIG"))
                   for m in ct.dump(tuple_orig=match))
    finally:
        ct.close()


def test_container_to_container_traffic_of_a_bridge_is_not_tracked(
    host: Any, namespaces: Any
) -> None:
    """br_netfilter hands bridged packets to the inet hooks; one container pinging another
    leaves no conntrack entry, while a ping to the bridge's own address (where a published
    port is reached too) is tracked."""
    assert sh("sysctl -n net.bridge.bridge-nf-call-iptables").stdout.strip() == "1"
    network = host.create_network(
        NetworkSpec(name="quiet", subnets=(SubnetConfig(IPv4Network("10.98.0.0/24")),))
    )
    sandboxes = [namespaces(name) for name in ("a", "b")]
    a, b = (host.attach_sandbox(network, SandboxRequest(name, "cni", ns, "eth0"))[1]
            for name, ns in zip(("a", "b"), sandboxes, strict=True))
    ping = f"nsenter --net={sandboxes[0]} ping -c 3 -i 0.2 -W 2"

    sh(f"{ping} {b.address.ip}")
    assert flows_started_by(str(a.address.ip)) == 0

    sh(f"{ping} 10.98.0.1")
    assert flows_started_by(str(a.address.ip)) == 1
