"""The daemon's side of podman's netavark interface: setup and teardown of one container's
networks, on the engine's sandbox operations (engine/sandboxes.py).

setup validates every network first (and makes the missing ones), then attaches each; when
one fails, what was already done is undone, as netavark does. teardown works from netbay's
record by (container id, interface name), so it also finishes when the namespace is gone
(netavark#1451), and is idempotent: podman's `network reload` tears down and sets up again.
Aliases and the container name go to netbay's DNS server, which listens on the gateway of
each bridge network (the status block's dns_server_ips).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from .. import faults
from ..dns.records import serves
from ..drivers import runtime_options
from ..engine import Host
from ..engine.firewall import can_publish
from ..engine.sandboxes import RuntimeAttachment, SandboxRequest
from ..errors import NetbayError
from ..model import Endpoint, Network
from .options import Attachment, Options, OptionsError, parse

RUNTIME = "netavark"
log = logging.getLogger("netbay.podman")


class SetupError(Exception):
    pass


def _errors(errors: list[str]) -> str:
    """netavark's wording for several teardown errors."""
    if len(errors) == 1:
        return errors[0]
    return "netavark encountered multiple errors:" + "".join(f"\n\t- {e}" for e in errors)


def status_block(
    attachment: Attachment, network: Network, endpoint: Endpoint, dns_servers: tuple[str, ...]
) -> dict[str, Any]:
    """netavark's StatusBlock of one network: the interface's addresses (IPv4 first, each
    with its subnet's gateway unless the network is internal) and where DNS is asked."""
    subnets = []
    servers: list[str] = [] if attachment.dns_enabled else list(dns_servers)
    for address in endpoint.addresses:
        entry: dict[str, Any] = {"ipnet": str(address)}
        gateway = next((s.gateway for s in network.subnets if address.ip in s.subnet), None)
        if gateway is not None and not network.internal:
            entry["gateway"] = str(gateway)
        subnets.append(entry)
        # netbay's DNS server listens on the gateways of both families: the IPv4 one is
        # named when there is one (as before IPv6), else the IPv6 one
        listens = gateway is not None and serves(network)
        if attachment.dns_enabled and listens and (address.version == 4 or not servers):
            servers = [str(gateway)]
    return {
        "dns_search_domains": [],
        "dns_server_ips": servers,
        "interfaces": {
            endpoint.ifname: {"mac_address": endpoint.mac or "", "subnets": subnets}
        },
    }


class NetavarkService:
    def __init__(self, host: Host) -> None:
        self.host = host

    def handle(self, verb: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        """(HTTP status, payload): 200 with the status block (setup) or nothing (teardown),
        400 with netavark's {"error": ...}."""
        try:
            netns = body.get("netns")
            if not isinstance(netns, str) or not netns:
                raise OptionsError("invalid namespace path: none given")
            raw = body.get("input")
            options = parse(json.loads(raw) if isinstance(raw, str) else raw)
            if verb == "setup":
                return 200, self.setup(Path(netns), options)
            self.teardown(options)
            return 204, None
        except (OptionsError, SetupError) as exc:
            return 400, {"error": str(exc)}
        except NetbayError as exc:
            return 400, {"error": str(exc)}
        except json.JSONDecodeError as exc:
            return 400, {"error": f"JSON Decoding error: {exc}"}
        except Exception as exc:  # netavark's error shape, whatever went wrong
            log.exception("netavark %s failed", verb)
            return 400, {"error": f"internal error: {exc!r}"}

    def setup(self, netns: Path, options: Options) -> dict[str, Any]:
        if not netns.exists():
            raise SetupError(f"invalid namespace path: {netns} does not exist")
        self.host.loopback_up(netns)
        wanted = [
            RuntimeAttachment(attachment.spec, partial(_request, netns, options, attachment))
            for attachment in options.attachments
        ]
        done = self.host.setup_sandbox(RUNTIME, wanted)
        faults.point("sandbox:netavark-set-up")  # done, podman not yet told
        return {
            attachment.name: status_block(attachment, network, endpoint, options.dns_servers)
            for attachment, (network, endpoint) in zip(options.attachments, done, strict=True)
        }

    def teardown(self, options: Options) -> None:
        """Best effort over every network; errors reported together."""
        errors = self.host.teardown_sandbox(
            options.container_id, [(a.ifname, a.name) for a in options.attachments]
        )
        if errors:
            raise SetupError(_errors([f"network {tag}: {exc}" for tag, exc in errors]))


def _request(
    netns: Path, options: Options, attachment: Attachment, network: Network
) -> SandboxRequest:
    if runtime_options(network.driver) is None:  # not a kind runtimes make
        raise SetupError(f"network {network.name}: unsupported driver {network.driver}")
    return SandboxRequest(
        external_id=options.container_id,
        runtime=RUNTIME,
        netns=netns,
        ifname=attachment.ifname,
        ip=attachment.ip,
        ip6=attachment.ip6,
        mac=attachment.mac,
        aliases=attachment.aliases,
        hostname=options.container_name if attachment.dns_enabled else "",
        name=options.container_name,
        # ports go to the bridge networks (netavark's macvlan ignores them too)
        ports=options.ports if can_publish(network) else (),
        dns=options.dns_servers,
        tag=attachment.name,
    )
