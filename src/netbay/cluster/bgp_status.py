"""Each node's BGP sessions in the cluster record (bgp/<node id>), so that any node shows any
node's (`netbay bgp status --node`) and `cluster nodes` tells a node whose routes are in
from one whose BIRD is still connecting.

The value is the node's whole list of sessions as its BIRD reported them at the agent's
last sync: peer, address, AS, state, since (unix seconds) and the routes imported and
exported, over all of the session's channels (a dual-stack node's ipv4 and ipv6:
kernel/bird.py parse_sessions adds them up). It is written only when it differs from what
the record holds (the view's copy, lease included: a key that went with an expired grace
lease is written again), so sessions that stay up cost no writes. It is bound to the node's
grace lease, as its names are, and deleted while BIRD is not running: no key means no BGP
speaker on the node, an empty list a BIRD without sessions.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import NetbayError
from .kv import KeyedState, KeyValue
from .layout import BGP, Layout

if TYPE_CHECKING:
    from ..kernel.bird import BgpSession, BirdSupervisor
    from .etcd import EtcdClient
    from .node import ClusterNode

log = logging.getLogger("netbay.cluster")
ESTABLISHED = "Established"
# plan/bird.py writes each session's `neighbor ADDRESS as ASN;`: BIRD reports the AS of a
# session only once it is up, the configuration has it from the start
_NEIGHBOR = re.compile(r"^\s*neighbor (\S+) as (\d+);", re.MULTILINE)


@dataclass(frozen=True, order=True)
class SessionStatus:
    peer: str  # the peer's name (a mesh peer's: its node name)
    address: str  # the peer's address
    asn: int  # the peer's AS (0: not known)
    state: str  # BIRD's: Idle, Connect, Active, OpenSent, OpenConfirm or Established
    since: int  # unix time of its last change of state
    imported: int  # routes received and accepted
    exported: int  # routes announced

    @property
    def established(self) -> bool:
        return self.state == ESTABLISHED


@dataclass(frozen=True)
class Published:
    """A node's key as the record holds it."""

    lease: int
    sessions: tuple[SessionStatus, ...]


class Speaker(Protocol):
    """This node's BGP speaker (engine/bgp.py BgpSpeaker), as far as its status is read."""

    @property
    def running(self) -> bool: ...
    @property
    def supervisor(self) -> BirdSupervisor: ...
    def sessions(self) -> list[BgpSession]: ...


def encode_sessions(sessions: Iterable[SessionStatus]) -> bytes:
    return json.dumps([
        {"peer": s.peer, "address": s.address, "asn": s.asn, "state": s.state,
         "since": s.since, "imported": s.imported, "exported": s.exported} for s in sessions
    ], sort_keys=True, separators=(",", ":")).encode()


def decode_sessions(data: bytes) -> tuple[SessionStatus, ...]:
    return tuple(
        SessionStatus(peer=str(raw["peer"]), address=str(raw["address"]), asn=int(raw["asn"]),
                      state=str(raw["state"]), since=int(raw["since"]),
                      imported=int(raw["imported"]), exported=int(raw["exported"]))
        for raw in json.loads(data)
    )


def peer_asns(configuration: str) -> dict[str, int]:
    """Each configured neighbour's AS, by address, from the text of bird.conf."""
    return {address: int(asn) for address, asn in _NEIGHBOR.findall(configuration)}


def session_statuses(sessions: Iterable[BgpSession], asns: dict[str, int]) -> tuple[
        SessionStatus, ...]:
    """BIRD's SESSIONS as the record keeps them (sorted), each with its peer's AS from ASNS."""
    return tuple(sorted(
        SessionStatus(peer=s.description or s.name, address=s.neighbor,
                      asn=asns.get(s.neighbor, 0), state=s.state, since=s.since,
                      imported=s.imported, exported=s.exported)
        for s in sessions
    ))


def read_sessions(speaker: Speaker) -> tuple[SessionStatus, ...] | None:
    """SPEAKER's sessions now; None while its BIRD is not running (KernelError when it runs
    but does not answer)."""
    if not speaker.running:
        return None
    return session_statuses(speaker.sessions(), peer_asns(_text(speaker.supervisor.config)))


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:  # BIRD runs a configuration it read: only the ASNs are missing then
        return ""


def publish(
    client: EtcdClient, key: str, sessions: tuple[SessionStatus, ...] | None,
    current: Published | None, grace_lease: Callable[[], int],
) -> None:
    """Make KEY hold SESSIONS (None: no key), bound to the grace lease, unless CURRENT (what
    the record holds) already does. Raises what the client raises."""
    if sessions is None:
        if current is not None:
            client.delete(key)
        return
    lease = grace_lease()
    if current != Published(lease, sessions):
        client.put(key, encode_sessions(sessions), lease)


def publish_bgp_status(node: ClusterNode, speaker: Speaker) -> None:
    """This node's sessions into the record, for the agent's sync: a failure (BIRD or etcd
    not answering, the node not registered yet) is logged and put right by a later sync."""
    try:
        publish(node.client, node.layout.bgp(node.node), read_sessions(speaker),
                node.view.bgp_status(node.node), lambda: node.membership.grace_lease)
    except NetbayError as exc:
        log.info("bgp: status not published yet: %s", exc)


class BgpBoard(KeyedState):
    """What every node published, by node id: kept by the cluster view from its listing and
    its watch events (the other kinds of key are not its business)."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._published: dict[str, Published] = {}

    @classmethod
    def from_listing(cls, layout: Layout, items: Iterable[KeyValue]) -> BgpBoard:
        return cls(layout).load(items)

    def delete(self, key: str) -> None:
        node = self._node_of(key)
        if node is not None:
            self._published.pop(node, None)

    def put(self, kv: KeyValue) -> None:
        node = self._node_of(kv.key)
        if node is None:
            return
        try:
            self._published[node] = Published(kv.lease, decode_sessions(kv.value))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("cluster record %s is not readable, ignored: %s", kv.key, exc)
            self._published.pop(node, None)

    def get(self, node: str) -> Published | None:
        return self._published.get(node)

    def _node_of(self, key: str) -> str | None:
        parsed = self._layout.parse(key)
        return parsed.name if parsed is not None and parsed.kind == BGP else None


def sessions_of(published: Published | None) -> Sequence[SessionStatus] | None:
    return None if published is None else published.sessions
