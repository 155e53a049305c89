"""Netlink for all of netbay: message framing, the socket, and its request and dump loops.

The one module that opens netlink sockets (tests/unit/test_structure.py holds every other
module to that): plain sockets of its own (`NetlinkSocket`, for rtnetlink and nfnetlink),
and pyroute2's IPRoute and Conntrack where a request is not hot (observe's dumps, the
conntrack janitor), wrapped so that pyroute2's NetlinkError comes out as KernelError. Every
failure out of here is a KernelError carrying the errno.

Why not pyroute2 for everything: its IPRoute spends 0.25-1.3 ms of Python on each request (a
turn of its asyncio loop, request filters, a full decode of every reply) where the kernel
needs 0.01-0.4 ms, and the attach path makes six of them (see docs/design.md).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, Self

from ..errors import KernelError
from .netns import entered

# --- linux/netlink.h ---------------------------------------------------------------------
NETLINK_ROUTE = 0
NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x100, 0x200, 0x400, 0x800
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_ATTRIBUTE = struct.Struct("=HH")  # nlattr: length, type
_ERROR = struct.Struct("=i")  # nlmsgerr's first field: the negative errno (0: an ack)
RECEIVE_SIZE = 1 << 16
# an answer that names no object: "already gone" for every remove verb in netbay
GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL)
Netns = str | os.PathLike[str] | None  # a namespace's pinned file; None: the caller's own


class Request(NamedTuple):
    """One request of a batch: what it does (for its error), its type, flags and body."""

    what: str
    kind: int
    flags: int
    body: bytes


class Message(NamedTuple):
    kind: int  # nlmsg_type
    flags: int
    seq: int
    payload: bytes  # what follows the header


# --- encoding ----------------------------------------------------------------------------
def attr(kind: int, payload: bytes) -> bytes:
    """One attribute (nlattr), padded to 4 bytes."""
    size = _ATTRIBUTE.size + len(payload)
    return _ATTRIBUTE.pack(size, kind) + payload + bytes(-size % 4)


def nested(kind: int, *attributes: bytes) -> bytes:
    """An attribute holding ATTRIBUTES (without NLA_F_NESTED, as iproute2 sends the
    rtnetlink ones: IFLA_LINKINFO, IFLA_INFO_DATA...)."""
    return attr(kind, b"".join(attributes))


def u16(value: int) -> bytes:
    return struct.pack("=H", value)


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def be16(value: int) -> bytes:
    return struct.pack("!H", value)


def string(text: str) -> bytes:
    return text.encode() + b"\0"


def pack_message(kind: int, flags: int, seq: int, payload: bytes) -> bytes:
    return HEADER.pack(HEADER.size + len(payload), kind, flags, seq, 0) + payload


# --- decoding ----------------------------------------------------------------------------
def split_messages(data: bytes) -> Iterator[bytes]:
    """Each message of one datagram, its header included."""
    offset = 0
    while offset + HEADER.size <= len(data):
        length = HEADER.unpack_from(data, offset)[0]
        if length < HEADER.size:
            return
        yield data[offset : offset + length]
        offset += (length + 3) & ~3


def parse_message(message: bytes) -> Message:
    length, kind, flags, seq, _ = HEADER.unpack_from(message)
    return Message(kind, flags, seq, message[HEADER.size : length])


def messages(data: bytes) -> Iterator[Message]:
    return (parse_message(m) for m in split_messages(data))


def attributes(payload: bytes, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(type, value) of each attribute from OFFSET on; the type without its flag bits."""
    while offset + _ATTRIBUTE.size <= len(payload):
        size, kind = _ATTRIBUTE.unpack_from(payload, offset)
        if size < _ATTRIBUTE.size:
            return
        yield kind & NLA_TYPE_MASK, payload[offset + _ATTRIBUTE.size : offset + size]
        offset += (size + 3) & ~3


def find_attribute(payload: bytes, offset: int, kind: int) -> bytes | None:
    """The value of the first attribute KIND from OFFSET on (None: none), read no further."""
    return next((value for found, value in attributes(payload, offset) if found == kind), None)


def attribute_map(payload: bytes, offset: int = 0) -> dict[int, bytes]:
    """The attributes from OFFSET on by type (a repeated type: the last one)."""
    return dict(attributes(payload, offset))


def read_u32(value: bytes) -> int:
    return int(struct.unpack_from("=I", value)[0])


def read_string(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace")


def error_code(payload: bytes) -> int:
    """The errno of an NLMSG_ERROR (or NLMSG_DONE) message; 0 for an ack."""
    return -int(_ERROR.unpack_from(payload)[0]) if len(payload) >= _ERROR.size else 0


def kernel_error(what: str, code: int) -> KernelError:
    return KernelError(f"{what}: {os.strerror(code)}", code)


# --- the socket --------------------------------------------------------------------------
class Resource:
    """Something to close(): by hand, or at the end of a with block."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NetlinkSocket(Resource):
    """A netlink socket, bound to the namespace it was opened in. Made by route_socket()
    or netfilter_socket(); one request at a time (not shared between threads unlocked)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._seq = 0
        self._timeout: float | None = None

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def frame(self, kind: int, flags: int, body: bytes) -> tuple[int, bytes]:
        """(sequence, message) of a request that the kernel will answer with an ack."""
        self._seq += 1
        return self._seq, pack_message(kind, flags | NLM_F_REQUEST | NLM_F_ACK, self._seq, body)

    def send(self, message: bytes) -> None:
        try:
            self._sock.send(message)
        except OSError as exc:
            raise kernel_error("netlink send", exc.errno or errno.EIO) from exc

    def request(self, what: str, kind: int, flags: int = 0, body: bytes = b"") -> list[bytes]:
        """Send a request; return the payloads of its replies (a dump's messages, or what
        a get answers). A failure raises KernelError "WHAT: strerror" with the errno."""
        seq, message = self.frame(kind, flags, body)
        try:
            self._sock.send(message)
            return self._replies(what, seq)
        except OSError as exc:
            raise kernel_error(what, exc.errno or errno.EIO) from exc

    def dump(self, what: str, kind: int, body: bytes) -> list[bytes]:
        return self.request(what, kind, NLM_F_DUMP, body)

    def batch(self, requests: Sequence[Request], accept: Sequence[int] = ()) -> None:
        """REQUESTS in one datagram, one round trip: the kernel handles them in order, each
        with its own ack, and goes on past a failed one. Every ack is read; then the first
        failure whose errno is not in ACCEPT raises KernelError "WHAT: strerror"."""
        framed = [self.frame(kind, flags, body) for _, kind, flags, body in requests]
        self.send(b"".join(message for _, message in framed))
        waiting = {seq for seq, _ in framed}
        codes: dict[int, int] = {}
        try:
            while waiting:
                for kind, _, seq, payload in messages(self._sock.recv(RECEIVE_SIZE)):
                    if kind == NLMSG_ERROR and seq in waiting:
                        codes[seq] = error_code(payload)
                        waiting.discard(seq)
        except OSError as exc:
            raise kernel_error(requests[0].what, exc.errno or errno.EIO) from exc
        for request, (seq, _) in zip(requests, framed, strict=True):
            code = codes.get(seq, 0)
            if code and code not in accept:
                raise kernel_error(request.what, code)

    def _replies(self, what: str, seq: int) -> list[bytes]:
        replies: list[bytes] = []
        while True:
            for kind, _, found_seq, payload in messages(self._sock.recv(RECEIVE_SIZE)):
                if found_seq != seq:
                    continue
                if kind != NLMSG_ERROR and kind != NLMSG_DONE:
                    replies.append(payload)
                    continue
                code = error_code(payload)
                if code:
                    raise kernel_error(what, code)
                return replies

    def receive(self, timeout: float | None) -> bytes | None:
        """One datagram (notifications, or answers to frame()d requests sent with send()),
        or None when none came within TIMEOUT seconds (None: wait for one)."""
        if timeout != self._timeout:
            self._sock.settimeout(timeout)
            self._timeout = timeout
        try:
            return self._sock.recv(RECEIVE_SIZE)
        except (TimeoutError, BlockingIOError):
            return None
        except OSError as exc:  # ENOBUFS: notifications overran the socket and were lost
            raise kernel_error("netlink receive", exc.errno or errno.EIO) from exc


def _open(
    protocol: int, netns: Netns, groups: Sequence[int], receive_buffer: int | None
) -> NetlinkSocket:
    try:
        with entered(netns):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                 protocol)
    except OSError as exc:
        raise kernel_error(f"netlink socket in {netns or 'this namespace'}",
                           exc.errno or errno.EIO) from exc
    try:
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind((0, 0))
        for group in groups:
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
    except OSError as exc:
        sock.close()
        raise kernel_error("netlink bind", exc.errno or errno.EIO) from exc
    return NetlinkSocket(sock)


def route_socket(
    netns: Netns = None, *, groups: Sequence[int] = (),
    receive_buffer: int | None = None,
) -> NetlinkSocket:
    """An rtnetlink socket in NETNS (None: the calling thread's namespace), joined to the
    multicast GROUPS (RTNLGRP_* numbers) if any."""
    return _open(NETLINK_ROUTE, netns, groups, receive_buffer)


def netfilter_socket(
    *, groups: Sequence[int] = (), receive_buffer: int | None = None
) -> NetlinkSocket:
    """An nfnetlink socket in the calling thread's namespace, joined to GROUPS (NFNLGRP_*)."""
    return _open(NETLINK_NETFILTER, None, groups, receive_buffer)


# --- pyroute2, off the hot path ----------------------------------------------------------
class PyRoute2(Resource):
    """A pyroute2 socket (IPRoute, Conntrack): its methods, with NetlinkError (and OSError)
    raised as KernelError and dumps returned as lists (pyroute2's generators would fail
    later, where nothing converts their errors)."""

    def __init__(self, target: Any, where: str) -> None:
        self._target = target
        self._where = where

    def __getattr__(self, name: str) -> Callable[..., Any]:
        from pyroute2.netlink.exceptions import NetlinkError

        method = getattr(self._target, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = method(*args, **kwargs)
                return list(result) if isinstance(result, Iterator) else result
            except (NetlinkError, OSError) as exc:
                what = " ".join([name, *(a for a in args if isinstance(a, str))])
                code = exc.code if isinstance(exc, NetlinkError) else exc.errno or errno.EIO
                raise kernel_error(f"{what} in {self._where}", code) from exc

        return call

    def close(self) -> None:
        self._target.close()


def _pyroute2(make: Callable[[], Any], netns: Netns) -> PyRoute2:
    where = str(netns) if netns is not None else "this namespace"
    try:
        with entered(netns):
            return PyRoute2(make(), where)
    except OSError as exc:
        raise kernel_error(f"cannot open netlink in {where}", exc.errno or errno.EIO) from exc


def open_iproute(netns: Netns = None) -> PyRoute2:
    """pyroute2's IPRoute in NETNS (None: ours), subscribed to no events."""
    from pyroute2 import IPRoute

    return _pyroute2(lambda: IPRoute(groups=0), netns)


def open_conntrack(netns: Netns = None, version: int = 4) -> PyRoute2:
    """pyroute2's Conntrack (ctnetlink) in NETNS (None: ours), for the entries of one
    family (ctnetlink dumps and deletes those of the family a request names)."""
    from pyroute2 import Conntrack

    family = socket.AF_INET if version == 4 else socket.AF_INET6
    return _pyroute2(lambda: Conntrack(nfgen_family=family), netns)
