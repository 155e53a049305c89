"""The plugin's socket: netbay's HTTP server (daemon/server.py) on a listener of its own,
its routes (/Plugin.Activate, /NetworkDriver.*, /IpamDriver.*), and the staging namespace
the endpoints' links are made in.

Every call is answered 200: a refusal carries netbay's one-line error ({"Err"} for the
network driver, {"Error"} for IPAM), and the engine changed nothing for it. A call netbay
does not implement (AllocateNetwork, FreeNetwork) is 404, which Docker takes as "not
supported"."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..daemon.listener import bind, socket_group
from ..daemon.server import ApiServer
from ..engine import Host
from ..errors import ConfigError, KernelError, NetbayError
from . import protocol as p
from .cluster import Cluster, DockerClusterNetworks
from .ipam import Ipam
from .network import NetworkDriver

log = logging.getLogger("netbay.docker")
Handler = Callable[[Mapping[str, Any]], dict[str, Any]]
ENV = "NETBAY_DOCKER_PLUGIN"  # the socket path that turns the plugin on
STAGING = "docker-staging"  # under the state root: the namespace links are made in


class PluginRoutes:
    """The dispatcher daemon/server.py calls: one handler per remote-driver call."""

    def __init__(self, network: NetworkDriver, ipam: Ipam,
                 after_change: Callable[[], None] = lambda: None) -> None:
        self.after_change = after_change
        self._network: dict[str, Handler] = {
            "GetCapabilities": network.capabilities,
            "CreateNetwork": network.create_network,
            "DeleteNetwork": network.delete_network,
            "CreateEndpoint": network.create_endpoint,
            "EndpointOperInfo": network.endpoint_info,
            "DeleteEndpoint": network.delete_endpoint,
            "Join": network.join,
            "Leave": network.leave,
            "ProgramExternalConnectivity": network.program_external,
            "RevokeExternalConnectivity": network.revoke_external,
            "DiscoverNew": _ack,
            "DiscoverDelete": _ack,
        }
        self._ipam: dict[str, Handler] = {
            "GetCapabilities": ipam.capabilities,
            "GetDefaultAddressSpaces": ipam.address_spaces,
            "RequestPool": ipam.request_pool,
            "ReleasePool": ipam.release_pool,
            "RequestAddress": ipam.request_address,
            "ReleaseAddress": ipam.release_address,
        }
        # calls after which the record may differ (DNS and the reconciler follow it)
        self._changing = {"CreateNetwork", "DeleteNetwork", "Join", "DeleteEndpoint",
                          "ProgramExternalConnectivity", "RevokeExternalConnectivity"}

    def dispatch(self, method: str, target: str, body: Any) -> tuple[int, Any]:
        path = target.partition("?")[0]
        if path == "/Plugin.Activate":
            return 200, {"Implements": p.IMPLEMENTS}
        api, _, call = path.lstrip("/").partition(".")
        table = {"NetworkDriver": self._network, "IpamDriver": self._ipam}.get(api, {})
        handler = table.get(call)
        if handler is None or method != "POST":
            return 404, {"Err": f"{path} is not implemented by the netbay plugin"}
        reply = p.network_reply if api == "NetworkDriver" else p.ipam_reply
        try:
            if body is not None and not isinstance(body, dict):
                raise ConfigError("request", body, "expected a JSON object")
            answer = handler(body or {})
        except NetbayError as exc:
            log.info("docker %s refused: %s", path, exc)
            return 200, reply(exc)
        except (KeyError, TypeError, ValueError) as exc:  # a shape the protocol never has
            log.warning("docker %s: bad request: %r", path, exc)
            return 200, reply(ConfigError("request", body, f"malformed ({exc!r})"))
        if call in self._changing:
            self.after_change()
        return 200, answer


def _ack(body: Mapping[str, Any]) -> dict[str, Any]:
    return {}


def staging_namespace(host: Host) -> Path:
    """netbay's own namespace for links Docker will take: made again at each start (one a
    crash left behind holds nothing anyone uses: every link made there is moved out)."""
    path = host.paths.root / STAGING
    with host.kernel.lock:
        with contextlib.suppress(KernelError):
            host.kernel.delete_netns(path)
        host.kernel.create_netns(path)
    return path


class DockerPlugin:
    """The plugin served on PATH by a thread of its own, until close()."""

    def __init__(self, host: Host, path: Path, *, cluster: Cluster,
                 after_change: Callable[[], None]) -> None:
        self.host = host
        self.path = path
        self.staging = staging_namespace(host)
        clusters = DockerClusterNetworks(host, cluster)
        ipam = Ipam(host, clusters)
        routes = PluginRoutes(NetworkDriver(host, ipam, self.staging, clusters), ipam,
                              after_change)
        self._server = ApiServer(bind(path, socket_group(os.environ)), routes)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="docker-plugin", daemon=True)
        self._thread.start()
        log.info("Docker plugin %r serving %s", p.PLUGIN_NAME, path)

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with self.host.kernel.lock:
            self.host.kernel.delete_netns(self.staging)
