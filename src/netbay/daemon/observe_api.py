"""Routes for seeing the network (topology, trace, capture target, doctor, RPS): thin
handlers over netbay.observe; registered by Api next to the Docker-shaped routes."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..engine import Host
from ..observe.service import Observer
from ..observe.steering import Steering
from ..observe.tracing import Tracer

if TYPE_CHECKING:
    from .api import Api

Response = tuple[int, Any]


class ObserveRoutes:
    def __init__(self, host: Host, api: Api) -> None:
        self.host = host
        self.api = api
        self.observer = Observer(host)
        self.tracer = Tracer(host)
        self.steering = Steering(host)

    def routes(self) -> list[tuple[str, str, Callable[..., Response]]]:
        return [
            ("GET", r"/netbay/topology", self.topology),
            ("POST", r"/netbay/trace", self.trace),
            ("GET", r"/netbay/capture/(?P<ref>[^/]+)", self.capture),
            ("GET", r"/netbay/doctor", self.doctor),
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

        return 200, {"Findings": doctor(self.host, self.observer, self._dns_health())}

    def _dns_health(self) -> dict[str, Any] | None:
        """The DNS server's health, when the daemon has a route for it (GET .../dns...health
        without parameters); None when it has none."""
        for method, pattern, _ in self.api._routes:
            text = pattern.pattern.rstrip("$")
            if method == "GET" and "dns" in text and "health" in text and "(" not in text:
                status, payload = self.api.dispatch("GET", text.replace("\\", ""), None)
                if isinstance(payload, dict):
                    return dict(payload, healthy=status < 400 and payload.get("healthy", True))
                return {"healthy": status < 400, "answer": payload}
        return None

    def rps_show(self, params: dict[str, str], **_: Any) -> Response:
        return 200, self.steering.show(params.get("target") or None)

    def rps_set(self, body: dict[str, Any], **_: Any) -> Response:
        return 200, self.steering.set(body)

    def container_extras(self, container: Any) -> dict[str, Any]:
        return self.observer.container_extras(container)
