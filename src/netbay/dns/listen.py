"""The DNS server's listening sockets: UDP and TCP on a gateway's port 53, bound to the
network's bridge. Light on purpose: the daemon binds the first network's sockets itself
(supervisor.py) and hands them to the server it starts, so a container can send its first
query while the server is still loading (it waits in the socket's queue, not refused).

An IPv6 gateway gets AF_INET6 sockets, IPV6_V6ONLY (they take no IPv4-mapped traffic).
Both families bind with FREEBIND: without it, binding fails with EADDRNOTAVAIL while the
gateway address is not there yet, or (IPv6) still tentative, since the kernel does not
count an address under duplicate address detection as the host's until DAD ends. netbay
adds IPv6 gateways with NODAD, but a bridge brought up by hand, or an address re-added by
someone else, would be tentative for a second or so; with FREEBIND the socket is bound at
once and receives as soon as the address is usable, as for IPv4.
"""

from __future__ import annotations

import socket

from .records import ListenPoint

PORT = 53
_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IPV6_FREEBIND = getattr(socket, "IPV6_FREEBIND", 78)  # Linux 4.15; not in Python's module

Key = tuple[str, str, int]  # address, device, ifindex: a re-made bridge gets new sockets
Pair = tuple[socket.socket, socket.socket]  # UDP, TCP


def key_of(point: ListenPoint) -> Key:
    if point.device is None:
        return str(point.address), "", 0
    return str(point.address), point.device, socket.if_nametoindex(point.device)


def open_socket(point: ListenPoint, kind: int, port: int = PORT) -> socket.socket:
    v6 = point.address.version == 6
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # the gateway address may come later (or, IPv6, still be tentative)
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
        else:
            sock.setsockopt(socket.SOL_IP, _IP_FREEBIND, 1)
        if point.device is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, point.device.encode())
        if kind == socket.SOCK_DGRAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((str(point.address), port))
        if kind == socket.SOCK_STREAM:
            sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def open_pair(point: ListenPoint, port: int = PORT) -> Pair:
    """(UDP, TCP) for POINT; OSError if either cannot be bound (neither is kept)."""
    udp = open_socket(point, socket.SOCK_DGRAM, port)
    try:
        return udp, open_socket(point, socket.SOCK_STREAM, port)
    except BaseException:
        udp.close()
        raise


def handoff_arg(key: Key, pair: Pair) -> str:
    """One `--listen` argument of the server: KEY and the descriptors of its UDP and TCP
    sockets, as inherited."""
    address, device, ifindex = key
    return f"{address},{device},{ifindex},{pair[0].fileno()},{pair[1].fileno()}"


def adopt(arg: str) -> tuple[Key, Pair]:
    """The sockets a `--listen` argument names (handoff_arg's inverse)."""
    address, device, ifindex, udp, tcp = arg.split(",")
    return (address, device, int(ifindex)), (socket.socket(fileno=int(udp)),
                                             socket.socket(fileno=int(tcp)))
