"""Cluster-wide networks through Docker (`-o netbay.driver=overlay|routed`).

Each dockerd has its own id for a network, and `docker network create` on every host of the
cluster names the one cluster network: CreateNetwork makes it in etcd if it is absent, or
adopts the one of that name when its driver and subnet match. What this node keeps is
Docker's id -> the network's name, in <state root>/docker-networks.json (Docker replays its
networks after a restart, netbayd finds them there after its own). This node's share of
the network (its block) is made when Docker first asks for an address in it, as for any
container of netbay's; Docker's view of the network is the whole cluster pool.

`docker network rm` forgets the id and removes this node's share (when it holds no
endpoint), never the cluster network: another host's dockerd may still use it, and none of
them can tell. `netbay network rm NAME` removes it (refused while any node uses it)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..drivers import cluster_driver
from ..engine import Host
from ..errors import ConfigError, ConflictError, InUseError, NotFoundError
from ..model import IPNetwork, Network, NetworkSpec

if TYPE_CHECKING:
    from ..cluster import GlobalNetwork

MAPPING_FILE = "docker-networks.json"


class Cluster(Protocol):
    """What the plugin asks of the cluster agent (engine/cluster.py ClusterAgent)."""

    def joined(self) -> bool: ...
    def create_network(self, spec: NetworkSpec) -> GlobalNetwork: ...
    def global_network(self, name: str) -> GlobalNetwork | None: ...
    def global_networks(self) -> list[GlobalNetwork]: ...
    def withdraw_names(self, network: str) -> None: ...


class DockerClusterNetworks:
    """Docker's ids of cluster-wide networks on this node, and their shares."""

    def __init__(self, host: Host, cluster: Cluster) -> None:
        self.host = host
        self.cluster = cluster
        self._path = host.paths.root / MAPPING_FILE
        self._lock = threading.Lock()
        self._names: dict[str, str] = _load(self._path)  # Docker's network id -> name

    def joined(self) -> bool:
        return self.cluster.joined()

    def create(self, docker_id: str, spec: NetworkSpec) -> None:
        """Docker's network DOCKER_ID is the cluster network SPEC names: made if absent,
        adopted if it has SPEC's driver and (when SPEC has one) subnet."""
        if not self.cluster.joined():
            raise ConfigError("netbay.driver", spec.driver, "a cluster-wide network needs "
                              "this node in a netbay cluster (netbay cluster join)")
        existing = self.cluster.global_network(spec.name)
        if existing is None:
            try:
                self.cluster.create_network(spec)
            except ConflictError:  # another host made it in the meantime: adopt that one
                existing = self.cluster.global_network(spec.name)
                if existing is None:
                    raise
        if existing is not None:
            _check_adoptable(existing, spec)
        with self._lock:
            self._names[docker_id] = spec.name
            _save(self._path, self._names)

    def name_of(self, docker_id: str) -> str | None:
        with self._lock:
            return self._names.get(docker_id)

    def share(self, docker_id: str) -> Network | None:
        """This node's share of the cluster network Docker calls DOCKER_ID (made now, its
        block leased, if it has none); None if DOCKER_ID is no cluster network's."""
        name = self.name_of(docker_id)
        return None if name is None else self.host.usable_network(name)

    def pool_share(self, pool: IPNetwork) -> Network | None:
        """This node's share of the cluster network whose pool is POOL (Docker's view of
        it), made now if need be; None if POOL is no cluster network's."""
        for network in self.cluster.global_networks():
            if network.subnet == pool:
                return self.host.usable_network(network.name)
        return None

    def is_cluster_pool(self, pool: IPNetwork) -> bool:
        return any(n.subnet == pool for n in self.cluster.global_networks())

    def forget(self, docker_id: str) -> bool:
        """`docker network rm`: the id forgotten, this node's share removed unless another
        of Docker's ids or an endpoint uses it; False if DOCKER_ID is no cluster network's."""
        with self._lock:
            name = self._names.pop(docker_id, None)
            if name is None:
                return False
            _save(self._path, self._names)
            still_mapped = name in self._names.values()
        share = self.host.network_named(name)
        if share is not None and not still_mapped:
            # a container of netbay's (or CNI's) still on the share keeps it
            with contextlib.suppress(InUseError, NotFoundError):
                self.host.remove_network(share.id)
                self.cluster.withdraw_names(name)
        return True


def _check_adoptable(existing: GlobalNetwork, spec: NetworkSpec) -> None:
    if existing.driver != cluster_driver(spec.driver).name:
        raise ConflictError(f"network {spec.name} exists in the cluster with driver "
                            f"{existing.driver}, not {spec.driver}")
    subnets = [s.subnet for s in spec.subnets]
    if subnets and subnets != [existing.subnet]:
        raise ConflictError(
            f"network {spec.name} exists in the cluster with subnet {existing.subnet}, not "
            f"{', '.join(map(str, subnets))} (docker network create --subnet {existing.subnet})")


def _load(path: Path) -> dict[str, str]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(str(path), raw, "expected a map of Docker network ids to names")
    return {str(k): str(v) for k, v in raw.items()}


def _save(path: Path, names: Mapping[str, str]) -> None:
    """Written whole (a reader never sees half of it)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(dict(names), indent=1, sort_keys=True) + "\n")
    os.replace(partial, path)
