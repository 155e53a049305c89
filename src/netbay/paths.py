"""Where netbay keeps things; every location can be moved by the environment (tests do)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = "/var/lib/netbay"
DEFAULT_SOCKET = "/run/netbay/netbay.sock"
DEFAULT_NETNS_DIR = "/run/netns"


@dataclass(frozen=True)
class Paths:
    root: Path
    socket: Path
    netns_dir: Path

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
