"""Netlink through pyroute2's IPRoute, one socket per namespace, opened in-process.

Everything here is an `ensure`/`remove` verb: "already exists" is checked and accepted,
"already gone" is success, so setup can be retried and teardown is idempotent.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, ip_network
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..errors import KernelError
from .netns import entered

_GONE = (errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL)


def _kernel_error(what: str, exc: NetlinkError) -> KernelError:
    return KernelError(f"{what}: {exc.args[1] if len(exc.args) > 1 else exc}", exc.code)


class Netlink:
    """A netlink socket bound to one network namespace (None: the caller's own)."""

    def __init__(self, netns: Path | str | None = None) -> None:
        with entered(netns):
            self._ipr = IPRoute()

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- links -------------------------------------------------------------------------
    def link(self, name: str) -> Any | None:
        try:
            return self._ipr.link("get", ifname=name)[0]
        except NetlinkError as exc:
            if exc.code in _GONE:
                return None
            raise _kernel_error(f"get link {name}", exc) from exc

    def index(self, name: str) -> int | None:
        msg = self.link(name)
        return None if msg is None else int(msg["index"])

    def links(self) -> list[Any]:
        return list(self._ipr.link("dump"))

    def ensure_bridge(self, name: str, mtu: int | None) -> tuple[int, bool]:
        """Return (index, created). An existing link of another kind is an error."""
        existing = self.link(name)
        if existing is not None:
            if link_kind(existing) != "bridge":
                raise KernelError(f"{name} exists and is not a bridge", errno.EEXIST)
            return int(existing["index"]), False
        extra: dict[str, Any] = {"mtu": mtu} if mtu else {}
        try:
            self._ipr.link("add", ifname=name, kind="bridge", **extra)
        except NetlinkError as exc:
            raise _kernel_error(f"create bridge {name}", exc) from exc
        index = self.index(name)
        assert index is not None
        self.set_up(index)
        return index, True

    def add_veth(
        self,
        host_name: str,
        peer_name: str,
        peer_netns: Path | str,
        *,
        master: int,
        peer_mac: str | None,
        mtu: int | None,
    ) -> None:
        """One request: the veth pair, its host end enslaved and up, the peer born inside the
        container's namespace (no move), with its MAC."""
        fd = os.open(peer_netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            peer: dict[str, Any] = {"ifname": peer_name, "net_ns_fd": fd}
            extra: dict[str, Any] = {}
            if peer_mac:
                peer["address"] = peer_mac
            if mtu:
                peer["mtu"] = mtu
                extra["mtu"] = mtu
            self._ipr.link(
                "add", ifname=host_name, kind="veth", master=master, state="up", peer=peer, **extra
            )
        except NetlinkError as exc:
            raise _kernel_error(f"create veth {host_name}", exc) from exc
        finally:
            os.close(fd)

    def set_up(self, index: int) -> None:
        try:
            self._ipr.link("set", index=index, state="up")
        except NetlinkError as exc:
            raise _kernel_error(f"set link {index} up", exc) from exc

    def remove_link(self, name: str) -> bool:
        """Delete a link by name; True if it was there."""
        try:
            self._ipr.link("del", ifname=name)
            return True
        except NetlinkError as exc:
            if exc.code in _GONE:
                return False
            raise _kernel_error(f"delete link {name}", exc) from exc

    # --- addresses and routes ----------------------------------------------------------
    def ensure_address(self, index: int, address: IPv4Interface) -> None:
        try:
            self._ipr.addr(
                "add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen
            )
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise _kernel_error(f"add address {address}", exc) from exc

    def ensure_default_route(self, gateway: IPv4Address) -> None:
        try:
            self._ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway))
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise _kernel_error(f"add default route via {gateway}", exc) from exc

    def has_default_route(self) -> bool:
        return any(r.get("dst_len") == 0 for r in self._ipr.route("dump", family=2, table=254))

    def addresses(self) -> Iterator[IPv4Interface]:
        for msg in self._ipr.addr("dump", family=2):
            yield IPv4Interface(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}")

    def routed_networks(self) -> Iterator[IPv4Network]:
        """Destinations of the main table's routes, the default route left out."""
        for msg in self._ipr.route("dump", family=2, table=254):
            if msg.get("dst_len"):
                yield ip_network(f"{msg.get('RTA_DST')}/{msg['dst_len']}", strict=False)

    def routes(self) -> list[dict[str, str]]:
        out = []
        names = {int(m["index"]): m.get("IFLA_IFNAME") for m in self.links()}
        for msg in self._ipr.route("dump", family=2, table=254):
            dst = f"{msg.get('RTA_DST')}/{msg['dst_len']}" if msg.get("dst_len") else "default"
            entry = {"dst": dst, "dev": names.get(msg.get("RTA_OIF"), "")}
            if msg.get("RTA_GATEWAY"):
                entry["gateway"] = msg.get("RTA_GATEWAY")
            out.append(entry)
        return out


def link_kind(msg: Any) -> str | None:
    info = msg.get("IFLA_LINKINFO")
    return None if info is None else info.get("IFLA_INFO_KIND")


def link_summary(msg: Any) -> dict[str, Any]:
    return {
        "name": msg.get("IFLA_IFNAME"),
        "index": int(msg["index"]),
        "kind": link_kind(msg),
        "mac": msg.get("IFLA_ADDRESS"),
        "mtu": msg.get("IFLA_MTU"),
        "master": msg.get("IFLA_MASTER"),
        "up": bool(msg["flags"] & 1),
    }
