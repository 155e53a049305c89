"""ClusterNames: this node's DNS names in the cluster record, so every other node's DNS answers
them. One key per global network (names/<network>/<node id>), rewritten whole with every
name of this node's ready endpoints there (level-triggered: a lost write is made good by
the next), deleted when none is left. The key is bound to the node's grace lease: the names
of a node that stops stay resolvable while its containers may still run, and go with its
record; `leave` revokes the lease and they go at once.

Writes etcd refuses or cannot take raise (EtcdUnavailableError, EtcdError): the caller
publishes again later, and a write that failed is never taken for done.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from ..name_entry import NameEntry
from .etcd import EtcdClient
from .kv import Present, Put
from .layout import Layout, encode_names

log = logging.getLogger("netbay.cluster")


class ClusterNames:
    def __init__(
        self, client: EtcdClient, layout: Layout, node: str, grace_lease: Callable[[], int],
    ) -> None:
        self._client = client
        self._layout = layout
        self._node = node
        self._grace_lease = grace_lease
        self._wanted: dict[str, tuple[NameEntry, ...]] = {}  # network -> what was asked
        # network -> (the lease, the entries) of the last write etcd confirmed, (0, ()) for
        # a delete: only to skip a write that would change nothing
        self._written: dict[str, tuple[int, tuple[NameEntry, ...]]] = {}
        self._lock = threading.Lock()  # publishers on the daemon's threads

    def publish(self, network: str, entries: Sequence[NameEntry]) -> None:
        """ENTRIES are every name this node has on global NETWORK now (node ignored: the key
        says it). Nothing is written for a network whose record is gone."""
        wanted = tuple(sorted(replace(entry, node="") for entry in entries))
        with self._lock:
            if not wanted:
                self._wanted.pop(network, None)
                self._delete(network)
                return
            self._wanted[network] = wanted
            lease = self._grace_lease()
            if self._written.get(network) == (lease, wanted):
                return
            key = self._layout.names(network, self._node)
            if self._client.txn([Present(self._layout.network(network))],
                                [Put(key, encode_names(wanted), lease)]):
                self._written[network] = lease, wanted
            else:
                log.info("names of %s not published: the global network is gone", network)
                self._wanted.pop(network, None)
                self._written.pop(network, None)

    def republish(self) -> None:
        """Write every network's names again: for a new grace lease (the keys bound to the
        old one went with it). Raises as publish does; call it again then."""
        with self._lock:
            self._written.clear()
            wanted = list(self._wanted.items())
        for network, entries in wanted:
            self.publish(network, entries)

    def _delete(self, network: str) -> None:
        if self._written.get(network) == (0, ()):
            return
        self._client.delete(self._layout.names(network, self._node))
        self._written[network] = 0, ()

