"""ClusterNode: everything one daemon does in the cluster, put together from the parts (the
etcd client and its loop thread, membership, subnet leases, global networks, the view).
`join` is `cluster join` (fails within 5 s, in one line, when no endpoint answers); `resume`
is a daemon start on a node that joined before (the settings are in the state root; with
etcd out of reach it registers and lists in the background); `leave` releases everything
this node holds; `close` is a daemon stopping (the node goes lost, its subnets stay reserved
for the grace period)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from pathlib import Path
from typing import Literal, overload

from ..errors import NotFoundError
from ..model import IPNetwork
from .endpoints import EtcdConfig
from .etcd import EtcdClient
from .identity import (
    JoinSettings,
    forget_join,
    load_join,
    node_id,
    save_join,
    source_address,
    source_address6,
)
from .kv import MemberStatus
from .layout import GlobalNetwork, Layout
from .membership import Membership, MembershipHealth
from .names import ClusterNames
from .networks import GlobalNetworks
from .subnets import SubnetLeases
from .view import ClusterView, OnNames, OnPeers, OnSynced

JOIN_TIMEOUT = 4.5  # the first contact; `cluster join` answers within 5 s either way


@dataclass(frozen=True)
class ClusterStatus:
    members: list[MemberStatus]  # every endpoint, as it answered
    revision: int  # the newest revision a member reported (0: none answered)
    seen: int  # the revision this node's view reflects
    watching: bool  # the view's watch is connected
    lease: MembershipHealth

    @property
    def lag(self) -> int:
        return max(self.revision - self.seen, 0)


class ClusterNode:
    def __init__(self, root: Path, settings: JoinSettings, on_peers: OnPeers | None = None,
                 on_names: OnNames | None = None, on_synced: OnSynced | None = None):
        self.root = root
        self.settings = settings
        self.client = EtcdClient(EtcdConfig(
            endpoints=settings.endpoints, ca=_path(settings.ca), cert=_path(settings.cert),
            key=_path(settings.key),
        ))
        try:
            self.node = node_id(root)
            address = (IPv4Address(settings.address) if settings.address
                       else source_address(self.client.endpoints[0]))
        except BaseException:
            self.client.close()
            raise
        self.layout = Layout(settings.prefix)
        # found again at every start (join and resume): a changed one is written then
        self.membership = Membership(self.client, self.layout, self.node, settings.name,
                                     address, settings.ttl, settings.grace,
                                     source_address6(address))
        self.networks = GlobalNetworks(self.client, self.layout)
        self.subnets = SubnetLeases(self.client, self.layout, self.node,
                                    lambda: self.membership.grace_lease)
        self.membership.on_new_grace_lease.append(
            lambda: self.subnets.reclaim(self.networks.get))
        self.names = ClusterNames(self.client, self.layout, self.node,
                                  lambda: self.membership.grace_lease)
        # keys bound to an expired grace lease went with it: written again on the new one
        self.membership.on_new_grace_lease.append(self.names.republish)
        self.view = ClusterView(self.client, self.layout, on_peers, self.node,
                                on_names=on_names, on_synced=on_synced)

    @classmethod
    def join(cls, root: Path, settings: JoinSettings, on_peers: OnPeers | None = None,
             on_names: OnNames | None = None, on_synced: OnSynced | None = None
             ) -> ClusterNode:
        """Join now: registered, the view started, the settings kept in ROOT."""
        node = cls(root, settings, on_peers, on_names, on_synced)
        try:
            node.client.revision(retry_for=JOIN_TIMEOUT)
            node.membership.join()
        except BaseException:
            node.client.close()
            raise
        node.view.start()
        save_join(root, settings)
        return node

    @classmethod
    def resume(cls, root: Path, on_peers: OnPeers | None = None,
               on_names: OnNames | None = None, on_synced: OnSynced | None = None
               ) -> ClusterNode | None:
        """The node ROOT joined before, registering in the background; None if it has not
        joined."""
        settings = load_join(root)
        if settings is None:
            return None
        node = cls(root, settings, on_peers, on_names, on_synced)
        node.membership.start()
        node.view.start()
        return node

    @overload
    def claim_subnet(self, network: str, version: Literal[4] = 4) -> IPv4Network: ...
    @overload
    def claim_subnet(self, network: str, version: Literal[6]) -> IPv6Network: ...
    @overload
    def claim_subnet(self, network: str, version: int) -> IPNetwork: ...

    def claim_subnet(self, network: str, version: int = 4) -> IPNetwork:
        """This node's block of VERSION on NETWORK, claimed if it holds none yet (an IPv6
        one: on a dual-stack network, after the IPv4 one)."""
        return self.subnets.claim(self._network(network), version)

    @overload
    def claim_more_subnet(self, network: str, version: Literal[4] = 4) -> IPv4Network: ...
    @overload
    def claim_more_subnet(self, network: str, version: Literal[6]) -> IPv6Network: ...
    @overload
    def claim_more_subnet(self, network: str, version: int) -> IPNetwork: ...

    def claim_more_subnet(self, network: str, version: int = 4) -> IPNetwork:
        """Another block of VERSION on NETWORK for this node, whose blocks are full."""
        return self.subnets.claim_more(self._network(network), version)

    def status(self) -> ClusterStatus:
        members = self.client.status()
        revision = max((m.revision for m in members if m.healthy), default=0)
        return ClusterStatus(members, revision, self.view.revision, self.view.connected,
                             self.membership.health)

    def leave(self) -> None:
        self.view.stop()
        try:
            self.membership.leave()
            forget_join(self.root)  # kept if etcd could not be told, so leave can be retried
        finally:
            self.client.close()

    def close(self) -> None:
        self.view.stop()
        self.membership.stop()
        self.client.close()

    def _network(self, name: str) -> GlobalNetwork:
        network = self.networks.get(name)
        if network is None:
            raise NotFoundError(f"global network {name} not found")
        return network


def _path(text: str | None) -> Path | None:
    return None if text is None else Path(text)
