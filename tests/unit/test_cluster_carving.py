"""Carving a global network's subnet into per-node blocks; choosing a subnet and a VNI
(netbay.cluster.carving)."""

from __future__ import annotations

import random
from ipaddress import IPv4Network

import pytest

from netbay.cluster.carving import (
    block_at,
    block_count,
    check_block_size,
    check_vni,
    default_subnet,
    free_vni,
    is_block_of,
    overlapping,
    pick_free_block,
)
from netbay.errors import ConfigError

NET = IPv4Network("10.5.0.0/22")
BLOCKS = [IPv4Network(f"10.5.{i}.0/24") for i in range(4)]


def test_a_subnet_holds_two_to_the_difference_of_blocks() -> None:
    assert block_count(NET, 24) == 4
    assert block_count(IPv4Network("10.0.0.0/8"), 24) == 65536
    assert block_count(NET, 22) == 1
    assert [block_at(NET, 24, i) for i in range(4)] == BLOCKS
    assert block_at(IPv4Network("10.5.0.0/16"), 26, 5) == IPv4Network("10.5.1.64/26")


def test_a_block_is_of_a_subnet_only_at_its_size_and_inside_it() -> None:
    assert is_block_of(NET, 24, BLOCKS[3])
    assert not is_block_of(NET, 24, IPv4Network("10.5.0.0/25"))
    assert not is_block_of(NET, 24, IPv4Network("10.5.4.0/24"))


def test_a_free_block_is_the_preferred_one_else_one_nobody_holds() -> None:
    taken = set(BLOCKS[:2])
    assert pick_free_block(NET, 24, taken, prefer=BLOCKS[3]) == BLOCKS[3]
    picks = {pick_free_block(NET, 24, taken, prefer=BLOCKS[0], rng=random.Random(seed))
             for seed in range(50)}
    assert picks == set(BLOCKS[2:])  # never a held one, and not always the same one
    assert pick_free_block(NET, 24, taken | {BLOCKS[2]}) == BLOCKS[3]
    assert pick_free_block(NET, 24, set(BLOCKS)) is None


def test_a_nearly_full_subnet_is_scanned_when_random_picks_miss() -> None:
    big = IPv4Network("10.0.0.0/12")
    blocks = list(big.subnets(new_prefix=24))
    free = blocks[1234]
    taken = set(blocks) - {free}
    assert pick_free_block(big, 24, taken, rng=random.Random(1)) == free


def test_blocks_elsewhere_do_not_count_as_taken() -> None:
    elsewhere = {IPv4Network("10.6.0.0/24"), IPv4Network("10.5.0.0/25")}
    assert pick_free_block(IPv4Network("10.5.0.0/24"), 24, elsewhere) == IPv4Network(
        "10.5.0.0/24")


def test_a_block_size_must_fit_the_subnet_and_leave_room_for_addresses() -> None:
    check_block_size(NET, 22)
    check_block_size(NET, 30)
    with pytest.raises(ConfigError, match="^invalid subnet_size 21: must be between 22 and 30"
                                          " for 10.5.0.0/22$"):
        check_block_size(NET, 21)
    with pytest.raises(ConfigError, match="^invalid subnet_size 31"):
        check_block_size(NET, 31)


def test_overlaps_are_named_and_the_default_subnet_avoids_them() -> None:
    others = [("a", IPv4Network("10.64.0.0/16")), ("b", IPv4Network("10.65.128.0/17"))]
    assert overlapping(IPv4Network("10.65.0.0/16"), others) == "b"
    assert overlapping(IPv4Network("10.66.0.0/16"), others) is None
    assert default_subnet(n for _, n in others) == IPv4Network("10.66.0.0/16")
    assert default_subnet([IPv4Network("10.64.0.0/10")]) is None


def test_vnis_are_24_bit_and_the_smallest_free_one_is_chosen() -> None:
    check_vni(1)
    check_vni(2**24 - 1)
    for bad in (0, 2**24):
        with pytest.raises(ConfigError, match=f"^invalid vni {bad}: must be between 1 and"):
            check_vni(bad)
    assert free_vni(set()) == 1
    assert free_vni({1, 2, 4}) == 3
