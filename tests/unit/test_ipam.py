from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from netbay.errors import ConfigError, ConflictError, IPAMExhaustedError
from netbay.ipam.allocator import check_no_overlap, complete, pick_address
from netbay.ipam.pools import choose_subnet, default_pools
from netbay.model import SubnetConfig

N = IPv4Network
A = IPv4Address


def test_default_pools_follow_docker_order() -> None:
    pools = list(default_pools())
    assert pools[0] == N("172.18.0.0/16")
    assert pools[13] == N("172.31.0.0/16")
    assert pools[14] == N("192.168.0.0/20")
    assert pools[-1] == N("192.168.240.0/20")
    assert len(pools) == 14 + 16


def test_choose_subnet_skips_overlaps_with_networks_and_host_routes() -> None:
    taken = [N("172.18.0.0/16"), N("172.19.5.0/24")]
    assert choose_subnet(taken) == N("172.20.0.0/16")


def test_choose_subnet_exhausted() -> None:
    with pytest.raises(IPAMExhaustedError):
        choose_subnet([N("0.0.0.0/0")])


def test_complete_fills_gateway_and_rejects_outside_values() -> None:
    assert complete(SubnetConfig(N("10.1.0.0/24"))).gateway == A("10.1.0.1")
    with pytest.raises(ConfigError, match="gateway '10.2.0.1'"):
        complete(SubnetConfig(N("10.1.0.0/24"), gateway=A("10.2.0.1")))
    with pytest.raises(ConfigError, match="gateway '10.1.0.0'"):
        complete(SubnetConfig(N("10.1.0.0/24"), gateway=A("10.1.0.0")))
    with pytest.raises(ConfigError, match="ip-range '10.1.1.0/28'"):
        complete(SubnetConfig(N("10.1.0.0/24"), ip_range=N("10.1.1.0/28")))
    with pytest.raises(ConfigError, match="aux-address"):
        complete(SubnetConfig(N("10.1.0.0/24"), aux_addresses={"x": A("10.9.0.1")}))


def test_overlap_is_refused_with_the_other_network_named() -> None:
    with pytest.raises(ConflictError, match="overlaps 10.0.0.0/8 of network corp"):
        check_no_overlap([SubnetConfig(N("10.1.0.0/24"))], {"corp": [N("10.0.0.0/8")]})


def test_lowest_free_address_skips_gateway_aux_and_used() -> None:
    config = complete(SubnetConfig(N("10.1.0.0/24"), aux_addresses={"r": A("10.1.0.3")}))
    used = {int(A("10.1.0.2"))}
    assert pick_address([config], used) == (config, A("10.1.0.4"))


def test_ip_range_limits_dynamic_addresses_but_not_static_ones() -> None:
    config = complete(SubnetConfig(N("10.1.0.0/24"), ip_range=N("10.1.0.128/25")))
    assert pick_address([config], set())[1] == A("10.1.0.128")
    assert pick_address([config], set(), A("10.1.0.9"))[1] == A("10.1.0.9")


def test_static_address_errors_name_the_value() -> None:
    config = complete(SubnetConfig(N("10.1.0.0/24")))
    with pytest.raises(ConfigError, match="ip '10.2.0.5'"):
        pick_address([config], set(), A("10.2.0.5"))
    with pytest.raises(ConflictError, match="ip '10.1.0.5': already in use"):
        pick_address([config], {int(A("10.1.0.5"))}, A("10.1.0.5"))
    with pytest.raises(ConflictError, match="reserved"):
        pick_address([config], set(), A("10.1.0.1"))


def test_exhaustion_moves_to_the_next_subnet_then_fails() -> None:
    a = complete(SubnetConfig(N("10.1.0.0/30")))
    b = complete(SubnetConfig(N("10.2.0.0/30")))
    assert pick_address([a, b], set())[1] == A("10.1.0.2")
    assert pick_address([a, b], {int(A("10.1.0.2"))})[1] == A("10.2.0.2")
    with pytest.raises(IPAMExhaustedError):
        pick_address([a, b], {int(A("10.1.0.2")), int(A("10.2.0.2"))})
