"""Netlink, one socket per namespace, opened in-process.

Everything here is an `ensure`/`remove` verb: "already exists" is checked and accepted,
"already gone" is success, so setup can be retried and teardown is idempotent.

The hot path's requests (veth add, link lookup, link up, address, default route, link delete)
have a fixed shape and go out on a plain netlink socket, encoded here (`_Channel`): pyroute2's
IPRoute spends 0.25-1.3 ms of Python on each request (a turn of its asyncio loop, request
filters, a full decode of every reply) where the kernel needs 0.01-0.4 ms. Dumps and the rest
go through pyroute2's IPRoute, opened on first use.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import struct
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..errors import KernelError
from .netns import entered

_GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL)


def _kernel_error(what: str, exc: NetlinkError) -> KernelError:
    return KernelError(f"{what}: {exc.args[1] if len(exc.args) > 1 else exc}", exc.code)


# --- rtnetlink wire format (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h) -------------
_NLMSG_ERROR = 2
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
_RTM_NEWLINK, _RTM_DELLINK, _RTM_GETLINK, _RTM_NEWADDR, _RTM_NEWROUTE = 16, 17, 18, 20, 24
_RTMGRP_LINK = 0x1
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_MASTER, _IFLA_LINKINFO = 1, 3, 4, 10, 18
_IFLA_NET_NS_FD, _IFLA_EXT_MASK = 28, 29
_IFLA_INFO_KIND, _IFLA_INFO_DATA, _VETH_INFO_PEER = 1, 2, 1
_IFLA_INFO_SLAVE_KIND, _IFLA_INFO_SLAVE_DATA, _IFLA_BRPORT_MODE = 4, 5, 4
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_RTA_GATEWAY = 5
_RT_TABLE_MAIN, _RTPROT_STATIC, _RT_SCOPE_UNIVERSE, _RTN_UNICAST = 254, 4, 0, 1
_IFF_UP = 0x1
_RTEXT_FILTER_SKIP_STATS = 1 << 3
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBi")  # family, prefix length, flags, scope, index
# family, dst and src prefix lengths, tos, table, protocol, scope, type, flags
_RTMSG = struct.Struct("=BBBBBBBBI")
_RECV_SIZE = 65536


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + bytes(-size % 4)


def _u32(value: int) -> bytes:
    return struct.pack("=I", value)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def _ifinfomsg(index: int = 0, up: bool = False) -> bytes:
    flags = _IFF_UP if up else 0
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, flags)


def _messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(type, sequence, payload) of each message in one datagram."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _, seq, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            return
        yield kind, seq, data[offset + _HEADER.size : offset + length]
        offset += (length + 3) & ~3


def _attribute(payload: bytes, offset: int, kind: int) -> bytes | None:
    """The value of the first attribute KIND found from OFFSET on, or None."""
    while offset + 4 <= len(payload):
        size, found = struct.unpack_from("=HH", payload, offset)
        if size < 4:
            return None
        if found & 0x3FFF == kind:
            return payload[offset + 4 : offset + size]
        offset += (size + 3) & ~3
    return None


def _error_code(payload: bytes) -> int:
    """The errno of an NLMSG_ERROR message (0: an ack)."""
    return -int(struct.unpack_from("=i", payload)[0])


class _Channel:
    """A plain rtnetlink socket of the calling thread's namespace; one request at a time."""

    def __init__(self, groups: int = 0) -> None:
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        try:
            self.sock.bind((0, groups))
        except OSError:
            self.sock.close()
            raise
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    def encode(self, kind: int, flags: int, body: bytes) -> tuple[int, bytes]:
        """(sequence, message) of a request that the kernel will ack."""
        self._seq += 1
        flags |= _NLM_F_REQUEST | _NLM_F_ACK
        return self._seq, _HEADER.pack(_HEADER.size + len(body), kind, flags, self._seq, 0) + body

    def request(self, kind: int, flags: int = 0, body: bytes = b"") -> list[bytes]:
        """Send a request and return the payloads of its replies; a failure raises
        NetlinkError, as pyroute2 does."""
        seq, message = self.encode(kind, flags, body)
        self.sock.send(message)
        replies = []
        while True:
            for found, found_seq, payload in _messages(self.sock.recv(_RECV_SIZE)):
                if found_seq != seq:
                    continue
                if found != _NLMSG_ERROR:
                    replies.append(payload)
                    continue
                code = _error_code(payload)
                if code:
                    raise NetlinkError(code, os.strerror(code))
                return replies


class Netlink:
    """A netlink socket bound to one network namespace (None: the caller's own)."""

    def __init__(self, netns: Path | str | None = None) -> None:
        self._netns = netns
        with entered(netns):
            self._channel = _Channel()

    @functools.cached_property
    def _ipr(self) -> Any:
        """pyroute2, for dumps and the requests off the hot path; not subscribed to events."""
        with entered(self._netns):
            return IPRoute(groups=0)

    def close(self) -> None:
        self._channel.close()
        if "_ipr" in self.__dict__:
            self._ipr.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- links -------------------------------------------------------------------------
    def link(self, name: str) -> Any | None:
        try:
            return self._ipr.link("get", ifname=name)[0]
        except NetlinkError as exc:
            if exc.code in _GONE:
                return None
            raise _kernel_error(f"get link {name}", exc) from exc

    def index(self, name: str) -> int | None:
        """One targeted request (RTM_GETLINK by name, statistics left out)."""
        body = (
            _ifinfomsg()
            + _attr(_IFLA_IFNAME, _name(name))
            + _attr(_IFLA_EXT_MASK, _u32(_RTEXT_FILTER_SKIP_STATS))
        )
        try:
            replies = self._channel.request(_RTM_GETLINK, 0, body)
        except NetlinkError as exc:
            if exc.code in _GONE:
                return None
            raise _kernel_error(f"get link {name}", exc) from exc
        return int(_IFINFOMSG.unpack_from(replies[0])[2])

    def links(self) -> list[Any]:
        return list(self._ipr.link("dump"))

    def ensure_bridge(self, name: str, mtu: int | None) -> tuple[int, bool]:
        """Return (index, created). An existing link of another kind is an error."""
        existing = self.link(name)
        if existing is not None:
            if link_kind(existing) != "bridge":
                raise KernelError(f"{name} exists and is not a bridge", errno.EEXIST)
            return int(existing["index"]), False
        extra: dict[str, Any] = {"mtu": mtu} if mtu else {}
        # A fixed MAC of its own: left random, the kernel gives the bridge the lowest MAC of
        # its ports, so adding or removing a container changes the gateway's MAC and the
        # other containers lose the gateway (DNS, egress) until their ARP entry times out.
        mac = bytearray(os.urandom(6))
        mac[0] = (mac[0] & 0xFE) | 0x02  # unicast, locally administered
        extra["address"] = ":".join(f"{b:02x}" for b in mac)
        try:
            self._ipr.link("add", ifname=name, kind="bridge", **extra)
        except NetlinkError as exc:
            raise _kernel_error(f"create bridge {name}", exc) from exc
        index = self.index(name)
        assert index is not None
        self.set_up(index)
        return index, True

    def add_veth(
        self,
        host_name: str,
        peer_name: str,
        peer_netns: Path | str,
        *,
        master: int,
        peer_mac: str | None,
        mtu: int | None,
    ) -> None:
        """One request: the veth pair, its host end enslaved and up, the peer born inside the
        container's namespace (no move), with its MAC. The peer cannot be brought up here
        (the kernel refuses to open a veth end before its pair is complete)."""
        fd = os.open(peer_netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            peer = _attr(_IFLA_IFNAME, _name(peer_name)) + _attr(_IFLA_NET_NS_FD, _u32(fd))
            if peer_mac:
                peer += _attr(_IFLA_ADDRESS, bytes.fromhex(peer_mac.replace(":", "")))
            if mtu:
                peer += _attr(_IFLA_MTU, _u32(mtu))
            info = _attr(_IFLA_INFO_KIND, _name("veth")) + _attr(
                _IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, _ifinfomsg() + peer)
            )
            body = _ifinfomsg(up=True) + _attr(_IFLA_IFNAME, _name(host_name))
            body += _attr(_IFLA_MASTER, _u32(master))
            if mtu:
                body += _attr(_IFLA_MTU, _u32(mtu))
            body += _attr(_IFLA_LINKINFO, info)
            self._channel.request(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, body)
        except NetlinkError as exc:
            raise _kernel_error(f"create veth {host_name}", exc) from exc
        finally:
            os.close(fd)

    def set_up(self, index: int) -> None:
        try:
            self._channel.request(_RTM_NEWLINK, 0, _ifinfomsg(index, up=True))
        except NetlinkError as exc:
            raise _kernel_error(f"set link {index} up", exc) from exc

    def remove_link(self, name: str) -> bool:
        """Delete a link by name; True if it was there.

        Returns once the kernel has unlisted the link (and a veth's peer, in whatever
        namespace): its RTM_DELLINK notification. The request itself returns only after the
        kernel has also waited out an RCU barrier (~16 ms here, for any link), so a helper
        thread sends it and sits that wait out instead of the caller.
        """
        with entered(self._netns):
            watch = _Channel(groups=_RTMGRP_LINK)
        watch.sock.settimeout(0.05)
        body = _ifinfomsg() + _attr(_IFLA_IFNAME, _name(name))
        seq, message = watch.encode(_RTM_DELLINK, 0, body)
        finished = threading.Event()
        failed: list[OSError] = []

        def send() -> None:
            try:
                watch.sock.send(message)
            except OSError as exc:
                failed.append(exc)
            finally:
                finished.wait()  # the caller has its answer: nobody reads the socket any more
                watch.close()

        sender = threading.Thread(target=send, name="netbay-unlink", daemon=True)
        try:
            sender.start()
        except RuntimeError:  # no new thread (interpreter shutdown): wait for the ack here
            watch.close()
            return self._delete_link(name)
        try:
            return _await_unlisted(watch, seq, name, failed)
        finally:
            finished.set()

    def _delete_link(self, name: str) -> bool:
        try:
            self._channel.request(_RTM_DELLINK, 0, _ifinfomsg() + _attr(_IFLA_IFNAME, _name(name)))
            return True
        except NetlinkError as exc:
            if exc.code in _GONE:
                return False
            raise _kernel_error(f"delete link {name}", exc) from exc

    # --- addresses and routes ----------------------------------------------------------
    def ensure_address(self, index: int, address: IPv4Interface) -> None:
        ip = address.ip.packed
        body = _IFADDRMSG.pack(socket.AF_INET, address.network.prefixlen, 0, 0, index)
        body += _attr(_IFA_LOCAL, ip) + _attr(_IFA_ADDRESS, ip)
        try:
            self._channel.request(_RTM_NEWADDR, _NLM_F_CREATE | _NLM_F_EXCL, body)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise _kernel_error(f"add address {address}", exc) from exc

    def ensure_default_route(self, gateway: IPv4Address) -> None:
        body = _RTMSG.pack(
            socket.AF_INET, 0, 0, 0, _RT_TABLE_MAIN, _RTPROT_STATIC, _RT_SCOPE_UNIVERSE,
            _RTN_UNICAST, 0,
        )
        body += _attr(_RTA_GATEWAY, gateway.packed)
        try:
            self._channel.request(_RTM_NEWROUTE, _NLM_F_CREATE | _NLM_F_EXCL, body)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise _kernel_error(f"add default route via {gateway}", exc) from exc

    def has_default_route(self) -> bool:
        return any(r.get("dst_len") == 0 for r in self._ipr.route("dump", family=2, table=254))

    def addresses(self) -> Iterator[IPv4Interface]:
        for msg in self._ipr.addr("dump", family=2):
            yield IPv4Interface(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}")

    def routed_networks(self) -> Iterator[IPv4Network]:
        """Destinations of the main table's routes, the default route left out."""
        for msg in self._ipr.route("dump", family=2, table=254):
            if msg.get("dst_len"):
                yield IPv4Network(f"{msg.get('RTA_DST')}/{msg['dst_len']}", strict=False)

    def routes(self) -> list[dict[str, str]]:
        out = []
        names = {int(m["index"]): m.get("IFLA_IFNAME") for m in self.links()}
        for msg in self._ipr.route("dump", family=2, table=254):
            dst = f"{msg.get('RTA_DST')}/{msg['dst_len']}" if msg.get("dst_len") else "default"
            entry = {"dst": dst, "dev": names.get(msg.get("RTA_OIF"), "")}
            if msg.get("RTA_GATEWAY"):
                entry["gateway"] = msg.get("RTA_GATEWAY")
            out.append(entry)
        return out


def _await_unlisted(watch: _Channel, seq: int, name: str, failed: list[OSError]) -> bool:
    """Wait on WATCH (subscribed to link events) for NAME's RTM_DELLINK notification, or
    for the ack of the delete request SEQ when there is nothing to delete or it fails."""
    wanted = _name(name)
    while True:
        try:
            data = watch.sock.recv(_RECV_SIZE)
        except TimeoutError:
            if failed:
                error = failed[0]
                raise KernelError(f"delete link {name}: {error}", error.errno or 0) from None
            continue
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:  # events overran the socket: the ack still comes
                continue
            raise
        for kind, found_seq, payload in _messages(data):
            if kind == _NLMSG_ERROR and found_seq == seq:
                code = _error_code(payload)
                if code in _GONE:
                    return False
                if code:
                    error = NetlinkError(code, os.strerror(code))
                    raise _kernel_error(f"delete link {name}", error)
                return True
            if (
                kind == _RTM_DELLINK
                and payload[0] == socket.AF_UNSPEC
                and _attribute(payload, _IFINFOMSG.size, _IFLA_IFNAME) == wanted
            ):
                return True


def set_hairpin(netlink: Netlink, name: str) -> None:
    """Let the bridge send a frame back out of the port it came in by: a container reaching
    its own published port (br_netfilter bridges the DNATed packet straight back).

    One request on the plain socket, as `ip link set NAME type bridge_slave hairpin on`
    sends it (pyroute2's link set spent ~1 ms of Python on it, on every published attach)."""
    slave = _attr(_IFLA_INFO_SLAVE_KIND, _name("bridge")) + _attr(
        _IFLA_INFO_SLAVE_DATA, _attr(_IFLA_BRPORT_MODE, b"\x01")
    )
    body = _ifinfomsg() + _attr(_IFLA_IFNAME, _name(name)) + _attr(_IFLA_LINKINFO, slave)
    try:
        netlink._channel.request(_RTM_NEWLINK, 0, body)
    except NetlinkError as exc:
        raise _kernel_error(f"hairpin on {name}", exc) from exc


def link_kind(msg: Any) -> str | None:
    info = msg.get("IFLA_LINKINFO")
    return None if info is None else info.get("IFLA_INFO_KIND")


def link_summary(msg: Any) -> dict[str, Any]:
    return {
        "name": msg.get("IFLA_IFNAME"),
        "index": int(msg["index"]),
        "kind": link_kind(msg),
        "mac": msg.get("IFLA_ADDRESS"),
        "mtu": msg.get("IFLA_MTU"),
        "master": msg.get("IFLA_MASTER"),
        "up": bool(msg["flags"] & 1),
    }
