"""Tiny network probes for tests: servers that answer with the address they saw, and
clients that print the answer. Standard library only; runs inside test namespaces.

    netprobe.py tcp-serve PORT | udp-serve PORT
    netprobe.py tcp HOST PORT | udp HOST PORT       (exit 0 and print the answer, or exit 1)
"""

from __future__ import annotations

import socket
import sys
import threading


def tcp_serve(port: int) -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(64)
    while True:
        conn, peer = server.accept()
        threading.Thread(target=_answer, args=(conn, peer), daemon=True).start()


def _answer(conn: socket.socket, peer: tuple[str, int]) -> None:
    with conn:
        conn.sendall(f"{socket.gethostname()} saw {peer[0]}\n".encode())


def udp_serve(port: int) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("0.0.0.0", port))
    while True:
        _, peer = server.recvfrom(2048)
        server.sendto(f"{socket.gethostname()} saw {peer[0]}\n".encode(), peer)


def tcp(host: str, port: int, timeout: float) -> int:
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            print(conn.recv(256).decode().strip())
            return 0
    except OSError as exc:
        print(f"failed: {exc}")
        return 1


def udp(host: str, port: int, timeout: float) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        for _ in range(3):
            try:
                sock.sendto(b"ping", (host, port))
                print(sock.recv(256).decode().strip())
                return 0
            except OSError:
                continue
    print("failed: no answer")
    return 1


def main(argv: list[str]) -> int:
    mode = argv[1]
    if mode == "tcp-serve":
        tcp_serve(int(argv[2]))
    elif mode == "udp-serve":
        udp_serve(int(argv[2]))
    elif mode == "tcp":
        return tcp(argv[2], int(argv[3]), float(argv[4]) if len(argv) > 4 else 1.0)
    elif mode == "udp":
        return udp(argv[2], int(argv[3]), float(argv[4]) if len(argv) > 4 else 0.5)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
