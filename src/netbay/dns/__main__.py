"""`python -m netbay.dns --root ROOT`: netbay's DNS server for one state root.

The daemon starts it (supervisor.py) with --control-fd and --parent: the server dies with the
daemon (PR_SET_PDEATHSIG, and an empty read on the control socket), so a new daemon never
meets an old server holding port 53. --listen: sockets the daemon bound before it started
this process (dns/listen.py), served as they are, with whatever queries wait in them.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import signal
import socket
import sys

from ..paths import Paths
from .listen import PORT, adopt
from .server import DnsServer

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before we asked
        sys.exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netbay-dns", description="netbay's DNS server")
    parser.add_argument("--root", help="state directory (env NETBAY_ROOT)")
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--control-fd", type=int, help="socket to the daemon (SEQPACKET)")
    parser.add_argument("--parent", type=int, help="die when this process (the daemon) dies")
    parser.add_argument("--listen", action="append", default=[], metavar="ADDR,DEV,IDX,UDP,TCP",
                        help="sockets the daemon bound for a listen point (inherited fds)")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s netbay-dns: %(message)s",
    )
    if args.parent:
        _die_with_parent(args.parent)
    paths = Paths.from_env(args.root)
    control = None
    if args.control_fd is not None:
        control = socket.socket(fileno=args.control_fd)
    server = DnsServer(paths.db, control, args.port, dict(map(adopt, args.listen)))

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.stop)
        await server.run()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
