"""Routes for seeing the network (topology, trace, capture target, doctor, DNS health, RPS):
thin handlers over netbay.observe; registered by Api next to the Docker-shaped routes."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..engine import Host
from ..observe.bgp import BgpSessions
from ..observe.peers import ClusterNodes

if TYPE_CHECKING:
    from ..observe.observer import Observer
    from ..observe.steering import Steering
    from ..observe.tracer import Tracer

Response = tuple[int, Any]
DnsHealth = Callable[[], dict[str, Any]]  # DnsSupervisor.health


class ObserveRoutes:
    def __init__(self, host: Host, dns_health: DnsHealth | None = None,
                 cluster_nodes: ClusterNodes | None = None,
                 bgp_sessions: BgpSessions | None = None) -> None:
        """CLUSTER_NODES: the cluster agent's node list (ClusterAgent.nodes), which names the
        other nodes of overlay networks in topology and trace; BGP_SESSIONS: this node's
        BIRD's, for routed networks in topology."""
        self.host = host
        self.dns_health = dns_health  # None: this daemon runs no DNS server
        self._cluster_nodes, self._bgp_sessions = cluster_nodes, bgp_sessions

    # made on first use: their modules are ~0.1 s of netbayd's start, which no container needs
    @cached_property
    def observer(self) -> Observer:
        from ..observe.observer import Observer

        return Observer(self.host, self._cluster_nodes, self._bgp_sessions)

    @cached_property
    def tracer(self) -> Tracer:
        from ..observe.tracer import Tracer

        return Tracer(self.host, self._cluster_nodes)

    @cached_property
    def steering(self) -> Steering:
        from ..observe.steering import Steering

        return Steering(self.host)

    def routes(self) -> list[tuple[str, str, Callable[..., Response]]]:
        return [
            ("GET", r"/netbay/topology", self.topology),
            ("POST", r"/netbay/trace", self.trace),
            ("GET", r"/netbay/capture/(?P<ref>[^/]+)", self.capture),
            ("GET", r"/netbay/doctor", self.doctor),
            ("GET", r"/netbay/dns/health", self.dns),
            ("GET", r"/netbay/rps", self.rps_show),
            ("POST", r"/netbay/rps", self.rps_set),
        ]

    def topology(self, **_: Any) -> Response:
        return 200, self.observer.topology()

    def trace(self, body: dict[str, Any], **_: Any) -> Response:
        return 200, self.tracer.trace(body)

    def capture(self, ref: str, params: dict[str, str], **_: Any) -> Response:
        target = self.observer.capture_target(ref, params.get("network"))
        target["daemon_pid"] = os.getpid()
        return 200, target

    def doctor(self, **_: Any) -> Response:
        from ..observe.health import doctor

        dns = self.dns_health() if self.dns_health is not None else None
        return 200, {"Findings": doctor(self.host, self.observer, dns)}

    def dns(self, **_: Any) -> Response:
        """200 when the DNS server answers on every address the record needs (or nothing
        needs it yet), 503 otherwise; the body says what it serves and what went wrong."""
        if self.dns_health is None:
            return 404, {"message": "this netbayd runs no DNS server"}
        report = self.dns_health()
        return (200 if report["healthy"] else 503), report

    def rps_show(self, params: dict[str, str], **_: Any) -> Response:
        return 200, self.steering.show(params.get("target") or None)

    def rps_set(self, body: dict[str, Any], **_: Any) -> Response:
        return 200, self.steering.set(body)

    def container_extras(self, container: Any) -> dict[str, Any]:
        return self.observer.container_extras(container)
