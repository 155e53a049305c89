"""recvmmsg(2) and sendmmsg(2) for the UDP hot path: a burst of queries in one system call,
their answers in another. Python's socket module has neither, so this is hand-written on
ctypes, in this one place (measured in docs/design.md, "The DNS server's hot path").

The message headers live in one bytearray laid out as the kernel's `struct mmsghdr` array
(x86-64 and other LP64 Linux ABIs): msghdr of 56 bytes (name pointer, name length, iovec
pointer, iovec count, control pointer and length, flags), then msg_len, padded to 64. Fields
are read and written through memoryviews cast to 32- and 64-bit integers, so a field costs an
index, not a ctypes attribute. Each slot has its own 2,048-byte buffer and its own 28-byte
address (a sockaddr_in6 holds either family); an answer goes back to the address its query
came from by pointing the sending header at that same address.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import sys
from typing import Any

Peer = tuple[Any, ...]  # a sender's address as socket.recvfrom gives it, for sendto
SLOTS = 32  # queries taken per call at most (dnsperf keeps up to 100 in flight)
BUFFER = 2048  # a query larger than this is not DNS over UDP we answer (MAX_UDP is 1,232)
NAME = 28  # sizeof(struct sockaddr_in6)
HEADER = 64  # sizeof(struct mmsghdr) on LP64
IOVEC = 16
MSG_WAITFORONE = 0x10000
# u64 indices into a header (8-byte fields) and u32 indices (4-byte fields)
_NAME_PTR, _IOV_PTR, _IOV_LEN = 0, 2, 3
_NAMELEN, _MSG_LEN = 2, 14

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                      ctypes.c_void_p)
_recvmmsg.restype = ctypes.c_int
_sendmmsg = _libc.sendmmsg
_sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
_sendmmsg.restype = ctypes.c_int


def _address(buffer: bytearray) -> int:
    return ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))


class Shutdown(Exception):
    """The socket was shut down (how UdpListener.stop wakes its thread)."""


class Batches:
    """The buffers of one socket's bursts: receive() fills slots with queries, answer() puts
    an answer for a slot in the next sending header, send() sends those answered."""

    def __init__(self, family: int) -> None:
        self._peer_slice = (4, 8) if family == socket.AF_INET else (8, 24)
        self._family = family
        self._data = bytearray(SLOTS * BUFFER)
        self._names = bytearray(SLOTS * NAME)
        self._iovecs = bytearray(SLOTS * IOVEC)  # receiving: one per slot, BUFFER long
        self._out_iovecs = bytearray(SLOTS * IOVEC)
        self._out_data = bytearray(SLOTS * BUFFER)
        self._received = bytearray(SLOTS * HEADER)
        self._sending = bytearray(SLOTS * HEADER)
        self._data_view = memoryview(self._data)
        self._names_view = memoryview(self._names)
        self._out_view = memoryview(self._out_data)
        self._in32 = memoryview(self._received).cast("I")
        self._out64 = memoryview(self._sending).cast("Q")
        self._out32 = memoryview(self._sending).cast("I")
        self._out_iov64 = memoryview(self._out_iovecs).cast("Q")
        self._received_at = _address(self._received)
        self._sending_at = _address(self._sending)
        self._names_at = _address(self._names)
        self._lay_out()
        self.pending = 0  # answers waiting in the sending headers

    def _lay_out(self) -> None:
        """Point every header at its slot's address and buffer: fixed for the object's life
        (bytearrays that are never resized do not move)."""
        data_at, out_at = _address(self._data), _address(self._out_data)
        iov_at, out_iov_at = _address(self._iovecs), _address(self._out_iovecs)
        in64 = memoryview(self._received).cast("Q")
        iov64 = memoryview(self._iovecs).cast("Q")
        for slot in range(SLOTS):
            iov64[slot * 2], iov64[slot * 2 + 1] = data_at + slot * BUFFER, BUFFER
            self._out_iov64[slot * 2] = out_at + slot * BUFFER
            h = slot * HEADER // 8
            in64[h + _NAME_PTR] = self._names_at + slot * NAME
            in64[h + _IOV_PTR], in64[h + _IOV_LEN] = iov_at + slot * IOVEC, 1
            self._out64[h + _IOV_PTR] = out_iov_at + slot * IOVEC
            self._out64[h + _IOV_LEN] = 1

    def receive(self, fd: int) -> int:
        """Block until a query comes, then take up to SLOTS that are there: how many."""
        in32 = self._in32
        for slot in range(SLOTS):
            in32[slot * 16 + _NAMELEN] = NAME
        count: int = _recvmmsg(fd, self._received_at, SLOTS, MSG_WAITFORONE, None)
        if count < 0:
            code = ctypes.get_errno()
            if code == 4:  # EINTR
                return 0
            raise OSError(code, os.strerror(code))
        if count == 0 or in32[_NAMELEN] == 0:  # no sender: shut down
            raise Shutdown
        return count

    def query(self, slot: int) -> bytes:
        start = slot * BUFFER
        return bytes(self._data_view[start : start + self._in32[slot * 16 + _MSG_LEN]])

    def peer_address(self, slot: int) -> bytes:
        """The packed address (4 or 16 bytes) the query in SLOT came from."""
        first, last = self._peer_slice
        return bytes(self._names_view[slot * NAME + first : slot * NAME + last])

    def peer(self, slot: int) -> Peer:
        """Where the query in SLOT came from, as socket.recvfrom gives it: (host, port), and
        for IPv6 its flow label and scope too (a link-local sender needs its scope)."""
        base = slot * NAME
        names = self._names_view
        host = socket.inet_ntop(self._family, self.peer_address(slot))
        port = int.from_bytes(names[base + 2 : base + 4], "big")
        if self._family == socket.AF_INET:
            return host, port
        flow = int.from_bytes(names[base + 4 : base + 8], "big")
        scope = int.from_bytes(names[base + 24 : base + 28], sys.byteorder)
        return host, port, flow, scope

    def answer(self, slot: int, out: bytes) -> None:
        """OUT goes back to where SLOT's query came from, at the next send()."""
        index = self.pending
        start = index * BUFFER
        self._out_view[start : start + len(out)] = out
        self._out_iov64[index * 2 + 1] = len(out)
        self._out64[index * 8 + _NAME_PTR] = self._names_at + slot * NAME
        self._out32[index * 16 + _NAMELEN] = self._in32[slot * 16 + _NAMELEN]
        self.pending = index + 1

    def send(self, fd: int) -> None:
        """The answers given since the last send(). sendmmsg stops at the first that fails
        (a full send buffer, a peer gone): that one is dropped, as sendto's would be (the
        client asks again), and the rest still go."""
        count, self.pending = self.pending, 0
        done = 0
        while done < count:
            sent: int = _sendmmsg(fd, self._sending_at + done * HEADER, count - done, 0)
            done += sent if sent > 0 else 1
