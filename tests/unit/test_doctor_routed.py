"""The doctor's rp_filter check of routed networks: strict veths pass, a loose `all` (which
makes every veth loose) is named with its fix."""

from __future__ import annotations

from netbay.observe.doctor import OK, WARN
from netbay.observe.doctor_routed import check_routed_rp_filter


def test_no_routed_container_is_nothing_to_check() -> None:
    assert check_routed_rp_filter([], {"all": 2}).status == OK


def test_strict_veths_pass() -> None:
    found = check_routed_rp_filter(["nbv1", "nbv2"], {"all": 0, "nbv1": 1, "nbv2": 1})
    assert (found.status, found.message) == (
        OK, "strict on all 2 routed veths: no container can send as another's address")


def test_a_loose_all_is_named_as_the_cause() -> None:
    found = check_routed_rp_filter([f"nbv{i}" for i in range(5)],
                                   {"all": 2, **{f"nbv{i}": 2 for i in range(5)}})
    assert found.status == WARN
    assert found.message.startswith("net.ipv4.conf.all.rp_filter makes reverse-path filtering "
                                    "loose on nbv0, nbv1, nbv2 and 2 more: ")
    assert found.fix.startswith("sysctl -w net.ipv4.conf.all.rp_filter=1")


def test_one_loose_veth_is_its_own() -> None:
    found = check_routed_rp_filter(["nbv1", "nbv2"], {"all": 0, "nbv1": 1, "nbv2": 0})
    assert found.status == WARN and found.message.startswith("their rp_filter makes reverse-"
                                                             "path filtering loose on nbv2: ")
