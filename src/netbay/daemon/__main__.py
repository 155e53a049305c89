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
from collections.abc import Callable

from .. import __version__
from ..errors import ConfigError
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


def _each(*calls: Callable[[], None]) -> Callable[[], None]:
    """After a request that may have changed the record: the DNS server's listen points
    follow it, and the reconciler compares again (what it wants, and watches, changed)."""

    def call() -> None:
        for each in calls:
            each()

    return call


def serve(paths: Paths, lock: object) -> int:
    from ..dns.supervisor import DnsSupervisor
    from ..engine import Host
    from ..reconcile.loop import Reconciler
    from .api import Api
    from .listener import ApiSocket
    from .reaper import Reaper
    from .server import ApiServer

    try:  # first: a bad NETBAY_SOCKET_GROUP or LISTEN_FDS stops netbayd before it does anything
        api_socket = ApiSocket(paths.socket, os.environ)
    except ConfigError as exc:
        logging.error("netbayd: %s", exc)
        return 1
    host = Host(paths)
    report = host.gc()
    if any(report.as_dict().values()):
        logging.info("repaired at start-up: %s", report.as_dict())
    reaper = Reaper(lambda cid, code: host.mark_exited(cid, code))
    dns = DnsSupervisor(paths, host.store)
    dns.sync()  # the containers the record already holds resolve as before the restart
    # kernel state put back as recorded, then kept so (the first pass runs before serving)
    reconciler = Reconciler(host, on_repair=dns.sync)
    reconciler.start()
    api = Api(host, reaper, after_change=_each(dns.sync, reconciler.poke), dns_health=dns.health)
    server = ApiServer(api_socket.sock, api)

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logging.info("netbayd %s serving %s%s (state %s)", __version__, api_socket.path,
                 " (socket activation)" if api_socket.activated else "", paths.root)
    api_socket.ready()
    try:
        server.serve_forever()
    finally:
        api_socket.close()
        reaper.close()
        reconciler.close()
        dns.close()
        host.close()
        with contextlib.suppress(FileNotFoundError):
            (paths.root / "netbayd.pid").unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
