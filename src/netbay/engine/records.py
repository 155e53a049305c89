"""Queries of the record that several parts of the engine ask."""

from __future__ import annotations

from ..model import Container, Endpoint, Network
from ..store.base import Store


def container_endpoints(store: Store, container: Container) -> list[tuple[Network, Endpoint]]:
    """The container's endpoints in attach order, each with its network."""
    out = []
    for endpoint in store.endpoints(container_id=container.id):
        network = store.find_network(endpoint.network_id)
        if network is not None:
            out.append((network, endpoint))
    return out

