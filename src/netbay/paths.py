"""Where netbay keeps things; every location can be moved by the environment (tests do)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_ROOT = "/var/lib/netbay"
DEFAULT_SOCKET = "/run/netbay/netbay.sock"
DEFAULT_NETNS_DIR = "/run/netns"


class Paths:
    """The state root, the API socket and the netns directory. A plain class, not a
    dataclass: `dataclasses` costs ~10 ms of imports on every CLI start."""

    __slots__ = ("netns_dir", "root", "socket")

    def __init__(self, root: Path, socket: Path, netns_dir: Path) -> None:
        self.root = root
        self.socket = socket
        self.netns_dir = netns_dir

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Paths) and (self.root, self.socket, self.netns_dir) == (
            other.root, other.socket, other.netns_dir)

    def __hash__(self) -> int:
        return hash((self.root, self.socket, self.netns_dir))

    def __repr__(self) -> str:
        return f"Paths(root={self.root!r}, socket={self.socket!r}, netns_dir={self.netns_dir!r})"

    @classmethod
    def from_env(cls, root: str | os.PathLike[str] | None = None) -> Paths:
        env = os.environ
        base = Path(root or env.get("NETBAY_ROOT") or DEFAULT_ROOT)
        return cls(
            root=base,
            socket=Path(env.get("NETBAY_SOCKET") or DEFAULT_SOCKET),
            netns_dir=Path(env.get("NETBAY_NETNS_DIR") or DEFAULT_NETNS_DIR),
        )

    @property
    def db(self) -> Path:
        return self.root / "netbay.db"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def daemon_log(self) -> Path:
        return self.root / "netbayd.log"

    @property
    def daemon_lock(self) -> Path:
        return self.root / "netbayd.lock"

    def container_dir(self, container_id: str) -> Path:
        return self.containers / container_id

    def netns_path(self, container_id: str) -> Path:
        return self.netns_dir / f"netbay-{container_id[:12]}"
