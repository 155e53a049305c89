"""Dual stack in the record: families of a new network, the ULA pool, IPAM per family and the
store's IPv6 leases (both stores)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path

import pytest

from netbay.drivers.base import Capabilities
from netbay.engine.endpoints import Asked, pick_leases
from netbay.engine.families import families, with_default_subnets
from netbay.errors import ConfigError, ConflictError, IPAMExhaustedError
from netbay.ipam.allocator import check_no_overlap, complete, pick_address
from netbay.ipam.pools import choose_subnet6, host_id, ula_pool
from netbay.model import Container, Endpoint, Network, NetworkSpec, SubnetConfig
from netbay.store.base import Store
from netbay.store.memory import MemoryStore
from netbay.store.sqlite import SQLiteStore

V6 = IPv6Network("fd12:3456::/64")
V4 = IPv4Network("10.61.0.0/24")


@dataclass(frozen=True)
class _Driver:
    name: str
    caps: Capabilities


DUAL = _Driver("bridge", Capabilities(ipv6=True))
V4_ONLY = _Driver("overlay", Capabilities())


# --- families -----------------------------------------------------------------------------
def test_a_v6_subnet_or_ipv6_switches_ipv6_on() -> None:
    assert families(NetworkSpec("n"), DUAL) == (True, False)  # type: ignore[arg-type]
    assert families(NetworkSpec("n", ipv6=True), DUAL) == (True, True)  # type: ignore[arg-type]
    given = NetworkSpec("n", subnets=(SubnetConfig(V6),))
    assert families(given, DUAL) == (True, True)  # type: ignore[arg-type]
    only6 = NetworkSpec("n", ipv6=True, ipv4=False)
    assert families(only6, DUAL) == (False, True)  # type: ignore[arg-type]


@pytest.mark.parametrize(("spec", "message"), [
    (NetworkSpec("n", ipv6=True), "invalid ipv6 True: the overlay driver has no IPv6 networks"),
    (NetworkSpec("n", subnets=(SubnetConfig(V6),)),
     "invalid ipv6 True: the overlay driver has no IPv6 networks"),
])
def test_ipv6_on_a_driver_that_cannot_is_refused(spec: NetworkSpec, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        families(spec, V4_ONLY)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_ipv4_off_needs_ipv6_and_no_ipv4_subnet() -> None:
    with pytest.raises(ConfigError) as caught:
        families(NetworkSpec("n", ipv4=False), DUAL)  # type: ignore[arg-type]
    assert str(caught.value) == "invalid ipv4 False: a network needs IPv4 or IPv6 (add --ipv6)"
    spec = NetworkSpec("n", ipv4=False, ipv6=True, subnets=(SubnetConfig(V4),))
    with pytest.raises(ConfigError) as caught:
        families(spec, DUAL)  # type: ignore[arg-type]
    assert str(caught.value).startswith("invalid subnet '10.61.0.0/24': an IPv4 subnet")


def test_default_subnets_fill_only_the_missing_family() -> None:
    asked: list[int] = []

    def taken() -> list[IPv4Network | IPv6Network]:
        asked.append(1)
        return []

    given = (SubnetConfig(V6), SubnetConfig(V4))
    assert with_default_subnets(given, True, True, taken) == (SubnetConfig(V4), SubnetConfig(V6))
    assert asked == []  # nothing chosen: the host is not asked what it uses
    filled = with_default_subnets((SubnetConfig(V4),), True, True, taken)
    assert filled[0] == SubnetConfig(V4) and filled[1].subnet.version == 6
    assert filled[1].subnet.prefixlen == 64
    assert filled[1].subnet.subnet_of(ula_pool(host_id()))  # type: ignore[arg-type]


# --- the ULA pool -------------------------------------------------------------------------
def test_the_ula_pool_is_a_stable_slash_48_per_host() -> None:
    pool = ula_pool(b"host-a")
    assert pool.prefixlen == 48 and pool.subnet_of(IPv6Network("fd00::/8"))
    assert ula_pool(b"host-a") == pool and ula_pool(b"host-b") != pool


def test_the_first_free_slash_64_skips_what_is_taken() -> None:
    pool = ula_pool(b"host-a")
    first, second, third = list(pool.subnets(new_prefix=64))[:3]
    assert choose_subnet6([], b"host-a") == first
    taken = [first, IPv4Network("10.0.0.0/8"), IPv6Network(f"{second.network_address}/80")]
    assert choose_subnet6(taken, b"host-a") == third


# --- IPAM ---------------------------------------------------------------------------------
def test_a_v6_subnet_gets_its_gateway_and_the_lowest_free_address() -> None:
    config = complete(SubnetConfig(V6))
    assert config.gateway == IPv6Address("fd12:3456::1")
    assert pick_address([config], set()) == (config, IPv6Address("fd12:3456::2"))
    used = {int(IPv6Address("fd12:3456::2")), int(IPv6Address("fd12:3456::3"))}
    assert pick_address([config], used)[1] == IPv6Address("fd12:3456::4")


@pytest.mark.parametrize(("config", "message"), [
    (SubnetConfig(IPv6Network("fd00::/127")),
     "invalid subnet 'fd00::/127': too small for containers (at most /126)"),
    (SubnetConfig(V6, gateway=IPv6Address("fd99::1")),
     "invalid gateway 'fd99::1': not a host address of subnet fd12:3456::/64"),
    (SubnetConfig(V6, gateway=IPv4Address("10.0.0.1")),
     "invalid gateway '10.0.0.1': not of the family of subnet fd12:3456::/64"),
    (SubnetConfig(V6, ip_range=IPv6Network("fd99::/80")),
     "invalid ip-range 'fd99::/80': not inside subnet fd12:3456::/64"),
])
def test_bad_v6_pools_are_refused_naming_the_field(config: SubnetConfig, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        complete(config)
    assert str(caught.value) == message


def test_overlapping_v6_subnets_are_refused() -> None:
    with pytest.raises(ConflictError) as caught:
        check_no_overlap([SubnetConfig(IPv6Network("fd12:3456::/80"))], {"other": [V6, V4]})
    assert str(caught.value) == (
        "invalid subnet 'fd12:3456::/80': overlaps fd12:3456::/64 of network other")


def test_a_static_v6_outside_the_subnet_names_ip6() -> None:
    config = complete(SubnetConfig(V6))
    with pytest.raises(ConfigError) as caught:
        pick_address([config], set(), IPv6Address("fd99::5"), field="ip6")
    assert str(caught.value) == (
        "invalid ip6 'fd99::5': not inside the network's subnets (fd12:3456::/64)")


def test_a_full_v6_pool_says_ipv6() -> None:
    config = complete(SubnetConfig(IPv6Network("fd00::/126")))  # ::1 gateway, ::2 and ::3
    used = {int(IPv6Address("fd00::2")), int(IPv6Address("fd00::3"))}
    with pytest.raises(IPAMExhaustedError) as caught:
        pick_address([config], used)
    assert str(caught.value) == "no free IPv6 address left in the network's subnets"


# --- the store ----------------------------------------------------------------------------
NET = "n" * 64
CTR = "c" * 64


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = SQLiteStore(tmp_path / "netbay.db") if request.param == "sqlite" \
        else MemoryStore()
    subnets = (complete(SubnetConfig(V4)), complete(SubnetConfig(V6)))
    made.put_network(Network(id=NET, name="dual", driver="bridge", created="t", subnets=subnets))
    for i in range(3):
        made.put_container(Container(id=f"{CTR[:-1]}{i}", name=f"c{i}", hostname="h",
                                     command=("true",), created="t", netns=None,
                                     network_mode="private"))
    yield made
    made.close()


def _endpoint(i: int, v4: str | None, v6: str | None) -> Endpoint:
    return Endpoint(
        id=f"e{i}", network_id=NET, container_id=f"{CTR[:-1]}{i}", ifname="eth0",
        host_ifname=f"nbv{i}", mac=None, address=IPv4Interface(v4) if v4 else None,
        gateway=None, address6=IPv6Interface(v6) if v6 else None,
        gateway6=IPv6Address("fd12:3456::1") if v6 else None,
    )


def test_v6_leases_are_kept_apart_from_v4_ones_and_read_back(store: Store) -> None:
    network = store.find_network(NET)
    assert network is not None and network.subnets[1].subnet == V6 and network.ipv6
    store.put_endpoint(_endpoint(0, "10.61.0.2/24", "fd12:3456::2/64"))
    store.put_endpoint(_endpoint(1, None, "fd12:3456::3/64"))
    assert set(store.leases(NET)) == {int(IPv4Address("10.61.0.2"))}
    assert set(store.leases(NET, 6)) == {int(IPv6Address("fd12:3456::2")),
                                         int(IPv6Address("fd12:3456::3"))}
    assert store.endpoints(NET)[0] == _endpoint(0, "10.61.0.2/24", "fd12:3456::2/64")
    rows = store.dns_records().endpoints
    assert [r.address6 for r in rows] == [IPv6Address("fd12:3456::2"), IPv6Address("fd12:3456::3")]
    store.delete_endpoint("e0")
    assert set(store.leases(NET, 6)) == {int(IPv6Address("fd12:3456::3"))}


def test_one_v6_address_has_one_endpoint(store: Store) -> None:
    store.put_endpoint(_endpoint(0, None, "fd12:3456::2/64"))
    with pytest.raises(ConflictError):
        store.put_endpoint(_endpoint(1, None, "fd12:3456::2/64"))
    assert [e.id for e in store.endpoints(NET)] == ["e0"]


def test_pick_leases_gives_one_address_per_family(store: Store) -> None:
    network = store.find_network(NET)
    assert network is not None
    store.put_endpoint(_endpoint(0, "10.61.0.2/24", "fd12:3456::2/64"))
    leases = pick_leases(store, network, Asked())
    assert leases.address == IPv4Interface("10.61.0.3/24")
    assert leases.address6 == IPv6Interface("fd12:3456::3/64")
    assert leases.gateway6 == IPv6Address("fd12:3456::1")
    static = pick_leases(store, network, Asked(ip6=IPv6Address("fd12:3456::99")))
    assert static.address6 == IPv6Interface("fd12:3456::99/64")
    with pytest.raises(ConflictError) as caught:
        pick_leases(store, network, Asked(ip6=IPv6Address("fd12:3456::2")))
    assert str(caught.value) == "invalid ip6 'fd12:3456::2': already in use"


def test_an_address_of_a_family_the_network_lacks_is_refused() -> None:
    only4 = Network(id=NET, name="v4", driver="bridge", created="t",
                    subnets=(complete(SubnetConfig(V4)),))
    with pytest.raises(ConfigError) as caught:
        pick_leases(MemoryStore(), only4, Asked(ip6=IPv6Address("fd12:3456::9")))
    assert str(caught.value) == "invalid ip6 'fd12:3456::9': network v4 has no IPv6 subnet"


def test_a_bridge_takes_no_v6_subnet_larger_than_a_slash_64(tmp_path: Path) -> None:
    from netbay.testing import fake_host

    fake = fake_host(tmp_path)
    before = fake.snapshot()
    spec = NetworkSpec("big", subnets=(SubnetConfig(IPv6Network("fd12:3456::/56")),))
    with pytest.raises(ConfigError) as caught:
        fake.host.create_network(spec)
    assert str(caught.value) == ("invalid subnet 'fd12:3456::/56': larger than a /64: a bridge "
                                 "is one IPv6 link (give a /64 or a smaller subnet)")
    assert fake.snapshot() == before
    made = fake.host.create_network(NetworkSpec("ok", subnets=(SubnetConfig(V6),)))
    assert [s.subnet for s in made.subnets] == [made.subnets[0].subnet, V6]
    assert made.subnets[0].subnet.version == 4  # IPv4 is on unless --ipv4=false
