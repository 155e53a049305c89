"""The prober of the convergence benchmark (convergence.py): runs inside a container, with the
system's python3 (stdlib only), and pings what it is told in a tight loop until the first
reply. A line on stdin, `ADDRESS TIMEOUT`, starts a probe: an ICMP echo request to ADDRESS
every millisecond; it prints `probing` once the first is sent, then `reply T` (T: this
machine's CLOCK_MONOTONIC when the first echo reply from ADDRESS arrived; the clock every
namespace shares) or `timeout` after TIMEOUT seconds, and waits for the next line.

    python3 first_reply.py      (as root: a raw ICMP socket)
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import sys
import time

INTERVAL_S = 0.001
ECHO_REQUEST, ECHO_REPLY = 8, 0


def checksum(data: bytes) -> int:
    """The internet checksum (RFC 1071) of DATA, an even number of bytes."""
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = sum(words)
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, sequence: int) -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, sequence)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(header), ident, sequence)


def is_reply(packet: bytes, ident: int) -> bool:
    """PACKET (an IPv4 datagram, as a raw socket receives it) is an echo reply to IDENT."""
    start = (packet[0] & 0x0F) * 4
    if len(packet) < start + 8:
        return False
    fields: tuple[int, ...] = struct.unpack("!BBHHH", packet[start:start + 8])
    return fields[0] == ECHO_REPLY and fields[3] == ident


def drain(sock: socket.socket) -> None:
    """Drop what an earlier probe left in the socket's queue (replies still in flight)."""
    while select.select([sock], [], [], 0)[0]:
        sock.recv(65536)


def probe(sock: socket.socket, address: str, timeout: float, ident: int) -> float | None:
    """The monotonic time of ADDRESS's first echo reply to IDENT; None after TIMEOUT s."""
    deadline = time.monotonic() + timeout
    sequence, next_send = 0, 0.0
    while (now := time.monotonic()) < deadline:
        if now >= next_send:
            with contextlib.suppress(OSError):  # no route yet: the next one may have one
                sock.sendto(echo_request(ident, sequence & 0xFFFF), (address, 0))
            if sequence == 0:
                print("probing", flush=True)
            sequence, next_send = sequence + 1, now + INTERVAL_S
        wait = max(0.0, min(next_send, deadline) - time.monotonic())
        if select.select([sock], [], [], wait)[0]:
            packet, (source, _) = sock.recvfrom(65536)
            if source == address and is_reply(packet, ident):
                return time.monotonic()
    return None


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    base = os.getpid()
    for number, line in enumerate(sys.stdin):
        address, timeout = line.split()
        drain(sock)
        ident = (base + number) & 0xFFFF  # a late reply to an earlier probe is not this one's
        replied = probe(sock, address, float(timeout), ident)
        print("timeout" if replied is None else f"reply {replied:.6f}", flush=True)


if __name__ == "__main__":
    main()
