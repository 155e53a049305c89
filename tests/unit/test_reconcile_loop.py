"""When the reconciler looks (pure): events coalesced, passes kept to a share of the CPU,
the periodic resync and sweep, a backed-off repair's retry; and which notifications say
"look now"."""

from __future__ import annotations

import struct
from ipaddress import IPv4Network

import pytest

from netbay.kernel import netlink
from netbay.kernel.events import AddressEvent, Change, EventsLost, LinkEvent, RouteEvent
from netbay.kernel.rtnl_wire import Link, Route
from netbay.reconcile.loop import Schedule, Timing
from netbay.reconcile.state import Watched
from netbay.reconcile.watch import forwarding_changed, netbay_table_touched, relevant

TIMING = Timing(quiet=0.1, most=0.3, busy_most=1.5, resync=10.0, sweep=1.0, duty=0.1)


def test_a_burst_of_events_is_one_pass_after_it_quiets() -> None:
    schedule = Schedule(TIMING, now=0.0)
    assert schedule.pass_due(0.0) is None and schedule.deadline() == 1.0  # the sweep
    schedule.event(0.0)
    schedule.event(0.05)
    assert schedule.deadline() == pytest.approx(0.15)
    assert schedule.pass_due(0.1) is None
    assert schedule.pass_due(0.16) is False  # an event-driven pass, not the full one
    schedule.ran(0.15, 0.16, full=False, repaired=False, next_try=None)
    assert schedule.pass_due(0.2) is None


def test_events_that_keep_coming_wait_at_most_the_limit() -> None:
    schedule = Schedule(TIMING, now=0.0)
    for tick in range(10):
        schedule.event(tick * 0.05)
    assert schedule.deadline() == pytest.approx(0.3)


def test_while_requests_keep_changing_the_record_a_pass_waits_for_a_lull() -> None:
    schedule = Schedule(TIMING, now=0.0)
    for tick in range(75):  # a request every 20 ms, each with its kernel events
        schedule.event(tick * 0.02, record=tick % 2 == 0)
    assert schedule.pass_due(1.49) is None and schedule.pass_due(1.5) is False
    schedule.ran(1.5, 1.501, full=False, repaired=False, next_try=None)
    for tick in range(20):  # drift alone: the short wait again
        schedule.event(2.0 + tick * 0.02)
    assert schedule.pass_due(2.29) is None and schedule.pass_due(2.3) is False


def test_passes_keep_to_their_share_of_the_cpu() -> None:
    schedule = Schedule(TIMING, now=0.0)
    schedule.event(0.0)
    schedule.ran(0.1, 0.15, full=False, repaired=False, next_try=None)  # 50 ms
    schedule.event(0.16)
    assert schedule.deadline() == pytest.approx(0.6)  # 50 ms is 10% of 0.5 s
    assert schedule.pass_due(0.5) is None and schedule.pass_due(0.6) is False
    schedule.ran(0.6, 0.65, full=False, repaired=True, next_try=None)
    schedule.event(0.66)
    assert schedule.deadline() == pytest.approx(0.76)  # a repair holds nothing back


def test_the_resync_and_the_sweep_run_on_their_timers() -> None:
    schedule = Schedule(TIMING, now=0.0)
    assert not schedule.sweep_due(0.9) and schedule.sweep_due(1.0) and not schedule.sweep_due(1.5)
    assert schedule.pass_due(9.9) is None and schedule.pass_due(10.0) is True
    schedule.ran(10.0, 10.01, full=True, repaired=False, next_try=None)
    assert schedule.pass_due(19.9) is None and schedule.pass_due(20.01) is True


def test_a_backed_off_repair_is_retried_when_due() -> None:
    schedule = Schedule(TIMING, now=0.0)
    schedule.ran(0.0, 0.001, full=False, repaired=True, next_try=2.5)
    assert schedule.deadline() == 1.0  # the sweep comes first
    assert schedule.pass_due(2.4) is None and schedule.pass_due(2.5) is False


WATCHED = Watched(frozenset({"br-x", "nbv1"}), frozenset({5, 6}))


def test_removals_and_changes_of_watched_objects_are_relevant() -> None:
    assert relevant(LinkEvent(Change.REMOVED, Link(5, "br-x")), WATCHED)
    assert relevant(LinkEvent(Change.CHANGED, Link(6, "nbv1")), WATCHED)
    assert relevant(AddressEvent(Change.REMOVED, 5, None), WATCHED)  # type: ignore[arg-type]
    assert relevant(RouteEvent(Change.REMOVED, Route(IPv4Network("10.0.0.0/24"), index=5)),
                    WATCHED)
    assert relevant(EventsLost(), WATCHED)


def test_additions_and_others_objects_are_not() -> None:
    assert not relevant(LinkEvent(Change.ADDED, Link(6, "nbv1")), WATCHED)
    assert not relevant(LinkEvent(Change.REMOVED, Link(9, "eth0")), WATCHED)
    assert not relevant(AddressEvent(Change.ADDED, 5, None), WATCHED)  # type: ignore[arg-type]
    assert not relevant(RouteEvent(Change.REMOVED, Route(IPv4Network("10.0.0.0/24"), index=9)),
                        WATCHED)


def _netconf(ifindex: int) -> bytes:
    return b"\x02\0\0\0" + netlink.attr(1, struct.pack("=i", ifindex)) + netlink.attr(
        2, struct.pack("=i", 0))


def test_ip_forward_is_the_netconf_change_of_all_devices() -> None:
    assert forwarding_changed(80, _netconf(-1))
    assert not forwarding_changed(80, _netconf(7))  # a device's own (one is registered)
    assert not forwarding_changed(16, _netconf(-1))


def _nft(message: int, table: str) -> tuple[int, bytes]:
    return (10 << 8) | message, b"\x01\0\0\0" + netlink.attr(1, netlink.string(table))


def test_deletions_in_netbays_nft_tables_are_relevant_additions_and_elements_not() -> None:
    for message in (2, 5, 8, 11):  # table, chain, rule, set deleted
        assert netbay_table_touched(*_nft(message, "netbay"))
    assert not netbay_table_touched(*_nft(8, "filter"))  # someone else's table
    assert not netbay_table_touched(*_nft(6, "netbay"))  # a rule added
    assert not netbay_table_touched(*_nft(14, "netbay"))  # a set element deleted (detach)
