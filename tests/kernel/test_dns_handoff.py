"""The first listen points bound by the daemon and handed to the DNS server it starts
(dns/supervisor.py `_start_bound`, dns/listen.py): the change that needs them returns before
the server has loaded, and a query sent meanwhile is answered once it has."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import wait_until
from netbay import AttachRequest, ContainerSpec, Host, NetworkSpec
from netbay.dns.supervisor import DnsSupervisor

pytestmark = pytest.mark.kernel
DNSPROBE = str(Path(__file__).parents[1] / "dnsprobe.py")
SO_ACCEPTCONN = 30


def _first_container(host: Host) -> tuple[str, str]:
    """(gateway, container's address) of asgard's first container, made with its network."""
    host.create_network(NetworkSpec(name="asgard"))
    container = host.create_container(ContainerSpec(
        command=("sleep", "infinity"), name="env1", networks=(AttachRequest("asgard"),)))
    (endpoint,) = host.store.endpoints(container_id=container.id)
    gateway = host.network("asgard").subnets[0].gateway
    assert endpoint.address is not None
    return str(gateway), str(endpoint.address.ip)


class NeverReady:
    """Stands in for subprocess.Popen of the server: notes what it was handed and never
    says ready (until the test closes the control socket it kept)."""

    started: list[NeverReady] = []

    def __init__(self, argv: list[str], pass_fds: list[int], **_: Any) -> None:
        self.argv = argv
        self.pid = 0
        self.returncode: int | None = None
        control = int(argv[argv.index("--control-fd") + 1])
        self.control = socket.socket(fileno=os.dup(control))
        self.inherited = set(pass_fds)
        self.listen = [self._describe(arg) for i, arg in enumerate(argv)
                       if i and argv[i - 1] == "--listen"]
        NeverReady.started.append(self)

    def _describe(self, arg: str) -> dict[str, Any]:
        address, device, ifindex, udp, tcp = arg.split(",")
        assert {int(udp), int(tcp)} <= self.inherited
        described: dict[str, Any] = {"key": (address, device, int(ifindex))}
        for name, fd in (("udp", int(udp)), ("tcp", int(tcp))):
            with socket.socket(fileno=os.dup(fd)) as sock:
                described[name] = (sock.type, sock.getsockname(),
                                   sock.getsockopt(socket.SOL_SOCKET, SO_ACCEPTCONN),
                                   sock.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE,
                                                   16).rstrip(b"\0").decode())
        return described

    def quit(self) -> None:
        self.returncode = 0
        self.control.close()

    def poll(self) -> int | None:
        return self.returncode

    def terminate(self) -> None:
        self.quit()

    def wait(self, timeout: float | None = None) -> int:
        return 0


def test_the_first_listen_points_are_bound_before_the_server_loads(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway, _ = _first_container(host)
    bridge = host.network("asgard").device
    assert bridge is not None
    monkeypatch.setattr(subprocess, "Popen", NeverReady)
    NeverReady.started = []
    dns = DnsSupervisor(host.paths, host.store)
    try:
        dns.sync()  # returns although no server ever said ready
        assert dns.health()["phase"] == "starting"
        wait_until(lambda: NeverReady.started, 10, "the server's process to be started")
        (server,) = NeverReady.started
        assert server.listen == [{
            "key": (gateway, bridge, socket.if_nametoindex(bridge)),
            "udp": (socket.SOCK_DGRAM, (gateway, 53), 0, bridge),
            "tcp": (socket.SOCK_STREAM, (gateway, 53), 1, bridge),
        }]
    finally:
        for server in NeverReady.started:
            server.quit()
        dns.close()


def test_a_query_sent_before_the_server_loaded_is_answered(host: Host) -> None:
    gateway, address = _first_container(host)
    (container,) = host.store.containers()
    dns = DnsSupervisor(host.paths, host.store)
    try:
        dns.sync()
        out = subprocess.run(
            ["nsenter", f"--net={container.netns}", sys.executable, DNSPROBE, "query",
             gateway, "env1", "--timeout", "10"],
            capture_output=True, text=True, timeout=30, check=True)
        assert json.loads(out.stdout)["answers"] == [address]
        assert dns.health()["listening"] == [gateway]
    finally:
        dns.close()
