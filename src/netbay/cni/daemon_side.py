"""The daemon's side of CNI: ADD, DEL, CHECK, GC and STATUS of the `netbay` interface plugin
and the `netbay-ipam` plugin, on the engine's sandbox operations (engine/sandboxes.py).

Every attachment is recorded under the runtime's container id and CNI_IFNAME, tagged with
the CNI network name, so DEL and GC work from netbay's record: without the namespace,
without runtimeConfig or prevResult, any number of times.

Error codes: the spec's where one fits (1 version, 2 unsupported field, 3 unknown container,
4 environment, 6 decoding, 7 invalid network configuration, 11 try again later, 50 not
available); netbay's own: 100 internal, 101 no free address, 102 a kernel operation failed,
103 in use (an address, a host port, an interface name), 104 CHECK found the attachment
missing or not as recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import faults
from ..dns.records import dns_server_for
from ..drivers import capabilities, get_driver
from ..engine import Host
from ..engine.runtime_networks import UnusableNetwork
from ..engine.sandboxes import RuntimeAttachment, SandboxRequest
from ..errors import (
    ConfigError,
    ConflictError,
    IPAMExhaustedError,
    KernelError,
    NetbayError,
    NotFoundError,
)
from ..model import READY, Endpoint, Network
from . import asks, results
from . import config as cfg
from .plugin import (
    INTERNAL,
    INVALID_CONFIG,
    LATEST,
    NOT_AVAILABLE,
    UNKNOWN_CONTAINER,
    CniError,
)

NO_ADDRESS, KERNEL, IN_USE, CHECK_FAILED = 101, 102, 103, 104
RUNTIME = "cni"
log = logging.getLogger("netbay.cni")


def error_json(exc: CniError, version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"cniVersion": version, "code": exc.code, "msg": exc.msg}
    if exc.details:
        out["details"] = exc.details
    return out


def attach_error(exc: NetbayError) -> CniError:
    """An engine error while attaching, as a CNI error."""
    if isinstance(exc, ConfigError | NotFoundError):
        return CniError(INVALID_CONFIG, str(exc))
    if isinstance(exc, IPAMExhaustedError):
        return CniError(NO_ADDRESS, str(exc))
    if isinstance(exc, ConflictError):
        return CniError(IN_USE, str(exc))
    if isinstance(exc, KernelError):
        return CniError(KERNEL, str(exc))
    return CniError(INTERNAL, str(exc))


def _pod_name(args: Mapping[str, str]) -> str:
    """Kubernetes' namespace/name of the pod from CNI_ARGS; none from other runtimes
    (containerd's ctr), whose container id names it."""
    pod = args.get("K8S_POD_NAME", "")
    namespace = args.get("K8S_POD_NAMESPACE", "")
    return f"{namespace}/{pod}" if pod and namespace else pod


def _addresses_only(network: Network) -> bool:
    """Endpoints of NETWORK are addresses only: another plugin makes the links."""
    return get_driver(network.driver).mode == "private" and not (
        capabilities(network.driver).makes_links
    )


class CniService:
    def __init__(self, host: Host) -> None:
        self.host = host
        self._handlers: dict[tuple[str, str], Callable[[cfg.Invocation], Any]] = {
            ("netbay", "ADD"): self.add,
            ("netbay", "DEL"): self.delete,
            ("netbay", "CHECK"): self.check,
            ("netbay", "GC"): self.gc,
            ("netbay", "STATUS"): self.status,
            ("netbay-ipam", "ADD"): self.ipam_add,
            ("netbay-ipam", "DEL"): self.delete,
            ("netbay-ipam", "CHECK"): self.ipam_check,
            ("netbay-ipam", "GC"): self.gc,
            ("netbay-ipam", "STATUS"): self.ipam_status,
        }

    def handle(self, verb: str, body: Mapping[str, Any]) -> tuple[int, Any]:
        """(HTTP status, payload): 200 with a result, 204 without, 400 with a CNI error."""
        version = LATEST
        try:
            inv = cfg.invocation(body, verb.upper())
            version = inv.version
            result = self._handlers[(inv.kind, inv.command)](inv)
        except CniError as exc:
            return 400, error_json(exc, version)
        except NetbayError as exc:
            return 400, error_json(attach_error(exc), version)
        except Exception as exc:  # an answer in the spec's shape, whatever went wrong
            log.exception("CNI %s failed", verb)
            return 400, error_json(CniError(INTERNAL, "internal error", repr(exc)), version)
        return (204, None) if result is None else (200, result)

    # --- attachments -------------------------------------------------------------------
    def _setup(
        self, choice: cfg.NetworkChoice, request: Callable[[Network], SandboxRequest]
    ) -> tuple[Network, Endpoint]:
        """The existing network CHOICE names, or the one it defines (made if missing), and
        the attachment REQUEST makes of it; on failure nothing is left."""
        wanted = RuntimeAttachment(choice.name if choice.spec is None else choice.spec, request)
        try:
            ((network, endpoint),) = self.host.setup_sandbox(RUNTIME, [wanted])
        except UnusableNetwork as exc:  # a subnet clash, a bad option: nothing was made
            raise CniError(INVALID_CONFIG, str(exc)) from None
        except NetbayError as exc:
            raise attach_error(exc) from None
        return network, endpoint

    @staticmethod
    def _request(
        inv: cfg.Invocation, network: Network, want: asks.Requested, ports: bool
    ) -> SandboxRequest:
        for field, ip, prefixlen in (("ip", want.ip, want.prefixlen),
                                     ("ip6", want.ip6, want.prefixlen6)):
            if ip is None or prefixlen is None:
                continue
            subnet = next((s.subnet for s in network.subnets if ip in s.subnet), None)
            if subnet is not None and subnet.prefixlen != prefixlen:
                raise CniError(
                    INVALID_CONFIG, f"invalid {field} {ip}/{prefixlen}: network "
                    f"{network.name} has subnet {subnet}",
                )
        return SandboxRequest(
            external_id=inv.container_id,
            runtime=RUNTIME,
            netns=Path(inv.netns),
            ifname=inv.ifname,
            ip=want.ip,
            ip6=want.ip6,
            mac=want.mac,
            aliases=want.aliases,
            hostname=want.hostname,
            name=_pod_name(inv.args),
            ports=want.ports if ports else (),
            dns=want.runtime_dns.nameservers,
            tag=inv.name,
        )

    def _dns(self, network: Network, endpoint: Endpoint, want: asks.Requested) -> asks.Dns:
        """netbay's DNS server on the gateway where it serves the network (it forwards other
        names to the runtime's servers); else what the runtime and configuration say."""
        runtime, static = want.runtime_dns, want.static_dns
        search = runtime.search or static.search
        options = runtime.options or static.options
        server = dns_server_for(network, endpoint)
        if server is not None:
            return asks.Dns((str(server),), static.domain, search, options)
        return asks.Dns(runtime.nameservers or static.nameservers, static.domain, search, options)

    @staticmethod
    def _require_netns(inv: cfg.Invocation) -> None:
        if not Path(inv.netns).exists():
            raise CniError(UNKNOWN_CONTAINER, f"network namespace {inv.netns} does not exist")

    # --- the interface plugin ----------------------------------------------------------
    def add(self, inv: cfg.Invocation) -> dict[str, Any]:
        choice = cfg.interface_network(inv)
        want = asks.requested(inv)
        self._require_netns(inv)

        def request(network: Network) -> SandboxRequest:
            if _addresses_only(network):
                raise CniError(
                    INVALID_CONFIG, f"network {network.name} is an addresses-only (external) "
                    "network: use it through netbay-ipam",
                )
            return self._request(inv, network, want, ports=True)

        network, endpoint = self._setup(choice, request)
        faults.point("sandbox:cni-added")  # done, the runtime not yet told
        result = results.interface_result(
            inv.version, network, endpoint, inv.netns, self._dns(network, endpoint, want)
        )
        prev = inv.config.get("prevResult")
        return results.chained(prev, result) if prev else result

    def delete(self, inv: cfg.Invocation) -> None:
        """From the record only: the configuration, namespace, runtimeConfig and prevResult
        may all be missing or stale."""
        self.host.detach_sandbox(inv.container_id, inv.ifname, tag=inv.name)

    def check(self, inv: cfg.Invocation) -> None:
        network, endpoint = self._recorded(inv)
        self._check_prev_result(inv, endpoint)
        self._require_netns(inv)
        problems = self.host.sandbox_problems(network, endpoint, Path(inv.netns))
        if problems:
            raise CniError(CHECK_FAILED, "attachment not as recorded", "; ".join(problems))

    def _recorded(self, inv: cfg.Invocation) -> tuple[Network, Endpoint]:
        found = self.host.sandbox_attachment(inv.container_id, inv.ifname)
        if found is None:
            raise CniError(
                CHECK_FAILED, f"no attachment of container {inv.container_id} as {inv.ifname}"
            )
        sandbox, network, endpoint = found
        if self.host.attachment_tag(sandbox, inv.ifname) not in (None, inv.name):
            raise CniError(
                CHECK_FAILED, f"{inv.ifname} of container {inv.container_id} is attached to "
                f"another network",
            )
        if endpoint.state != READY:
            raise CniError(CHECK_FAILED, f"attachment is {endpoint.state}")
        if sandbox.netns != inv.netns:
            raise CniError(CHECK_FAILED, f"attachment is in namespace {sandbox.netns}")
        return network, endpoint

    @staticmethod
    def _check_prev_result(inv: cfg.Invocation, endpoint: Endpoint) -> None:
        prev = inv.config.get("prevResult")
        if not isinstance(prev, dict):
            raise CniError(INVALID_CONFIG, "required prevResult missing")
        listed = results.recorded_addresses(prev)
        for address in endpoint.addresses:
            if str(address) not in listed:
                raise CniError(
                    CHECK_FAILED, f"prevResult does not list the recorded address {address}"
                )

    def gc(self, inv: cfg.Invocation) -> None:
        valid = asks.valid_attachments(inv)
        removed, errors = self.host.collect_sandboxes(RUNTIME, inv.name, valid)
        if removed:
            log.info("CNI GC of %s removed %s", inv.name, removed)
        if errors:
            raise CniError(
                INTERNAL, f"GC could not remove {len(errors)} attachment(s)",
                "; ".join(str(e) for e in errors),
            )

    def status(self, inv: cfg.Invocation) -> None:
        self._status(cfg.interface_network(inv))

    def _status(self, choice: cfg.NetworkChoice) -> None:
        network = self.host.network_named(choice.name)
        if network is None or network.state != READY:
            if choice.spec is None:
                raise CniError(NOT_AVAILABLE, f"network {choice.name} not found")
            return  # made on the first ADD
        if not self.host.has_free_address(network):
            raise CniError(NOT_AVAILABLE, f"no free address left in network {network.name}")

    # --- the IPAM plugin ---------------------------------------------------------------
    def ipam_add(self, inv: cfg.Invocation) -> dict[str, Any]:
        choice = cfg.ipam_network(inv)
        ipam = inv.config.get("ipam")
        assert isinstance(ipam, dict)
        routes = cfg.routes(ipam, "ipam.")
        want = asks.requested(inv)
        dns = asks.dns_config("ipam.dns", ipam.get("dns"), "nameservers", "search")

        def request(network: Network) -> SandboxRequest:
            if capabilities(network.driver).makes_links:
                raise CniError(
                    INVALID_CONFIG, f"network {network.name} is a {network.driver} network "
                    "whose links netbay makes: use type netbay, not netbay-ipam",
                )
            return self._request(inv, network, want, ports=False)

        network, endpoint = self._setup(choice, request)
        return results.ipam_result(inv.version, network, endpoint, routes, dns)

    def ipam_check(self, inv: cfg.Invocation) -> None:
        _, endpoint = self._recorded(inv)
        self._check_prev_result(inv, endpoint)

    def ipam_status(self, inv: cfg.Invocation) -> None:
        self._status(cfg.ipam_network(inv))
