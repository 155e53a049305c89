"""Forwarding to upstream servers, from the host's namespace (so loopback resolvers such as
systemd-resolved's 127.0.0.53 work too). The query goes out as the client sent it, under a
fresh random ID from a fresh socket (a random source port); only an answer with that ID and
the same question, from the server asked, is taken. Servers are tried in order; one that
refuses the connection (ICMP) is skipped at once, one that is silent after `timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import struct
from collections.abc import Sequence
from ipaddress import ip_address

from .message import SERVFAIL, Query, question_of, response

PORT = 53
TIMEOUT = 2.0


def _family(server: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ip_address(server).version == 6 else socket.AF_INET


def _matches(answer: bytes, qid: bytes, question: bytes) -> bool:
    asked = question_of(answer)
    return answer[:2] == qid and asked is not None and asked.lower() == question.lower()


async def ask_udp(packet: bytes, question: bytes, server: str, timeout: float) -> bytes | None:
    loop = asyncio.get_running_loop()
    qid = secrets.token_bytes(2)
    with socket.socket(_family(server), socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((server, PORT))  # a connected socket only hears from that server
        await loop.sock_sendall(sock, qid + packet[2:])
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            answer = await asyncio.wait_for(loop.sock_recv(sock, 65535), remaining)
            if _matches(answer, qid, question):
                return packet[:2] + answer[2:]


async def ask_tcp(packet: bytes, question: bytes, server: str, timeout: float) -> bytes | None:
    qid = secrets.token_bytes(2)
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(server, PORT)
        try:
            writer.write(struct.pack("!H", len(packet)) + qid + packet[2:])
            await writer.drain()
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            answer = await reader.readexactly(length)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return packet[:2] + answer[2:] if _matches(answer, qid, question) else None


async def forward(
    packet: bytes,
    query: Query,
    servers: Sequence[str],
    *,
    tcp: bool = False,
    timeout: float = TIMEOUT,
) -> bytes:
    """The first upstream answer, or SERVFAIL when every server failed."""
    ask = ask_tcp if tcp else ask_udp
    for server in servers:
        try:
            answer = await ask(packet, query.question, server, timeout)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            continue
        if answer is not None:
            return answer
    return response(query, SERVFAIL, authoritative=False)
