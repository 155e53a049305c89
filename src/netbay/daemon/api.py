"""Request routing: Docker Engine API network endpoints, plus netbay's own container and
system endpoints. Pure dispatch over the engine; HTTP plumbing lives in server.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

from .. import __version__
from ..drivers import capabilities, get_driver
from ..engine import Host
from ..engine.families import families
from ..errors import ConfigError, ConflictError, InUseError, NotFoundError
from ..model import READY, SANDBOX, Container, Network
from . import docker_json
from .bgp_api import BgpRoutes
from .cluster_api import ClusterRoutes, as_network
from .filters import PRUNE_FILTER_KEYS, network_matches, parse_filters
from .observe_api import DnsHealth, ObserveRoutes
from .reaper import Reaper
from .runtime_api import RuntimeRoutes

Response = tuple[int, Any]
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
_VERSION_PREFIX = re.compile(r"^/v(?P<version>\d+(\.\d+)?)(?=/)")


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def version_error(requested: str) -> str | None:
    """moby's version middleware: a /vX.Y/ prefix outside [MIN, current] is refused."""
    if _version_tuple(requested) < _version_tuple(docker_json.MIN_API_VERSION):
        return (f"client version {requested} is too old. Minimum supported API version is "
                f"{docker_json.MIN_API_VERSION}, please upgrade your client to a newer version")
    if _version_tuple(requested) > _version_tuple(docker_json.API_VERSION):
        return (f"client version {requested} is too new. Maximum supported API version is "
                f"{docker_json.API_VERSION}")
    return None


class Api:
    def __init__(
        self, host: Host, reaper: Reaper, after_change: Callable[[], None] | None = None,
        dns_health: DnsHealth | None = None, cluster: ClusterRoutes | None = None,
    ) -> None:
        self.host = host
        self.cluster = cluster  # None: this daemon takes no part in a cluster
        self.reaper = reaper
        # called after every request that may have changed something (the DNS server's
        # listen points follow the record), before the response goes out
        self.after_change = after_change
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Response]]] = []
        for method, pattern, handler in (
            ("GET", r"/_ping", self.ping),
            ("HEAD", r"/_ping", self.ping),
            ("GET", r"/version", self.version),
            ("GET", r"/networks", self.list_networks),
            ("POST", r"/networks/create", self.create_network),
            ("POST", r"/networks/prune", self.prune_networks),
            ("GET", r"/networks/(?P<ref>[^/]+)", self.inspect_network),
            ("DELETE", r"/networks/(?P<ref>[^/]+)", self.remove_network),
            ("POST", r"/networks/(?P<ref>[^/]+)/connect", self.connect),
            ("POST", r"/networks/(?P<ref>[^/]+)/disconnect", self.disconnect),
            ("GET", r"/containers/json", self.list_containers),
            ("POST", r"/containers/create", self.create_container),
            ("GET", r"/containers/(?P<ref>[^/]+)/json", self.inspect_container),
            ("POST", r"/containers/(?P<ref>[^/]+)/start", self.start_container),
            ("POST", r"/containers/(?P<ref>[^/]+)/started", self.container_started),
            ("POST", r"/containers/(?P<ref>[^/]+)/exited", self.container_exited),
            ("POST", r"/containers/(?P<ref>[^/]+)/stop", self.stop_container),
            ("DELETE", r"/containers/(?P<ref>[^/]+)", self.remove_container),
            ("POST", r"/system/gc", self.gc),
            ("GET", r"/system/audit", self.audit),
            ("POST", r"/system/reload", self.reload),
        ):
            self._routes.append((method, re.compile(pattern + "$"), handler))
        bgp = BgpRoutes(cluster.agent) if cluster else None  # `bgp status`
        # topology, trace, doctor, dns, rps...; the cluster's nodes name the peers
        self.observe = ObserveRoutes(host, dns_health, cluster.agent.nodes if cluster else None,
                                     bgp.live if bgp else None)
        for method, pattern, handler in self.observe.routes():
            self._routes.append((method, re.compile(pattern + "$"), handler))
        self.runtimes = RuntimeRoutes(host)  # the CNI plugins, the netavark backend
        for method, pattern, handler in self.runtimes.routes():
            self._routes.append((method, re.compile(pattern + "$"), handler))
        for method, pattern, handler in cluster.routes() + bgp.routes() if cluster and bgp else ():
            self._routes.append((method, re.compile(pattern + "$"), handler))

    def dispatch(self, method: str, target: str, body: Any) -> Response:
        path, _, query = target.partition("?")
        prefix = _VERSION_PREFIX.match(path)
        if prefix:
            refused = version_error(prefix.group("version"))
            if refused:
                return 400, {"message": refused}
            path = path[prefix.end():]
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        allowed = False
        for route_method, pattern, handler in self._routes:
            match = pattern.match(path)
            if match:
                allowed = True
                if route_method == method:
                    try:
                        return handler(params=params, body=body or {}, **match.groupdict())
                    finally:
                        if method in ("POST", "DELETE") and self.after_change is not None:
                            self.after_change()
        if allowed:
            return 405, {"message": f"method {method} not allowed on {path}"}
        return 404, {"message": f"page not found: {path}"}

    # --- system ------------------------------------------------------------------------
    def ping(self, **_: Any) -> Response:
        return 200, "OK"

    def version(self, **_: Any) -> Response:
        import platform  # here: 3 ms of the daemon's start for one rare request

        return 200, {
            "Platform": {"Name": "netbay"},
            "Version": __version__,
            "ApiVersion": docker_json.API_VERSION,
            "MinAPIVersion": docker_json.MIN_API_VERSION,
            "Os": "linux",
            "Arch": _GO_ARCH.get(platform.machine(), platform.machine()),
            "KernelVersion": platform.release(),
            "Components": [{"Name": "netbay", "Version": __version__, "Details": {}}],
        }

    def gc(self, **_: Any) -> Response:
        return 200, self.host.gc().as_dict()

    def reload(self, **_: Any) -> Response:
        self.host.firewall_rebuild()
        return 204, None

    def audit(self, **_: Any) -> Response:
        return 200, {"Problems": self.host.audit(), "Reconciler": self.host.reconcile_status()}

    # --- networks ----------------------------------------------------------------------
    def _in_use(self, network: Network) -> bool:
        return bool(self.host.members(network))

    def _global_networks(self, local: list[Network]) -> list[Network]:
        """The cluster's networks this node holds no share of (a share is listed as itself)."""
        if self.cluster is None:
            return []
        names = {n.name for n in local}
        return [as_network(g) for g in self.cluster.agent.global_networks() if g.name not in names]

    def list_networks(self, params: dict[str, str], **_: Any) -> Response:
        filters = parse_filters(params.get("filters"))
        nets = [n for n in self.host.networks() if n.state == "ready"]
        nets += self._global_networks(nets)
        chosen = [n for n in nets if network_matches(n, filters, self._in_use)]
        return 200, [docker_json.network_json(n, []) for n in chosen]

    def _network(self, ref: str) -> Network:
        """A local network, or a global one this node holds no share of."""
        try:
            return self.host.network(ref)
        except NotFoundError:
            found = self.cluster.agent.global_network(ref) if self.cluster else None
            if found is None:
                raise
            return as_network(found)

    def inspect_network(self, ref: str, **_: Any) -> Response:
        network = self._network(ref)
        body = docker_json.network_json(network, self.host.members(network))
        if self.cluster is not None and network.scope == "global":
            body["Cluster"] = self.cluster.cluster_details(network)
            pool = body["Cluster"].get("Subnet")
            if pool:  # Docker shows an overlay's whole subnet; the node's block is in Cluster
                body["IPAM"]["Config"] = [{"Subnet": pool}]
        routes = self.host.upstream_routes(network)
        if routes and network.device:
            body["UpstreamRoutes"] = docker_json.upstream_routes_json(network.device, routes)
        return 200, body

    def create_network(self, body: dict[str, Any], **_: Any) -> Response:
        spec = docker_json.network_spec(body)
        if capabilities(spec.driver).cluster:
            families(spec, get_driver(spec.driver))  # IPv6 asked of it: that, first
            if self.cluster is None:
                raise ConfigError("driver", spec.driver, "this netbayd takes no part in a cluster")
            created = self.cluster.agent.create_network(spec)
            return 201, {"Id": created.id, "Warning": ""}
        network = self.host.create_network(spec)
        return 201, {"Id": network.id, "Warning": ""}

    def remove_network(self, ref: str, **_: Any) -> Response:
        network = self._network(ref)
        if self.cluster is not None and network.scope == "global":
            self.cluster.agent.remove_network(network.name)
        else:
            self.host.remove_network(ref)
        return 204, None

    def prune_networks(self, params: dict[str, str], **_: Any) -> Response:
        """Unused user-defined networks; with filters (label, label!, until) only those that
        match: filters are checked before anything is removed, never ignored."""
        filters = parse_filters(params.get("filters"), PRUNE_FILTER_KEYS)
        if not filters:
            return 200, {"NetworksDeleted": self.host.prune_networks()}
        removed = []
        for network in self.host.networks():
            if network.builtin or network.state != READY:
                continue
            if not network_matches(network, filters, self._in_use):
                continue
            try:
                self.host.remove_network(network.id)
            except (InUseError, NotFoundError):
                continue
            removed.append(network.name)
        return 200, {"NetworksDeleted": removed}

    def connect(self, ref: str, body: dict[str, Any], **_: Any) -> Response:
        container, asked = docker_json.connect_request(body, ref)
        self.host.connect(ref, container, asked.ip, asked.aliases, ip6=asked.ip6)
        return 200, None

    def disconnect(self, ref: str, body: dict[str, Any], **_: Any) -> Response:
        container, force = docker_json.detach_request(body)
        self.host.disconnect(ref, container, force)
        return 200, None

    # --- containers --------------------------------------------------------------------
    def _container_json(self, container: Container) -> dict[str, Any]:
        return docker_json.container_json(container, self.host.container_endpoints(container))

    def list_containers(self, params: dict[str, str], **_: Any) -> Response:
        """Running containers and the runtimes' attachments (each is in place while its
        record is), all=1 the stopped ones too."""
        show_all = params.get("all") in ("1", "true")
        chosen = [
            c for c in self.host.containers()
            if c.state not in ("creating", "removing")
            and (show_all or c.state in ("running", SANDBOX))
        ]
        return 200, [self._container_json(c) for c in chosen]

    def create_container(self, body: dict[str, Any], params: dict[str, str], **_: Any) -> Response:
        spec = docker_json.container_spec(body, params.get("name"))
        container = self.host.create_container(spec)
        return 201, {"Id": container.id, "Warnings": []}

    def _runtime_container(self, ref: str) -> Container:
        """A runtime's attachment by the id or name its runtime gave it (as `netbay ps`
        shows them): the exact id or name, else a unique prefix of the id. The client
        percent-encodes the '/' of a pod's namespace/name."""
        ref = unquote(ref)
        sandboxes = [(c, docker_json.runtime_json(c)) for c in self.host.containers()
                     if c.state == SANDBOX]
        found = [c for c, r in sandboxes if ref in (r["ContainerID"], r["ContainerName"])]
        found = found or [c for c, r in sandboxes if ref and r["ContainerID"].startswith(ref)]
        if len(found) > 1:
            raise ConflictError(f"{ref!r} matches more than one container")
        if not found:
            raise NotFoundError(f"no such container: {ref}")
        return found[0]

    def inspect_container(self, ref: str, **_: Any) -> Response:
        try:
            container = self.host.container(ref)
        except NotFoundError:
            container = self._runtime_container(ref)
        body = self._container_json(container)
        body["NetworkSettings"].update(self.observe.container_extras(container))  # routes, ARP
        return 200, body

    def start_container(self, ref: str, **_: Any) -> Response:
        container, child = self.host.start_container(ref)
        self.reaper.watch(container.id, child)
        return 204, None

    def container_started(self, ref: str, body: dict[str, Any], **_: Any) -> Response:
        """A foreground `netbay run`: the client started the process itself."""
        self.host.mark_started(ref, docker_json.started_pid(body))
        return 204, None

    def container_exited(self, ref: str, body: dict[str, Any], **_: Any) -> Response:
        self.host.mark_exited(ref, docker_json.exit_code(body))
        return 204, None

    def stop_container(self, ref: str, params: dict[str, str], **_: Any) -> Response:
        self.host.stop_container(ref, docker_json.stop_seconds(params.get("t")))
        return 204, None

    def remove_container(self, ref: str, params: dict[str, str], **_: Any) -> Response:
        self.host.remove_container(ref, force=params.get("force") in ("1", "true"))
        return 204, None
