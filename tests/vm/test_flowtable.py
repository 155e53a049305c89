"""The data-plane offload (nftables flowtable) on a kernel that has flowtables, with real
packets: a container's flow to the LAN through masquerade and a LAN client's flow to a
published port are offloaded (their conntrack entries carry OFFLOAD) and arrive; the port
is unpublished while both run: the published port's flow stops, the other runs on.

A tightening ends the flow's conntrack entry (the janitor), and that must end its offload:
this is where that is shown, not assumed. Under emulation each process start costs
seconds: one echo server and one echo client per flow, everything else in-process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from echo import ECHO_CLIENT, ECHO_PORT, ECHO_SERVER
from helpers import Lan, sh, wait_until
from netbay import Host
from netbay.engine.sandboxes import SandboxRequest
from netbay.kernel.netlink import open_conntrack
from netbay.model import NetworkSpec, SubnetConfig
from netbay.plan.ports import PublishSpec

pytestmark = [pytest.mark.kernel, pytest.mark.vm, pytest.mark.flowtable]

IPS_OFFLOAD = 1 << 14  # the conntrack status bit of an offloaded flow
HOST_PORT = 8080
HOST_ADDRESS, LAN_ADDRESS = "198.51.100.1", "198.51.100.2"


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def run_in(netns: Path, code: str, *argv: str, into: list[subprocess.Popen[str]]
           ) -> subprocess.Popen[str]:
    process = subprocess.Popen(["nsenter", f"--net={netns}", sys.executable, "-c", code, *argv],
                               stdout=subprocess.PIPE, text=True)
    into.append(process)
    return process


def echoes(client: subprocess.Popen[str], count: int) -> None:
    assert client.stdout is not None
    for _ in range(count):
        assert client.stdout.readline() == "echo\n"


def offloaded(reply_source: str, reply_port: int) -> bool:
    """Whether the TCP flow whose replies come from REPLY_SOURCE:REPLY_PORT is offloaded.
    (Raw messages: pyroute2's entry parser fails on an offloaded entry, which has no TCP
    protoinfo.)"""
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    ct = open_conntrack()
    try:
        statuses = [msg.get_attr("CTA_STATUS") for msg in ct.dump()
                    if _reply(NFCTAttrTuple, msg) == (reply_source, reply_port)]
    finally:
        ct.close()
    print(f"flows replying from {reply_source}:{reply_port}: status {statuses}")
    return any(status & IPS_OFFLOAD for status in statuses)  # earlier probes' entries too


def _reply(attr_tuple: Any, msg: Any) -> tuple[str, int]:
    reply = attr_tuple.from_netlink(msg["nfgen_family"], msg.get_attr("CTA_TUPLE_REPLY"))
    return reply.saddr, reply.sport


def flowtable_devices() -> set[str]:
    listed = json.loads(sh("nft -j list flowtable inet netbay ft").stdout)["nftables"]
    dev = next(o["flowtable"] for o in listed if "flowtable" in o).get("dev", [])
    return {dev} if isinstance(dev, str) else set(dev)


def test_offloaded_flows_arrive_and_a_tightening_stops_the_one_it_concerns(
    host: Host, lan: Lan, namespaces: Any, processes: list[subprocess.Popen[str]]
) -> None:
    sh(f"ip route add default via {LAN_ADDRESS}")  # ext0, where the LAN is: the uplink
    network = host.create_network(
        NetworkSpec(name="fast", subnets=(SubnetConfig(IPv4Network("10.97.0.0/24")),))
    )
    web: Path = namespaces("web")
    _, endpoint = host.attach_sandbox(network, SandboxRequest("web", "cni", web, "eth0"))
    assert endpoint.address is not None
    web_ip = str(endpoint.address.ip)
    host.publish_sandbox_ports("web", "eth0", [PublishSpec(
        "tcp", None, (HOST_PORT, HOST_PORT), (ECHO_PORT, ECHO_PORT))])
    assert flowtable_devices() == {network.device, "ext0"}
    assert "flow add @ft" in sh("nft list chain inet netbay forward").stdout

    run_in(web, ECHO_SERVER, into=processes)
    run_in(lan.netns, ECHO_SERVER, into=processes)
    wait_until(lambda: lan.sh(f"{sys.executable} -c 'import socket; socket.create_connection("
                              f"(\"{HOST_ADDRESS}\", {HOST_PORT}), timeout=3)'", False)
               .returncode == 0, 120, "the published port answering", interval=0.5)
    published = run_in(lan.netns, ECHO_CLIENT, HOST_ADDRESS, str(HOST_PORT), into=processes)
    masqueraded = run_in(web, ECHO_CLIENT, LAN_ADDRESS, str(ECHO_PORT), into=processes)
    echoes(published, 20)
    echoes(masqueraded, 20)
    assert offloaded(web_ip, ECHO_PORT), "the published port's flow is not offloaded"
    assert offloaded(LAN_ADDRESS, ECHO_PORT), "the masqueraded flow is not offloaded"
    echoes(published, 20)  # offloaded, the traffic still arrives
    echoes(masqueraded, 20)

    unpublished = time.monotonic()
    assert host.unpublish_sandbox_ports("web", "eth0")
    published.wait(timeout=60)  # its conntrack entry ended, its offload with it
    ended = time.monotonic() - unpublished
    assert published.stdout is not None
    last = [line for line in published.stdout.read().splitlines() if line != "echo"]
    assert len(last) == 1 and last[0].startswith("ended "), last
    print(f"the published port's flow ended {ended:.2f} s after the unpublish")
    assert not offloaded(web_ip, ECHO_PORT)
    echoes(masqueraded, 20)  # a flow the change does not concern runs on, offloaded
    assert offloaded(LAN_ADDRESS, ECHO_PORT)
    assert IPv4Address(web_ip) in IPv4Network("10.97.0.0/24")
