"""Who this node is, kept in its state root: the node id (made once, never the address, so a
node whose address changes or that restarts keeps its subnets) and the settings it joined
with (so the join survives daemon restarts). Also the default node address, and the node's
IPv6 underlay address beside it. (The VTEP MAC a node publishes is derived from its node id
by plan/overlay.py's vtep_mac.)"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv6Address
from pathlib import Path

from ..errors import ConfigError, NetbayError
from ..kernel.netlink import Netns
from ..kernel.rtnl_wire6 import Address6
from .endpoints import Endpoint

NODE_ID_FILE = "node-id"
JOIN_FILE = "cluster.json"
_NODE_ID = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_TTL = 15
DEFAULT_GRACE = 3600
IFA_F_DEPRECATED = 0x20  # its preferred lifetime is over: not to be picked as a source
RT_SCOPE_UNIVERSE = 0  # a global address (link-local ones have RT_SCOPE_LINK)


@dataclass(frozen=True)
class JoinSettings:
    """What `cluster join` was given (TLS files as paths); ADDRESS None: found again at each
    start, towards the first endpoint."""

    endpoints: tuple[str, ...]
    name: str
    address: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    ttl: int = DEFAULT_TTL
    grace: int = DEFAULT_GRACE
    prefix: str = "/netbay/v1/"


def _write_new(path: Path, text: str) -> bool:
    """Write PATH whole or not at all (a temporary file linked into place); False if PATH
    already existed."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    temporary.write_text(text)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink()
    return True


def node_id(root: Path) -> str:
    """This node's id: ROOT/node-id, made on first use (by whichever process gets there
    first, if several race)."""
    path = root / NODE_ID_FILE
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        _write_new(path, secrets.token_hex(16) + "\n")
    text = path.read_text().strip()
    if not _NODE_ID.match(text):
        raise ConfigError("node id", text, f"{path} must hold 32 hex digits")
    return text


def save_join(root: Path, settings: JoinSettings) -> None:
    root.mkdir(parents=True, exist_ok=True)
    path = root / JOIN_FILE
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(asdict(settings), indent=2) + "\n")
    os.replace(temporary, path)


def load_join(root: Path) -> JoinSettings | None:
    """The settings of the last join; None when this node has not joined (or has left)."""
    path = root / JOIN_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError("cluster settings", str(path), f"cannot be read: {exc}") from None
    raw["endpoints"] = tuple(raw["endpoints"])
    return JoinSettings(**raw)


def forget_join(root: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (root / JOIN_FILE).unlink()


def source_address(endpoint: Endpoint) -> IPv4Address:
    """The address this host would send from towards ENDPOINT (flannel's can-reach): a UDP
    socket's connect picks the route and sends nothing."""
    try:
        infos = socket.getaddrinfo(endpoint.host, endpoint.port, socket.AF_INET,
                                   socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(infos[0][4])
            return IPv4Address(probe.getsockname()[0])
    except OSError as exc:
        reason = f"no IPv4 route towards it to take the node address from: {exc}"
        raise ConfigError("etcd endpoint", endpoint.url, reason) from None


def source_address6(address: IPv4Address, netns: Netns = None) -> IPv6Address | None:
    """This host's IPv6 underlay address beside its IPv4 cluster ADDRESS: the first global,
    usable (not tentative, not deprecated) IPv6 address of the link that holds ADDRESS;
    None when there is none, or the link cannot be read (the node is then IPv4 only)."""
    from ..kernel.rtnetlink import Rtnetlink  # netlink only here: the rest is pure

    try:
        with Rtnetlink(netns) as rtnl:
            return pick_address6(address, rtnl.indexed_addresses(), rtnl.addresses6())
    except (NetbayError, OSError):
        return None


def pick_address6(
    address: IPv4Address, addresses: Iterable[tuple[int, IPv4Interface]],
    addresses6: Iterable[Address6],
) -> IPv6Address | None:
    """source_address6's choice among a namespace's ADDRESSES (by device index) and
    ADDRESSES6, in the kernel's order."""
    link = next((index for index, interface in addresses if interface.ip == address), None)
    if link is None:
        return None
    return next((a.address.ip for a in addresses6
                 if a.index == link and a.scope == RT_SCOPE_UNIVERSE and not a.tentative
                 and not a.flags & IFA_F_DEPRECATED), None)
