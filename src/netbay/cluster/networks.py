"""Global networks: one record per network in etcd, the same on every node. Creation reads
every network at one revision, checks the request against them (the name, the VNI, the
subnet's overlap and its room for every node; a dual-stack one's IPv6 subnet the same way)
and writes only if no network was written since that revision, so two nodes creating at
once cannot both pass the checks. A refusal is one line and changes nothing."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network
from types import MappingProxyType

from ..clock import now_rfc3339
from ..errors import ConfigError, ConflictError, InUseError, IPAMExhaustedError, NotFoundError
from ..ids import new_id, valid_name
from .carving import (
    DEFAULT_GLOBAL_POOL,
    block_count,
    check_block_size,
    check_vni,
    default_subnet,
    free_vni,
    overlapping,
    random_ula,
)
from .etcd import EtcdClient
from .kv import Compare, Delete, ModRevision, Put, UnchangedSince
from .layout import (
    HOLDERS,
    NAMES,
    NETWORKS,
    NODES,
    SUBNETS,
    GlobalNetwork,
    GlobalNetworkSpec,
    Layout,
    decode_network,
    decode_node,
    encode_network,
)

# each retry means another network was written since the listing
WRITE_ATTEMPTS = 16


class GlobalNetworks:
    def __init__(self, client: EtcdClient, layout: Layout) -> None:
        self._client = client
        self._layout = layout

    def all(self) -> list[GlobalNetwork]:
        """By creation time, then name."""
        return self._listing()[1]

    def get(self, name: str) -> GlobalNetwork | None:
        found = self._client.get(self._layout.network(name))
        return None if found is None else decode_network(found.value)

    def create(self, spec: GlobalNetworkSpec) -> GlobalNetwork:
        if not valid_name(spec.name):
            raise ConfigError("network name", spec.name,
                              "must start with a letter or digit; letters, digits, _ . - only")
        if spec.vni is not None:
            check_vni(spec.vni)
        network_id, created = new_id(), now_rfc3339()
        for _ in range(WRITE_ATTEMPTS):
            revision, existing = self._listing()
            same = next((n for n in existing if n.name == spec.name), None)
            if same is not None and same.id == network_id:
                return same  # our own write, whose reply was lost and the call retried
            if same is not None:
                raise ConflictError(f"global network {spec.name} already exists")
            network = self._plan(spec, existing, network_id, created)
            key = self._layout.network(spec.name)
            if self._client.txn([UnchangedSince(self._layout.prefix(NETWORKS), revision)],
                                [Put(key, encode_network(network))]):
                return network
        raise ConflictError(f"global network {spec.name}: networks kept changing; try again")

    def remove(self, name: str, force: bool = False) -> None:
        """Remove NAME's record; refused while nodes hold subnets of it, unless FORCE (their
        subnets go too)."""
        for _ in range(WRITE_ATTEMPTS):
            found = self._client.get(self._layout.network(name))
            if found is None:
                raise NotFoundError(f"global network {name} not found")
            holders_prefix = self._layout.prefix(HOLDERS, name)
            holders = self._client.get_prefix(holders_prefix, keys_only=True)
            if holders.items and not force:
                nodes = self._node_names(kv.key.rsplit("/", 1)[1] for kv in holders.items)
                raise InUseError(f"global network {name} has subnets held by nodes "
                                 f"{', '.join(nodes)}")
            compares: list[Compare] = [ModRevision(found.key, found.mod_revision)]
            if not force:
                compares.append(UnchangedSince(holders_prefix, holders.revision))
            if self._client.txn(compares, [
                Delete(found.key), Delete(self._layout.prefix(SUBNETS, name), prefix=True),
                Delete(holders_prefix, prefix=True),
                Delete(self._layout.prefix(NAMES, name), prefix=True),
            ]):
                return
        raise ConflictError(f"global network {name} kept changing; try again")

    def _listing(self) -> tuple[int, list[GlobalNetwork]]:
        listing = self._client.get_prefix(self._layout.prefix(NETWORKS))
        networks = [decode_network(kv.value) for kv in listing.items]
        return listing.revision, sorted(networks, key=lambda n: (n.created, n.name))

    def _node_names(self, ids: Iterable[str]) -> list[str]:
        listing = self._client.get_prefix(self._layout.prefix(NODES))
        names = {n.id: n.name for n in (decode_node(kv.value) for kv in listing.items)}
        return sorted(names.get(i, i) for i in ids)

    def _plan(
        self, spec: GlobalNetworkSpec, existing: list[GlobalNetwork], network_id: str,
        created: str,
    ) -> GlobalNetwork:
        """The network SPEC makes among EXISTING, or the one-line refusal."""
        if spec.subnet is not None and spec.subnet.version != 4:
            raise ConfigError("subnet", str(spec.subnet),
                              "must be an IPv4 subnet (a cluster network's IPv6 one is subnet6)")
        subnet = spec.subnet or default_subnet(n.subnet for n in existing)
        if subnet is None:
            raise IPAMExhaustedError(
                f"no free /16 left in {DEFAULT_GLOBAL_POOL} for global network {spec.name}")
        other = overlapping(subnet, ((n.name, n.subnet) for n in existing))
        if other is not None:
            raise ConflictError(f"subnet {subnet} overlaps global network {other}")
        check_block_size(subnet, spec.subnet_size)
        _check_one_asn(spec, existing)
        used_vnis = {n.vni: n.name for n in existing}
        if spec.vni is not None and spec.vni in used_vnis:
            raise ConflictError(f"VNI {spec.vni} is used by global network {used_vnis[spec.vni]}")
        subnet6 = _plan6(spec, existing)
        nodes = len(self._client.get_prefix(self._layout.prefix(NODES), keys_only=True).items)
        _check_room("subnet", subnet, spec.subnet_size, nodes)
        if subnet6 is not None:
            _check_room("subnet6", subnet6, spec.subnet_size6, nodes)
        return GlobalNetwork(
            name=spec.name, id=network_id, subnet=subnet, subnet_size=spec.subnet_size,
            vni=spec.vni if spec.vni is not None else free_vni(used_vnis), created=created,
            internal=spec.internal, options=MappingProxyType(dict(spec.options)),
            labels=MappingProxyType(dict(spec.labels)), driver=spec.driver,
            subnet6=subnet6, subnet_size6=spec.subnet_size6,
        )


def _plan6(spec: GlobalNetworkSpec, existing: list[GlobalNetwork]) -> IPv6Network | None:
    """The IPv6 subnet of a dual-stack SPEC (given, or a random ULA /48 no other network
    has), checked as the IPv4 one is; None for an IPv4-only one."""
    if not spec.dual_stack:
        return None
    others = [(n.name, n.subnet6) for n in existing if n.subnet6 is not None]
    if spec.subnet6 is None:
        subnet6 = random_ula(s for _, s in others)
    elif not isinstance(spec.subnet6, IPv6Network):  # a caller's IPv4Network, unchecked
        raise ConfigError("subnet6", str(spec.subnet6), "must be an IPv6 subnet")
    else:
        subnet6 = spec.subnet6
    other = overlapping(subnet6, others)
    if other is not None:
        raise ConflictError(f"subnet {subnet6} overlaps global network {other}")
    check_block_size(subnet6, spec.subnet_size6)
    return subnet6


def _check_room(what: str, subnet: IPv4Network | IPv6Network, size: int, nodes: int) -> None:
    """SUBNET must have a /SIZE block for each of the cluster's NODES."""
    blocks = block_count(subnet, size)
    if blocks < nodes:
        raise ConfigError(what, str(subnet),
                          f"has room for {blocks} /{size} subnets; the cluster has {nodes} "
                          "nodes")


def _check_one_asn(spec: GlobalNetworkSpec, existing: list[GlobalNetwork]) -> None:
    """A node runs one BGP speaker, with one AS number: every routed network shares it."""
    asn = spec.options.get("asn")
    if asn is None:
        return
    other = next((n for n in existing if n.options.get("asn", asn) != asn), None)
    if other is not None:
        raise ConflictError(f"asn {asn}: the cluster's routed networks use AS "
                            f"{other.options['asn']} (network {other.name}); a node has one")
