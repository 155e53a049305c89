"""Keeps netbay's nftables tables in place: `nft flush ruleset` or an nftables service reload
removes them; the guard notices within a second and rebuilds them from the record."""

from __future__ import annotations

import logging
import threading

from ..engine import Host

log = logging.getLogger("netbayd")


class FirewallGuard:
    def __init__(self, host: Host, interval: float = 1.0) -> None:
        self._host = host
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="firewall-guard", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if self._host.restore_firewall():
                    log.warning("netbay's nftables tables were gone; restored from the record")
            except Exception:
                log.exception("firewall check failed")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
