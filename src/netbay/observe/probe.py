"""Real probes for `netbay trace`, sent from inside a namespace: a TCP connect, a UDP datagram
or an ICMP echo (ICMPv6's to an IPv6 destination), each on a socket opened in the source
namespace (a thread steps in, opens it, steps back), so the daemon needs no helper process.
Also: route lookups as the kernel would decide them, and the conntrack entry the probe left
(its NAT)."""

from __future__ import annotations

import errno
import os
import random
import select
import socket
import struct
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from ..errors import KernelError
from ..kernel.netlink import open_conntrack, open_iproute
from ..kernel.netns import entered
from .hops import Outcome
from .trace_request import ECHO

IPPROTO = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "icmp": socket.IPPROTO_ICMP}
IPAddress = IPv4Address | IPv6Address
ICMP6_UNREACHABLE, ICMP6_TIME_EXCEEDED = 1, 3
IPV6_HEADER = 40


def ipproto(proto: str, family: int) -> int:
    return socket.IPPROTO_ICMPV6 if proto == "icmp" and family == 6 else IPPROTO[proto]


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


@dataclass
class Probe:
    """A socket ready in the source namespace; `sport`/`icmp_id` are known before anything
    is sent, so the trace rule can match exactly this probe."""

    proto: str
    dst: IPAddress
    port: int | None
    sock: socket.socket
    sport: int = 0
    icmp_id: int = 0

    @classmethod
    def open(cls, netns: str | None, proto: str, dst: IPAddress, port: int | None) -> Probe:
        family = socket.AF_INET6 if dst.version == 6 else socket.AF_INET
        with entered(netns):
            if proto == "icmp":
                sock = socket.socket(family, socket.SOCK_RAW, ipproto(proto, dst.version))
            else:
                kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
                sock = socket.socket(family, kind)
        probe = cls(proto, dst, port, sock)
        if proto == "icmp":
            probe.icmp_id = random.randint(1, 0xFFFF)
        else:
            sock.bind(("::" if dst.version == 6 else "0.0.0.0", 0))
            probe.sport = sock.getsockname()[1]
        return probe

    def close(self) -> None:
        self.sock.close()

    def fire(self, timeout: float) -> Outcome:
        try:
            if self.proto == "tcp":
                return self._tcp(timeout)
            if self.proto == "udp":
                return self._udp(timeout)
            return self._icmp(timeout)
        except OSError as exc:
            return _error_outcome(exc)

    def _source(self) -> IPAddress | None:
        try:
            address = ip_address(self.sock.getsockname()[0])
        except (OSError, ValueError):
            return None
        return None if address.is_unspecified else address

    def _tcp(self, timeout: float) -> Outcome:
        self.sock.setblocking(False)
        code = self.sock.connect_ex((str(self.dst), self.port or 0))
        if code not in (0, errno.EINPROGRESS):
            return _error_outcome(OSError(code, os.strerror(code)))
        _, writable, _ = select.select([], [self.sock], [], timeout)
        source = self._source()
        if not writable:
            return Outcome("timeout", f"no answer within {timeout:g}s", source, self.sport)
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code == 0:
            return Outcome("connected", "the TCP handshake completed", source, self.sport)
        return _error_outcome(OSError(code, os.strerror(code)), source, self.sport)

    def _udp(self, timeout: float) -> Outcome:
        self.sock.connect((str(self.dst), self.port or 0))
        self.sock.send(b"netbay trace\n")
        source = self._source()
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(2048)
        except TimeoutError:
            return Outcome("timeout", f"no answer within {timeout:g}s (UDP gives no "
                           "acknowledgement: a silent server looks the same)", source, self.sport)
        except OSError as exc:
            return _error_outcome(exc, source, self.sport)
        return Outcome("answered", f"{len(data)} bytes came back", source, self.sport)

    def _icmp(self, timeout: float) -> Outcome:
        payload = b"netbay-trace"
        request = ECHO[self.dst.version][0]
        header = struct.pack("!BBHHH", request, 0, 0, self.icmp_id, 1)
        # ICMPv6's checksum covers a pseudo-header of the addresses: the kernel fills it in
        checksum = 0 if self.dst.version == 6 else _checksum(header + payload)
        packet = struct.pack("!BBHHH", request, 0, checksum, self.icmp_id, 1)
        self.sock.sendto(packet + payload, (str(self.dst), 0))
        answer = _icmp6_answer if self.dst.version == 6 else _icmp_answer
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, peer = self.sock.recvfrom(2048)
            except TimeoutError:
                break
            result = answer(data, self.icmp_id, peer[0])
            if result is not None:
                return result
        return Outcome("timeout", f"no echo reply within {timeout:g}s")


def _icmp_answer(data: bytes, ident: int, peer: str) -> Outcome | None:
    start = (data[0] & 0x0F) * 4
    kind, code, _, got = struct.unpack_from("!BBHH", data, start)
    if kind == 0 and got == ident:
        return Outcome("answered", f"echo reply from {peer}")
    if kind in (3, 11) and len(data) >= start + 8 + 28:
        inner = start + 8
        inner_start = inner + (data[inner] & 0x0F) * 4
        if struct.unpack_from("!H", data, inner_start + 4)[0] == ident:
            what = "time exceeded" if kind == 11 else f"destination unreachable (code {code})"
            return Outcome("unreachable", f"{what} from {peer}")
    return None


def _icmp6_answer(data: bytes, ident: int, peer: str) -> Outcome | None:
    """An ICMPv6 message (a raw IPv6 socket gives no IP header) that answers echo IDENT."""
    if len(data) < 8:
        return None
    kind, code, _, got = struct.unpack_from("!BBHH", data)
    if kind == ECHO[6][1] and got == ident:
        return Outcome("answered", f"echo reply from {peer}")
    inner = 8 + IPV6_HEADER  # the error quotes the probe: its IPv6 header, then its ICMPv6
    if kind in (ICMP6_UNREACHABLE, ICMP6_TIME_EXCEEDED) and len(data) >= inner + 8 \
            and struct.unpack_from("!H", data, inner + 4)[0] == ident:
        what = ("time exceeded" if kind == ICMP6_TIME_EXCEEDED
                else f"destination unreachable (code {code})")
        return Outcome("unreachable", f"{what} from {peer}")
    return None


def _error_outcome(exc: OSError, source: IPAddress | None = None, sport: int = 0) -> Outcome:
    if exc.errno == errno.ECONNREFUSED:
        return Outcome("refused", "the destination answered with a refusal (TCP RST or ICMP "
                       "port unreachable): it is reachable, but nothing listens on that port",
                       source, sport)
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM):
        return Outcome("unreachable", f"{exc.strerror}", source, sport)
    return Outcome("error", f"{exc.strerror or exc}", source, sport)


# --- routes --------------------------------------------------------------------------------
def route_get(
    netns: str | None, dst: IPAddress, *, src: IPAddress | None = None,
    iif: str | None = None,
) -> tuple[dict[str, Any] | None, str]:
    """The kernel's routing decision in NETNS for DST (as arriving on IIF from SRC):
    ({dev, gateway, prefsrc, type}, "") or (None, why not)."""
    ipr = open_iproute(netns)
    try:
        names = {int(m["index"]): str(m.get("IFLA_IFNAME")) for m in ipr.link("dump")}
        query: dict[str, Any] = {"dst": str(dst)}
        if src is not None:
            query["src"] = str(src)
        if iif is not None:
            index = next((i for i, n in names.items() if n == iif), None)
            if index is None:
                return None, f"no interface {iif}"
            query["iif"] = index
        try:
            reply = ipr.route("get", **query)[0]
        except KernelError as exc:
            return None, f"no route: {os.strerror(exc.errno)}"
        kinds = {1: "unicast", 2: "local", 3: "broadcast", 6: "blackhole", 7: "unreachable",
                 8: "prohibit"}
        return {
            "dev": names.get(int(reply.get("RTA_OIF") or 0), ""),
            "gateway": reply.get("RTA_GATEWAY") or "",
            "prefsrc": reply.get("RTA_PREFSRC") or "",
            "type": kinds.get(int(reply["type"]), str(reply["type"])),
        }, ""
    finally:
        ipr.close()


def route_text(dst: IPAddress, route: dict[str, Any] | None, why: str) -> str:
    if route is None:
        return why
    parts = [f"route {dst}"]
    if route["type"] == "local":
        parts = [f"{dst} is local (delivered to this namespace)"]
    if route["gateway"]:
        parts.append(f"via {route['gateway']}")
    if route["dev"] and route["type"] != "local":
        parts.append(f"dev {route['dev']}")
    if route["prefsrc"]:
        parts.append(f"src {route['prefsrc']}")
    return " ".join(parts)


# --- conntrack -----------------------------------------------------------------------------
def flow(proto: str, sport: int, icmp_id: int, dst: IPAddress) -> (
    tuple[tuple[str, int, str, int], tuple[str, int, str, int]] | None
):
    """The probe's conntrack entry in this namespace: (original, reply) as (src, sport, dst,
    dport); for icmp the id stands in for both ports."""
    if dst.version == 6:
        return _flow6(proto, sport, icmp_id, dst)
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    wanted = NFCTAttrTuple(proto=IPPROTO[proto], daddr=str(dst))
    ct = open_conntrack()
    try:
        return _pick(ct.dump_entries(tuple_orig=wanted), proto, sport, icmp_id)
    except KernelError:
        return None
    finally:
        ct.close()


def _flow6(proto: str, sport: int, icmp_id: int, dst: IPv6Address) -> (
    tuple[tuple[str, int, str, int], tuple[str, int, str, int]] | None
):
    """IPv6's: a ctnetlink socket of that family, asked by protocol (the kernel's filter by
    IPv6 address, as pyroute2 sends it, matches nothing), the address compared here."""
    from pyroute2 import Conntrack
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    wanted = NFCTAttrTuple(family=socket.AF_INET6, proto=ipproto(proto, 6))
    try:
        ct = Conntrack(nfgen_family=socket.AF_INET6)
    except (NetlinkError, OSError):
        return None
    try:
        entries = [e for e in ct.dump_entries(tuple_orig=wanted)
                   if e.tuple_orig.daddr and ip_address(e.tuple_orig.daddr) == dst]
        return _pick(entries, proto, sport, icmp_id)
    except (NetlinkError, OSError):
        return None
    finally:
        ct.close()


def _pick(entries: Any, proto: str, sport: int, icmp_id: int) -> (
    tuple[tuple[str, int, str, int], tuple[str, int, str, int]] | None
):
    for entry in entries:
        o, r = entry.tuple_orig, entry.tuple_reply
        if proto == "icmp":
            if o.icmp_id != icmp_id:
                continue
            return ((o.saddr, icmp_id, o.daddr, icmp_id), (r.saddr, icmp_id, r.daddr, icmp_id))
        if o.sport == sport:
            return ((o.saddr, o.sport, o.daddr, o.dport), (r.saddr, r.sport, r.daddr, r.dport))
    return None
