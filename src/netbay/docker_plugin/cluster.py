"""Cluster-wide networks through Docker (`-o netbay.driver=overlay|routed`).

Each dockerd has its own id for a network, and `docker network create` on every host of the
cluster names the one cluster network: CreateNetwork makes it in etcd if it is absent (dual
stack with `--ipv6`: IPv6Data), or adopts the one of that name when its driver, address
families and subnets match. What this node keeps is
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
        adopted if it has SPEC's driver, families and (when SPEC has them) subnets."""
        if not self.cluster.joined():
            raise ConfigError("netbay.driver", spec.driver, "a cluster-wide network needs "
                              "this node in a netbay cluster (netbay cluster join)")
        if not spec.ipv4:  # Docker's IPv6-only network: its shares would have IPv4 too
            raise ConfigError("ipv4", False, "a cluster-wide network needs IPv4: its nodes "
                              "reach each other over the IPv4 underlay")
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
        """This node's share of the cluster network whose pool of either family is POOL
        (Docker's view of it: its subnet, or its IPv6 subnet), made now if need be; None if
        POOL is no cluster network's."""
        network = self._pool_network(pool)
        return None if network is None else self.host.usable_network(network.name)

    def is_cluster_pool(self, pool: IPNetwork) -> bool:
        return self._pool_network(pool) is not None

    def _pool_network(self, pool: IPNetwork) -> GlobalNetwork | None:
        return next((n for n in self.cluster.global_networks()
                     if pool in (n.subnet, n.subnet6)), None)

    def forget(self, docker_id: str) -> bool:
        """`docker network rm`: the id forgotten, this node's share removed unless another
        of Docker's ids or an endpoint uses it; False if DOCKER_ID is no cluster network's."""
        with self._lock:
            name = self._names.pop(docker_id, None)
            if name is None:
                return False
            _save(self._path, self._names)
        self._drop_share(name)
        return True

    def pool_released(self, pool: IPNetwork) -> None:
        """ReleasePool of a cluster network's pool: its share goes if none of Docker's ids
        here maps the network (the IPv6 gateway request made it for a CreateNetwork that
        was refused), as at `docker network rm`."""
        network = self._pool_network(pool)
        if network is not None:
            self._drop_share(network.name)

    def _drop_share(self, name: str) -> None:
        with self._lock:
            if name in self._names.values():
                return
        share = self.host.network_named(name)
        if share is not None:
            # a container of netbay's (or CNI's) still on the share keeps it
            with contextlib.suppress(InUseError, NotFoundError):
                self.host.remove_network(share.id)
                self.cluster.withdraw_names(name)


def _check_adoptable(existing: GlobalNetwork, spec: NetworkSpec) -> None:
    """SPEC (Docker's CreateNetwork) may be EXISTING's on this node: the same driver, the
    same families (Docker's IPAM gives a container an address of each family the Docker
    network has, the share wants one of each it has) and, of each family SPEC gives one,
    the same subnet; else one line naming the `docker network create` that would do."""
    if existing.driver != cluster_driver(spec.driver).name:
        raise ConflictError(f"network {spec.name} exists in the cluster with driver "
                            f"{existing.driver}, not {spec.driver}")
    given = {v: [s.subnet for s in spec.subnets if s.version == v] for v in (4, 6)}
    hint = f"(docker network create {_create_flags(existing)})"
    if existing.subnet6 is None and (spec.ipv6 or given[6]):
        raise ConflictError(f"network {spec.name} exists in the cluster IPv4 only, not dual "
                            f"stack (docker network create --subnet {existing.subnet}, "
                            "without --ipv6)")
    if existing.subnet6 is not None and not (spec.ipv6 or given[6]):
        raise ConflictError(f"network {spec.name} exists in the cluster dual stack, and Docker "
                            f"would give its containers no IPv6 address {hint}")
    for version, theirs in ((4, existing.subnet), (6, existing.subnet6)):
        if given[version] and given[version] != [theirs]:
            raise ConflictError(
                f"network {spec.name} exists in the cluster with subnet {theirs}, not "
                f"{', '.join(map(str, given[version]))} {hint}")


def _create_flags(network: GlobalNetwork) -> str:
    """The `docker network create` flags of NETWORK's families and subnets."""
    if network.subnet6 is None:
        return f"--subnet {network.subnet}"
    return f"--ipv6 --subnet {network.subnet} --subnet {network.subnet6}"


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
