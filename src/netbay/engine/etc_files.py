"""A container's /etc/hosts, /etc/hostname and /etc/resolv.conf, rendered from the record
into its directory (bind-mounted over the container's /etc when it starts)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address

from ..dns.records import dns_server_for, serves
from ..model import Container, IPAddress
from ..paths import Paths
from ..runtime import files
from ..store.base import Store
from .records import container_endpoints

ETC_FILES = ("hosts", "hostname", "resolv.conf")


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


@dataclass(frozen=True, eq=False)
class EtcFiles:
    paths: Paths
    store: Store

    def write_all(self, container: Container) -> None:
        self.refresh_resolv_conf(container)
        path = self.paths.container_dir(container.id) / "hostname"
        files.write_in_place(path, (container.hostname or "localhost") + "\n")
        self.refresh_hosts_file(container)

    def refresh_resolv_conf(self, container: Container) -> None:
        """On a network DNS serves: netbay's DNS server on the gateway of the first one, which
        forwards other names to --dns or the host's resolvers, as Docker's embedded DNS does
        (with ndots:0, so a container name is asked as it is before any search domain).
        The IPv4 gateway of the first one the container has IPv4 on; an IPv6-only container
        (IPv6 on every served network) asks on the IPv6 gateway of the first one.
        Otherwise (none, host): the --dns servers or the host's, loopback ones left out."""
        dns, search, options = (
            _strings(container.config.get(key)) for key in ("dns", "dns_search", "dns_options")
        )
        addressed = [
            (network, endpoint)
            for network, endpoint in container_endpoints(self.store, container)
            if endpoint.address is not None or endpoint.address6 is not None
        ]
        served = [network for network, _ in addressed if serves(network)]
        servers = [
            server for network, endpoint in addressed
            if (server := dns_server_for(network, endpoint)) is not None
        ]
        # IPv4 first, as before IPv6 came: a dual-stack container keeps its IPv4 server
        gateway = next((s for s in servers if s.version == 4), servers[0] if servers else None)
        if gateway is None:
            text = files.render_resolv_conf(dns or files.host_nameservers(), search, options)
        else:
            if not any(o.startswith("ndots:") for o in options):
                options.insert(0, "ndots:0")
            if all(network.internal for network in served):
                upstream = "none (internal network)"
            else:
                upstream = ", ".join(dns) or "the host's resolvers"
            text = files.render_resolv_conf(
                [str(gateway)], search, options,
                notes=[f"netbay DNS; other names are forwarded to: {upstream}"],
            )
        files.write_in_place(self.paths.container_dir(container.id) / "resolv.conf", text)

    def refresh_hosts_file(self, container: Container) -> None:
        names = [n for n in (container.hostname, container.name) if n]
        endpoints = [e for _, e in container_endpoints(self.store, container)]
        # IPv4 lines first (as before IPv6 came), then IPv6 ones, as Docker writes them
        own: list[tuple[IPAddress, list[str]]] = [
            (e.address.ip, names) for e in endpoints if e.address]
        own += [(e.address6.ip, names) for e in endpoints if e.address6]
        extra = [(h, ip_address(a)) for h, a in container.config.get("extra_hosts", [])]  # type: ignore[attr-defined]
        path = self.paths.container_dir(container.id) / "hosts"
        files.write_in_place(path, files.render_hosts(own, extra))

    def refresh(self, container: Container) -> None:
        """After a connect or disconnect: the names and the DNS server may have changed."""
        self.refresh_hosts_file(container)
        self.refresh_resolv_conf(container)
