"""DNS probes for tests, standard library only, independent of netbay's own codec; either
family (a server or an upstream address of IPv4 or IPv6).

    dnsprobe.py query SERVER NAME [TYPE] [--tcp] [--timeout S]
        prints {"rcode": "NOERROR", "answers": ["10.1.2.3"], "types": [1], "flags": [...]}
        as JSON (A and AAAA answers as addresses, PTR as names), or {"error": "timeout"};
        exit 0 either way (1 on a usage error)
    dnsprobe.py serve ADDRESS LOGFILE NAME=IP...
        a fake upstream on ADDRESS:53, UDP and TCP: A answers for the names given an IPv4
        address, AAAA for those given an IPv6 one (no data for the other type), NXDOMAIN for
        everything else; every question it gets is appended to LOGFILE
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import socketserver
import struct
import sys
import threading
from ipaddress import ip_address

TYPES = {"A": 1, "PTR": 12, "AAAA": 28, "TXT": 16, "MX": 15}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
AAAA = TYPES["AAAA"]


def family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ip_address(address).version == 6 else socket.AF_INET

def encode(name: str) -> bytes:
    out = b""
    for label in name.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def read_name(packet: bytes, pos: int) -> tuple[str, int]:
    labels, end = [], None
    while True:
        length = packet[pos]
        if length & 0xC0 == 0xC0:
            end = end or pos + 2
            pos = ((length & 0x3F) << 8) | packet[pos + 1]
            continue
        if length == 0:
            return ".".join(labels), end or pos + 1
        labels.append(packet[pos + 1 : pos + 1 + length].decode("latin-1"))
        pos += 1 + length


def build_query(name: str, qtype: str) -> tuple[int, bytes]:
    qid = random.randrange(65536)
    header = struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0)
    return qid, header + encode(name) + struct.pack("!HH", TYPES[qtype], 1)


def parse_answer(packet: bytes) -> dict[str, object]:
    qid, flags, qd, an, _, _ = struct.unpack_from("!6H", packet)
    pos = 12
    for _ in range(qd):
        _, pos = read_name(packet, pos)
        pos += 4
    answers: list[str] = []
    types: list[int] = []
    for _ in range(an):
        _, pos = read_name(packet, pos)
        rtype, _, _, length = struct.unpack_from("!HHIH", packet, pos)
        pos += 10
        types.append(rtype)
        if rtype == TYPES["A"]:
            answers.append(socket.inet_ntop(socket.AF_INET, packet[pos : pos + 4]))
        elif rtype == AAAA:
            answers.append(socket.inet_ntop(socket.AF_INET6, packet[pos : pos + 16]))
        elif rtype == TYPES["PTR"]:
            answers.append(read_name(packet, pos)[0])
        pos += length
    bits = {"aa": 0x0400, "tc": 0x0200, "rd": 0x0100, "ra": 0x0080}
    return {
        "id": qid,
        "rcode": RCODES.get(flags & 0xF, str(flags & 0xF)),
        "answers": answers,
        "types": types,
        "flags": [k for k, bit in bits.items() if flags & bit],
    }


def query(server: str, name: str, qtype: str, tcp: bool, timeout: float) -> dict[str, object]:
    qid, packet = build_query(name, qtype)
    try:
        with socket.socket(family(server), socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.connect((server, 53))
            if tcp:
                s.sendall(struct.pack("!H", len(packet)) + packet)
                length = struct.unpack("!H", _exactly(s, 2))[0]
                answer = _exactly(s, length)
            else:
                s.send(packet)
                answer = s.recv(4096)
    except TimeoutError:
        return {"error": "timeout"}
    except OSError as exc:
        return {"error": exc.strerror or str(exc)}
    result = parse_answer(answer)
    if result["id"] != qid:
        return {"error": "wrong id"}
    return result


def _exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise TimeoutError("closed")
        data += chunk
    return data



# --- the fake upstream ------------------------------------------------------------------
class Upstream:
    """Answers A for names given an IPv4 address, AAAA for those given an IPv6 one (no data
    for the other type), NXDOMAIN for the rest; logs every question."""

    def __init__(self, zone: dict[str, str], log: str) -> None:
        self.zone = {k.lower(): v for k, v in zone.items()}
        self.log = log
        self.lock = threading.Lock()

    def answer(self, packet: bytes, transport: str) -> bytes:
        qid, flags = struct.unpack_from("!HH", packet)
        name, pos = read_name(packet, 12)
        qtype = struct.unpack_from("!H", packet, pos)[0]
        question = packet[12 : pos + 4]
        with self.lock, open(self.log, "a") as log:
            log.write(f"{transport} {name} {qtype}\n")
        value = self.zone.get(name.lower())
        rcode, answers = (0 if value else 3), b""
        if value and (qtype, ip_address(value).version) in ((1, 4), (AAAA, 6)):
            raw = socket.inet_pton(family(value), value)
            answers = b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 60, len(raw)) + raw
        header = struct.pack(
            "!6H", qid, 0x8180 | (flags & 0x0100) | rcode, 1, 1 if answers else 0, 0, 0
        )
        return header + question + answers


def serve(address: str, log: str, zone: dict[str, str]) -> None:
    upstream = Upstream(zone, log)

    class Udp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            sock.sendto(upstream.answer(data, "udp"), self.client_address)

    class Tcp(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            length = struct.unpack("!H", self.rfile.read(2))[0]
            out = upstream.answer(self.rfile.read(length), "tcp")
            self.wfile.write(struct.pack("!H", len(out)) + out)

    class TcpServer(socketserver.ThreadingTCPServer):
        address_family = family(address)
        allow_reuse_address = True

    class UdpServer(socketserver.UDPServer):
        address_family = family(address)

    tcp = TcpServer((address, 53), Tcp)
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    UdpServer((address, 53), Udp).serve_forever()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    verbs = parser.add_subparsers(dest="verb", required=True)
    q = verbs.add_parser("query")
    q.add_argument("server")
    q.add_argument("name")
    q.add_argument("type", nargs="?", default="A", choices=sorted(TYPES))
    q.add_argument("--tcp", action="store_true")
    q.add_argument("--timeout", type=float, default=2.0)
    s = verbs.add_parser("serve")
    s.add_argument("address")
    s.add_argument("log")
    s.add_argument("zone", nargs="*", metavar="NAME=IP")
    args = parser.parse_args(argv[1:])
    if args.verb == "query":
        print(json.dumps(query(args.server, args.name, args.type, args.tcp, args.timeout)))
    else:
        serve(args.address, args.log, dict(item.split("=", 1) for item in args.zone))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
