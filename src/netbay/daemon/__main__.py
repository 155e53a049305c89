"""netbayd: owns the engine and serves the API on a unix socket.

One daemon per state root: a lock file decides; a second one exits quietly. At start-up it
repairs whatever a crash interrupted (gc from the record) before it accepts requests.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import ConfigError
from ..paths import Paths

if TYPE_CHECKING:
    from ..docker_plugin.server import DockerPlugin
    from ..engine.default_bridge import BridgeDefaults


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netbayd", description="netbay daemon")
    parser.add_argument("--root", help="state directory (env NETBAY_ROOT)")
    parser.add_argument("--socket", help="API socket (env NETBAY_SOCKET)")
    parser.add_argument("--docker-plugin", metavar="PATH",
                        help="serve Docker's network plugin there (env NETBAY_DOCKER_PLUGIN)")
    parser.add_argument("--ipv6", action="store_true", help="the default bridge is dual stack "
                        "(env NETBAY_IPV6=true; daemon.json's ipv6)")
    parser.add_argument("--fixed-cidr-v6", metavar="CIDR", help="the default bridge's IPv6 "
                        "subnet, with --ipv6 (env NETBAY_FIXED_CIDR_V6; default: a /64 of "
                        "this host's ULA /48)")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--version", action="version", version=f"netbayd {__version__}")
    args = parser.parse_args(argv)
    if args.socket:
        os.environ["NETBAY_SOCKET"] = args.socket
    if args.docker_plugin:
        os.environ["NETBAY_DOCKER_PLUGIN"] = args.docker_plugin
    if args.ipv6:
        os.environ["NETBAY_IPV6"] = "true"
    if args.fixed_cidr_v6:
        os.environ["NETBAY_FIXED_CIDR_V6"] = args.fixed_cidr_v6
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


@contextlib.contextmanager
def _no_collections() -> Iterator[None]:
    """No garbage collection while the engine's modules load and the services start: what
    they make lives as long as the daemon, and each collection walked it again (~5% of the
    start). Frozen at the end, so the first request does not pay for that walk either."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def serve(paths: Paths, lock: object) -> int:
    with _no_collections():
        from ..engine.default_bridge import bridge_defaults
        from .listener import ApiSocket
        from .server import ApiServer

        try:  # first: a bad setting (NETBAY_SOCKET_GROUP, LISTEN_FDS, NETBAY_IPV6...) stops
            defaults = bridge_defaults(os.environ)  # netbayd before anything
            api_socket = ApiSocket(paths.socket, os.environ)
        except ConfigError as exc:
            logging.error("netbayd: %s", exc)
            return 1
        services = Services(paths, defaults)
        server = ApiServer(api_socket.sock, services.api)

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
        services.close()
        with contextlib.suppress(FileNotFoundError):
            (paths.root / "netbayd.pid").unlink()
    return 0


class Services:
    """What netbayd runs behind its socket: the engine (crash repairs done first), the
    reaper, the DNS server, the reconciler, the cluster agent, and the API over them."""

    def __init__(self, paths: Paths, bridge_defaults: BridgeDefaults | None = None) -> None:
        from ..dns.supervisor import DnsSupervisor
        from ..engine import Host
        from ..engine.cluster import ClusterAgent
        from ..kernel.linux import LinuxKernel
        from ..reconcile.loop import Reconciler
        from .api import Api
        from .cluster_api import ClusterRoutes
        from .reaper import Reaper

        kernel = LinuxKernel()
        self.host = host = Host(paths, kernel=kernel, bridge_defaults=bridge_defaults)
        report = host.gc()
        if any(report.as_dict().values()):
            logging.info("repaired at start-up: %s", report.as_dict())
        self.reaper = Reaper(lambda cid, code: host.mark_exited(cid, code))
        self.dns = DnsSupervisor(paths, host.store)
        self.dns.sync()  # the containers the record already holds resolve as before
        # kernel state put back as recorded, then kept so (the first pass runs before serving)
        self.reconciler = Reconciler(host, on_repair=self.dns.sync)
        self.reconciler.start()
        self.agent = ClusterAgent(host, kernel, on_change=_each(self.dns.sync,
                                                                self.reconciler.poke))
        self.agent.start()  # a node that joined before: back in the cluster, in the background
        self.api = Api(host, self.reaper, dns_health=self.dns.health,
                       after_change=_each(self.dns.sync, self.reconciler.poke, self.agent.poke),
                       cluster=ClusterRoutes(self.agent))
        self.docker = self._docker_plugin(os.environ.get("NETBAY_DOCKER_PLUGIN", ""))

    def _docker_plugin(self, socket_path: str) -> DockerPlugin | None:
        """Docker's network and IPAM plugin, on its own socket when one is asked for."""
        if not socket_path:
            return None
        from ..docker_plugin.server import DockerPlugin

        return DockerPlugin(self.host, Path(socket_path), cluster=self.agent,
                            after_change=_each(self.dns.sync, self.reconciler.poke))

    def close(self) -> None:
        if self.docker is not None:
            self.docker.close()
        self.reaper.close()
        self.agent.close()
        self.reconciler.close()
        self.dns.close()
        self.host.close()


if __name__ == "__main__":
    sys.exit(main())
