"""nftables through libnftables, one long-lived context per process.

A context kept open makes element and rule changes cost ~0.05 ms; a context (or `nft`
process) that deletes something and then closes its netlink socket waits 12-19 ms. So the
daemon keeps this one for its lifetime, and each operation is one `json_cmd` (one atomic
transaction). Listings come back as JSON.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from ..errors import FirewallError


class Nft:
    def __init__(self) -> None:
        try:
            import nftables
        except ImportError as exc:  # pragma: no cover - install.sh provides it
            raise FirewallError("python nftables bindings are missing (pip-nftables)") from exc
        self._ctx = nftables.Nftables()
        self._ctx.set_json_output(True)
        self._ctx.set_handle_output(False)
        self.lock = threading.Lock()

    def apply(self, commands: str) -> None:
        """Run nft commands (several lines) as one transaction; all or nothing."""
        if not commands.strip():
            return
        with self.lock:
            rc, _out, err = self._ctx.cmd(commands)
        if rc != 0:
            raise FirewallError(f"nftables refused the change: {str(err).strip()}")

    def list(self, what: str) -> list[dict[str, Any]]:
        with self.lock:
            rc, out, err = self._ctx.cmd(f"list {what}")
        if rc != 0:
            raise FirewallError(f"nft list {what}: {str(err).strip()}")
        data = json.loads(out) if out else {"nftables": []}
        return list(data.get("nftables", []))

    def has_chain(self, family: str, table: str, chain: str) -> bool:
        """Cheap presence check (a chain lists its rules, not the sets' elements)."""
        with self.lock:
            rc, _out, _err = self._ctx.cmd(f"list chain {family} {table} {chain}")
        return bool(rc == 0)
