"""Routes for the runtimes' thin executables: the CNI plugins (POST /cni/<command>) and the
netavark-compatible backend (POST /netavark/setup|teardown)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..cni.daemon_side import CniService
from ..engine import Host
from ..podman.daemon_side import NetavarkService

Response = tuple[int, Any]


class RuntimeRoutes:
    def __init__(self, host: Host) -> None:
        self.cni = CniService(host)
        self.netavark = NetavarkService(host)

    def routes(self) -> Iterator[tuple[str, str, Callable[..., Response]]]:
        yield "POST", r"/cni/(?P<verb>add|del|check|gc|status)", self.cni_command
        yield "POST", r"/netavark/(?P<verb>setup|teardown)", self.netavark_command

    def cni_command(self, verb: str, body: dict[str, Any], **_: Any) -> Response:
        return self.cni.handle(verb, body)

    def netavark_command(self, verb: str, body: dict[str, Any], **_: Any) -> Response:
        return self.netavark.handle(verb, body)
