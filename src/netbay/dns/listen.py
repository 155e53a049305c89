"""The DNS server's listening sockets: UDP and TCP on a gateway's port 53, bound to the
network's bridge. Light on purpose: the daemon binds the first network's sockets itself
(supervisor.py) and hands them to the server it starts, so a container can send its first
query while the server is still loading (it waits in the socket's queue, not refused).
"""

from __future__ import annotations

import socket

from .records import ListenPoint

PORT = 53
_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)

Key = tuple[str, str, int]  # address, device, ifindex: a re-made bridge gets new sockets
Pair = tuple[socket.socket, socket.socket]  # UDP, TCP


def key_of(point: ListenPoint) -> Key:
    if point.device is None:
        return str(point.address), "", 0
    return str(point.address), point.device, socket.if_nametoindex(point.device)


def open_socket(point: ListenPoint, kind: int, port: int = PORT) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_IP, _IP_FREEBIND, 1)  # the gateway address may come later
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
