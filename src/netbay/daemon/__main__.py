"""netbayd: owns the engine and serves the API on a unix socket.

One daemon per state root: a lock file decides; a second one exits quietly. At start-up it
repairs whatever a crash interrupted (gc from the record) before it accepts requests.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from .. import __version__
from ..paths import Paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netbayd", description="netbay daemon")
    parser.add_argument("--root", help="state directory (env NETBAY_ROOT)")
    parser.add_argument("--socket", help="API socket (env NETBAY_SOCKET)")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--version", action="version", version=f"netbayd {__version__}")
    args = parser.parse_args(argv)
    if args.socket:
        os.environ["NETBAY_SOCKET"] = args.socket
    paths = Paths.from_env(args.root)
    paths.root.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    lock = open(paths.daemon_lock, "a+")  # noqa: SIM115 - held for the process lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        logging.info("another netbayd already serves %s", paths.root)
        return 0
    (paths.root / "netbayd.pid").write_text(f"{os.getpid()}\n")
    return serve(paths, lock)


def serve(paths: Paths, lock: object) -> int:
    from ..dns.supervisor import DnsSupervisor
    from ..engine import Host
    from .api import Api
    from .guard import FirewallGuard
    from .reaper import Reaper
    from .server import UnixHTTPServer

    host = Host(paths)
    report = host.gc()
    if any(report.as_dict().values()):
        logging.info("repaired at start-up: %s", report.as_dict())
    reaper = Reaper(lambda cid, code: host.mark_exited(cid, code))
    guard = FirewallGuard(host)
    dns = DnsSupervisor(paths, host.store)
    dns.sync()  # the containers the record already holds resolve as before the restart
    api = Api(host, reaper, after_change=dns.sync, dns_health=dns.health)
    server = UnixHTTPServer(paths.socket, api)

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logging.info("netbayd %s serving %s (state %s)", __version__, paths.socket, paths.root)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        reaper.close()
        guard.close()
        dns.close()
        host.close()
        for leftover in (paths.socket, paths.root / "netbayd.pid"):
            with contextlib.suppress(FileNotFoundError):
                Path(leftover).unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
