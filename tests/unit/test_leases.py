"""Leases: the sorted lease set IPAM picks the lowest free address from."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from netbay.ipam.leases import Leases


def scan(leased: set[int], first: int, last: int, skip: set[int]) -> int | None:
    """What pick_address did before: walk up from FIRST."""
    return next((v for v in range(first, last + 1) if v not in leased and v not in skip), None)


@settings(deadline=None)
@given(
    st.sets(st.integers(0, 63)), st.integers(0, 63), st.integers(0, 63),
    st.sets(st.integers(0, 63), max_size=4),
)
def test_lowest_free_is_what_walking_up_finds(
    leased: set[int], first: int, last: int, skip: set[int]
) -> None:
    assert Leases(leased).lowest_free(first, last, skip) == scan(leased, first, last, skip)


def test_a_run_of_leases_is_skipped_whole_and_reserved_ones_too() -> None:
    leases = Leases([*range(10, 1010), 1011, 1013])
    assert leases.lowest_free(10, 2000) == 1010
    assert leases.lowest_free(10, 2000, {1010, 1012}) == 1014
    assert leases.lowest_free(10, 1009) is None
    assert leases.lowest_free(5, 12, {5, 6, 7, 8, 9}) is None
    assert Leases().lowest_free(3, 3) == 3


def test_adding_and_releasing_make_new_leases_and_leave_the_old_alone() -> None:
    old = Leases([3, 1, 2])
    grown = old.with_lease(5)
    shrunk = grown.without(2)
    assert (list(old), list(grown), list(shrunk)) == ([1, 2, 3], [1, 2, 3, 5], [1, 3, 5])
    assert old.with_lease(2) is old and old.without(9) is old
    assert 5 in grown and 5 not in old and "5" not in grown
    assert old | {9} == {1, 2, 3, 9} and isinstance(old | {9}, Leases)
    assert len(shrunk) == 3 and old == {1, 2, 3}
