"""This node in the cluster record: its record (nodes/<id>) bound to a grace lease, its
liveness (alive/<id>) bound to a lease with a short TTL, both kept alive at a third of the
TTL by one thread. A renewal that fails is retried at the next tick, never fatal (flannel's
agent exited when renewal failed, #904); a lease found expired (etcd was out of reach for
longer than the TTL) is replaced and the record written again, so the node comes back by
itself. A node that stops is lost after the TTL; its record and subnets stay for the grace
period, which a restart within it takes up again (the grace lease is found by node id).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address
from types import MappingProxyType

from .. import __version__
from ..errors import ConflictError, NetbayError
from .etcd import EtcdClient
from .identity import DEFAULT_GRACE, DEFAULT_TTL
from .kv import Put
from .layout import ALIVE, NODES, Layout, NodeRecord, decode_node, encode_alive, encode_node

log = logging.getLogger("netbay.cluster")


@dataclass(frozen=True)
class MembershipHealth:
    last_renewal: float | None = None  # time.time() of the last renewal etcd confirmed
    failures: int = 0  # renewals failed in a row
    error: str = ""  # the last failure


class Membership:
    def __init__(
        self, client: EtcdClient, layout: Layout, node: str, name: str, address: IPv4Address,
        ttl: int = DEFAULT_TTL, grace: int = DEFAULT_GRACE, address6: IPv6Address | None = None,
    ) -> None:
        """ADDRESS6: the node's IPv6 underlay address, written in its record when given."""
        self._client = client
        self._layout = layout
        self.node = node
        self.name = name
        self.ttl = ttl
        self.grace = grace
        self.health = MembershipHealth()
        self.on_new_grace_lease: list[Callable[[], None]] = []  # its subnets went with the old
        self._address = address
        self._address6 = address6
        self._record: NodeRecord | None = None
        self._live_lease = 0
        self._lock = threading.Lock()  # the record is written by the renewals and by callers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def record(self) -> NodeRecord:
        if self._record is None:
            raise NetbayError(f"node {self.name} has not registered with etcd yet")
        return self._record

    @property
    def registered(self) -> bool:
        return self._record is not None

    @property
    def grace_lease(self) -> int:
        return self.record.grace_lease

    def join(self) -> NodeRecord:
        """Register now (errors raise), then keep the leases alive in the background."""
        self._check_name()
        self._register()
        self._start_renewals()
        return self.record

    def start(self) -> None:
        """Register in the background (retried until etcd answers), then keep alive: for a
        daemon that restarts while etcd is out of reach."""
        self._start_renewals()

    def stop(self) -> None:
        """Stop renewing, leases left to run out: the node goes lost after the TTL and keeps
        its subnets for the grace period (a daemon stopping, not leaving)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._client.config.retry_for + 2)
            self._thread = None

    def leave(self) -> None:
        """Revoke both leases: the node, its liveness and its subnets go at once. The leases
        are read from etcd too, so a node that has not registered since it started (etcd
        was out of reach) still leaves whole."""
        self.stop()
        leases = {self._live_lease, self._record.grace_lease if self._record else 0}
        if found := self._client.get(self._layout.node(self.node)):
            leases.add(decode_node(found.value).grace_lease)
        if alive := self._client.get(self._layout.alive(self.node)):
            leases.add(alive.lease)
        for lease in sorted(leases - {0}):
            self._client.revoke(lease)
        self._record = None

    @property
    def address(self) -> IPv4Address:
        return self._address

    def set_address(self, address: IPv4Address) -> None:
        """Peers replace this node's routes, FDB and neighbour entries from the new record."""
        with self._lock:
            self._address = address
            if self._record is not None and self._record.address != address:
                self._write(replace(self._record, address=address))

    @property
    def address6(self) -> IPv6Address | None:
        return self._address6

    def set_address6(self, address6: IPv6Address | None) -> None:
        """As set_address, for the IPv6 underlay address (None: the node has none now)."""
        with self._lock:
            self._address6 = address6
            if self._record is not None and self._record.address6 != address6:
                self._write(replace(self._record, address6=address6))

    def publish_vtep(self, network: str, mac: str | None) -> None:
        """This node's VTEP MAC on NETWORK (None: it has none there any more)."""
        with self._lock:
            vteps = dict(self.record.vteps)
            if mac is None:
                vteps.pop(network, None)
            else:
                vteps[network] = mac
            if vteps != dict(self.record.vteps):
                self._write(replace(self.record, vteps=MappingProxyType(vteps)))

    def _write(self, record: NodeRecord) -> None:
        self._client.put(self._layout.node(record.id), encode_node(record), record.grace_lease)
        self._record = record

    def _check_name(self) -> None:
        """Two ready nodes never share a name (a lost one may be this host reinstalled)."""
        listing = self._client.get_prefix(self._layout.prefix(NODES))
        alive = {kv.key.rsplit("/", 1)[1]
                 for kv in self._client.get_prefix(self._layout.prefix(ALIVE), True).items}
        for kv in listing.items:
            other = decode_node(kv.value)
            if other.name == self.name and other.id != self.node and other.id in alive:
                raise ConflictError(
                    f"node name {self.name} is taken by node {other.id} at {other.address}")

    def _register(self) -> None:
        with self._lock:
            found = self._client.get(self._layout.node(self.node))
            previous = decode_node(found.value) if found else None
            grace_lease = self._alive_grace_lease(previous) or self._client.grant(self.grace)
            live_lease = self._client.grant(self.ttl)
            record = NodeRecord(
                id=self.node, name=self.name, address=self._address, version=__version__,
                grace_lease=grace_lease, ttl=self.ttl, grace=self.grace,
                vteps=previous.vteps if previous else MappingProxyType({}),
                address6=self._address6,
            )
            self._client.txn([], [
                Put(self._layout.node(self.node), encode_node(record), grace_lease),
                Put(self._layout.alive(self.node), encode_alive(live_lease), live_lease),
            ])
            renewed_grace = self._record is not None and self._record.grace_lease != grace_lease
            self._record, self._live_lease = record, live_lease
        self.health = MembershipHealth(last_renewal=time.time())
        if renewed_grace:
            for listener in self.on_new_grace_lease:
                listener()

    def _alive_grace_lease(self, previous: NodeRecord | None) -> int:
        """PREVIOUS's grace lease if it is still running (a restart within the grace period);
        else 0."""
        if previous is None:
            return 0
        return previous.grace_lease if self._client.time_to_live(
            previous.grace_lease).remaining > 0 else 0

    def _start_renewals(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="netbay-cluster-lease",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = self.ttl / 3
        wait = 0.0 if self._record is None else interval
        while not self._stop.wait(wait):
            self._tick()
            wait = interval if self.health.failures == 0 else min(interval, 1.0)

    def _tick(self) -> None:
        try:
            if self._record is None:
                self._register()
            elif not self._renew():
                log.warning("node %s: its etcd lease had expired; registering again", self.name)
                self._register()
        except NetbayError as exc:
            if self.health.failures == 0:
                log.warning("node %s: etcd lease renewal failed: %s", self.name, exc)
            self.health = replace(self.health, failures=self.health.failures + 1,
                                  error=str(exc))
        else:
            self.health = MembershipHealth(last_renewal=time.time())

    def _renew(self) -> bool:
        """Both leases renewed; False if either had expired. Each try is bounded by the
        interval, so a failure shows in the health at once and the next tick tries again."""
        bound = max(self.ttl / 3, 1.0)
        live = self._client.keep_alive(self._live_lease, bound)
        grace = self._client.keep_alive(self.record.grace_lease, bound)
        return live > 0 and grace > 0

