"""Networks around a parent interface, for the macvlan/ipvlan tests: other machines (a LAN
switch with its gateway, an upstream router) as network namespaces linked to the test host by
veth pairs whose host end is the parent. Plus an in-process ICMP echo, so the VM tier pings
without starting processes (under emulation each process start costs seconds)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

from netbay.kernel import netns


def _run(argv: list[str], stdin: str | None = None) -> str:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"{argv} failed: {result.stderr}{stdin or ''}")
    return result.stdout


class Machine:
    """Another machine: a network namespace pinned at a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name

    def ip(self, *commands: str) -> None:
        """`ip` commands inside, in one process (`ip -batch`)."""
        _run(["nsenter", f"--net={self.path}", "ip", "-b", "-"], "\n".join(commands) + "\n")

    def sh(self, command: str) -> str:
        return _run(["nsenter", f"--net={self.path}", "bash", "-c", command])

    def ping(self, address: str, timeout: float = 3.0) -> bool:
        return ping(address, self.path, timeout)


def host_ip(*commands: str) -> None:
    """`ip` commands in the test's host namespace, in one process."""
    _run(["ip", "-b", "-"], "\n".join(commands) + "\n")


def link_details(name: str, ns: Path | str | None = None) -> dict[str, Any]:
    """`ip -d -j link show NAME` (in NS): kind, mode, flags, address."""
    argv = ["ip", "-d", "-j", "link", "show", "dev", name]
    if ns is not None:
        argv = ["nsenter", f"--net={ns}", *argv]
    return json.loads(_run(argv))[0]  # type: ignore[no-any-return]


class Site:
    """The machines of one test; close() removes them (and with them their links)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.machines: list[Machine] = []

    def machine(self, name: str) -> Machine:
        path = self.tmp / f"m-{name}"
        netns.create(path)
        machine = Machine(path)
        self.machines.append(machine)
        machine.ip("link set lo up")
        return machine

    def cable(self, host_end: str, machine: Machine, their_end: str) -> None:
        """A veth from the test host (HOST_END, up) to MACHINE (THEIR_END, up)."""
        host_ip(
            f"link add {host_end} type veth peer name {their_end} netns {machine.path}",
            f"link set {host_end} up",
        )
        machine.ip(f"link set {their_end} up")

    def close(self) -> None:
        for machine in reversed(self.machines):
            with contextlib.suppress(Exception):
                netns.delete(machine.path)


# --- ICMP echo, in-process ---------------------------------------------------------------
def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(address: str, ns: Path | str | None = None, timeout: float = 3.0) -> bool:
    """True if ADDRESS answers an ICMP echo sent from NS (None: this thread's namespace)
    within TIMEOUT; a request is sent each second, as ping does."""
    with netns.entered(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = (os.getpid() ^ id(sock)) & 0xFFFF
    deadline = time.monotonic() + timeout
    next_send = 0.0
    seq = 0
    with sock:
        while (now := time.monotonic()) < deadline:
            if now >= next_send:
                seq += 1
                header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
                payload = b"netbay-ping"
                packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq)
                with contextlib.suppress(OSError):  # no route, unreachable: maybe later
                    sock.sendto(packet + payload, (address, 0))
                next_send = now + 1.0
            sock.settimeout(max(0.01, min(deadline, next_send) - time.monotonic()))
            try:
                data, (source, _) = sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            start = (data[0] & 0x0F) * 4
            kind, _, _, got_ident, _ = struct.unpack_from("!BBHHH", data, start)
            if kind == 0 and got_ident == ident and source == address:
                return True
    return False
