"""Sandboxes whose namespace is gone: released without the runtime's DEL.

containerd's `ctr run --cni` never sends DEL when a task goes; its namespace path,
/proc/PID/ns/net, goes with the process. A runtime that removes a pinned namespace without
DEL leaves the same. Their leases and published ports would stay taken until `netbay system
gc`, so the daemon asks `release()` every second: a sandbox whose namespace has been gone for
the grace period is released as DEL would (leases, port mappings, records, the runtime's
networks it leaves unused), and one line says so.

"Gone" is judged by what the path names, not by whether it exists: a /proc/PID path of a
reused PID, or a pin made again at the same place, names another namespace. The record keeps
(st_dev, st_ino) of the namespace when it was attached, and for a /proc/PID path the process's
start time (namespace inode numbers are reused once freed, and PIDs wrap).

The grace period (5 s, NETBAY_VANISHED_GRACE or Host(vanished_grace=...)): runtimes that do
send DEL send it within about a second of the task's exit (containerd's CRI, CRI-O, podman),
and their DEL comes first, in the order of their plugin chain; the kernel also frees a dead
namespace in the background (seconds under churn), and the released lease should not be
handed out while a veth of the old namespace may still answer for it. Longer would keep a
fixed address or host port from a restarted container for longer.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import _linux
from ..errors import ConfigError, NetbayError
from ..model import REMOVING, SANDBOX, Container
from ..plan.ports import container_ports
from ..store.base import Store
from .containers import Containers
from .kernel import Kernel
from .records import container_endpoints
from .runtime_networks import RuntimeNetworks

DEFAULT_VANISHED_GRACE = 5.0
GRACE_ENV = "NETBAY_VANISHED_GRACE"
_PROC_NETNS = re.compile(r"/proc/(\d+)/(?:task/\d+/)?ns/net")
NetnsIdentity = tuple[int, int, int]  # (st_dev, st_ino, start time of a /proc/PID's process)
log = logging.getLogger("netbay.sandboxes")


def vanished_grace_from_env() -> float:
    raw = os.environ.get(GRACE_ENV, "").strip()
    if not raw:
        return DEFAULT_VANISHED_GRACE
    try:
        grace = float(raw)
    except ValueError:
        grace = math.nan
    if not 0 <= grace < math.inf:
        raise ConfigError(GRACE_ENV, raw, "expected a number of seconds, 0 or more")
    return grace


def netns_identity(path: Path) -> NetnsIdentity:
    """What the namespace PATH names now is; zeros if it names none (a /proc/PID path of a
    process that is gone or a zombie has no namespace)."""
    proc = _PROC_NETNS.fullmatch(str(path))
    start = _linux.process_start_time(int(proc[1])) if proc else 0
    try:
        stat = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (stat.st_dev, stat.st_ino, start)


def recorded_identity(sandbox: Container) -> NetnsIdentity:
    return (sandbox.netns_dev, sandbox.netns_ino, sandbox.netns_pid_start)


def namespace_vanished(sandbox: Container) -> str | None:
    """None while the sandbox's path names the namespace it was attached in; else how it
    went. A record from before identities were noted has only its path to go by."""
    if sandbox.netns is None:
        return None
    now = netns_identity(Path(sandbox.netns))
    if now == (0, 0, 0):
        return f"its network namespace {sandbox.netns} is gone"
    if sandbox.netns_ino and now != recorded_identity(sandbox):
        return f"{sandbox.netns} names another network namespace now"
    return None


def release_sandbox(
    store: Store,
    containers: Containers,
    runtime_networks: RuntimeNetworks,
    sandbox: Container,
    owner: str,
) -> None:
    """Remove a sandbox whose namespace is gone, and the runtime's networks it leaves
    unused. The record forgets the path first: whatever it names now is not ours to touch
    (a parent driver's detach deletes the link inside the namespace)."""
    networks = [network for network, _ in container_endpoints(store, sandbox)]
    store.update_container(sandbox.id, state=REMOVING, owner=owner, netns=None)
    containers.destroy(store.find_container(sandbox.id) or sandbox)
    for network in networks:
        runtime_networks.release(network)


def _summary(store: Store, sandbox: Container) -> str:
    """The attachments and ports of a sandbox, for the line that says it was released."""
    parts = [
        f"{endpoint.ifname} {endpoint.address.ip if endpoint.address else '-'} on {network.name}"
        for network, endpoint in container_endpoints(store, sandbox)
    ]
    ports = container_ports(sandbox)
    if ports:
        parts.append("ports " + ", ".join(f"{m.host_port}/{m.proto}" for m in ports))
    return "; ".join(parts) or "no attachments"


@dataclass(eq=False)
class VanishedSandboxes:
    """The sweep the daemon runs every second (reconcile/loop.py), with what it remembers
    between runs: when each vanished namespace was first seen gone."""

    store: Store
    kernel: Kernel
    containers: Containers
    runtime_networks: RuntimeNetworks
    owner: str
    grace: float = DEFAULT_VANISHED_GRACE
    # sandbox id -> when its namespace was first seen gone (this process's clock)
    _since: dict[str, float] = field(default_factory=dict)
    _scan: threading.Lock = field(default_factory=threading.Lock)
    # the sandboxes as of the store's version (reading every record is most of a sweep)
    _sandboxes: list[Container] = field(default_factory=list)
    _version: int | None = None

    def release(self) -> list[str]:
        """Release every sandbox whose namespace has been gone for the grace period; the
        names of those released. One stat per sandbox (and a read of /proc/PID/stat for a
        /proc path), no netlink, the records read again only after a change: cheap enough
        to call every second (1,000 sandboxes: ~40 ms a sweep on the 2-core VM, loaded)."""
        with self._scan:
            now = time.monotonic()
            gone = {c.id: c for c in self._current() if namespace_vanished(c) is not None}
            for known in [k for k in self._since if k not in gone]:
                del self._since[known]  # released by DEL or GC meanwhile
            released = []
            for sandbox_id, sandbox in gone.items():
                if now - self._since.setdefault(sandbox_id, now) < self.grace:
                    continue
                if self._release(sandbox):
                    released.append(sandbox.name)
                del self._since[sandbox_id]
        return released

    def _current(self) -> list[Container]:
        version = self.store.version()
        if version != self._version:
            self._sandboxes = [c for c in self.store.containers() if c.state == SANDBOX]
            self._version = version
        return self._sandboxes

    def _release(self, sandbox: Container) -> bool:
        with self.kernel.lock:
            current = self.store.find_container(sandbox.id)
            why = None if current is None else namespace_vanished(current)
            if current is None or current.state != SANDBOX or why is None:
                return False  # a DEL, or a new ADD, came first
            what = _summary(self.store, current)
            try:
                release_sandbox(
                    self.store, self.containers, self.runtime_networks, current, self.owner
                )
            except NetbayError as exc:  # the record stays REMOVING: gc finishes it
                log.error("releasing %s (%s), as %s: %s", current.name, what, why, exc)
                return False
        log.info("released %s (%s): %s", current.name, what, why)
        return True


__all__ = [
    "DEFAULT_VANISHED_GRACE",
    "VanishedSandboxes",
    "namespace_vanished",
    "netns_identity",
    "release_sandbox",
    "vanished_grace_from_env",
]
