"""RPS: CPU lists, sysfs masks, RFS table sizing, softnet_stat, network options; pure."""

from __future__ import annotations

import pytest

from netbay.errors import ConfigError
from netbay.observe import rps
from netbay.plan.rps import (
    RpsSetting,
    cpu_mask,
    format_cpu_list,
    network_setting,
    parse_cpu_list,
    parse_flows,
    parse_mask,
    sock_flow_entries,
)

ONLINE = frozenset({0, 1, 2, 3})


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", {0}), ("0-3", {0, 1, 2, 3}), ("1,3", {1, 3}), (" 0-1,3 ", {0, 1, 3}), ("auto", ONLINE),
     ("none", set()), ("", set())],
)
def test_cpu_lists(text: str, cpus: set[int]) -> None:
    assert parse_cpu_list("cpus", text, ONLINE) == frozenset(cpus)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0-99", "invalid cpus '0-99': CPU 4 does not exist (online: 0-3)"),
        ("7", "invalid cpus '7': CPU 7 does not exist (online: 0-3)"),
        ("abc", "invalid cpus 'abc': expected a CPU list like 0-3,6, 'auto' or 'none'"),
        ("3-1", "invalid cpus '3-1': range 3-1 runs backwards"),
        ("1,,2", "invalid cpus '1,,2': expected a CPU list like 0-3,6, 'auto' or 'none'"),
        ("-1", "invalid cpus '-1': expected a CPU list like 0-3,6, 'auto' or 'none'"),
    ],
)
def test_bad_cpu_lists_name_field_and_value(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_cpu_list("cpus", text, ONLINE)
    assert str(caught.value) == message


def test_masks_round_trip_in_the_kernel_format() -> None:
    assert cpu_mask({0, 1}) == "3"
    assert cpu_mask(set()) == "0"
    assert cpu_mask({35}) == "00000008,00000000"
    assert parse_mask("00000008,00000000") == {35}
    assert parse_mask("3") == {0, 1}
    assert parse_mask("00000000") == frozenset()
    assert format_cpu_list({0, 1, 2, 3, 6, 8, 9}) == "0-3,6,8-9"
    assert RpsSetting(frozenset({2}), 10).mask == "4"


def test_flows_are_checked() -> None:
    assert parse_flows("flows", "2048") == 2048
    for bad in ("-5", "x", str(1 << 21)):
        with pytest.raises(ConfigError, match="invalid flows"):
            parse_flows("flows", bad)


def test_network_option() -> None:
    assert network_setting({}, ONLINE) is None
    assert network_setting({"rps": "auto"}, ONLINE) == RpsSetting(ONLINE, 4096)
    assert network_setting({"rps": "1", "rps_flows": "64"}, ONLINE) == RpsSetting(
        frozenset({1}), 64)
    assert network_setting({"rps": "none"}, ONLINE) == RpsSetting(frozenset(), 0)
    with pytest.raises(ConfigError, match="invalid opt rps '9'"):
        network_setting({"rps": "9"}, ONLINE)
    with pytest.raises(ConfigError, match="invalid opt rps_flows '5': needs -o rps"):
        network_setting({"rps_flows": "5"}, ONLINE)


def test_sock_flow_table_is_sized_for_the_flow_tables_and_never_shrinks() -> None:
    assert sock_flow_entries([4096, 4096], 0) == 32768
    assert sock_flow_entries([40000], 0) == 65536
    assert sock_flow_entries([10], 131072) == 131072
    assert sock_flow_entries([0], 5) == 5


def test_softnet_stat_rows() -> None:
    text = (
        "005616bd 00000c79 00000002 00000000 00000000 00000000 00000000 00000000 00000000 "
        "00000010 00000001 00000000 00000000 00000000 00000000\n"
        "005e241c 00000d29 00000000 00000000 00000000 00000000 00000000 00000000 00000000 "
        "00000000 00000000 00000000 00000001 00000000 00000000\n"
    )
    assert rps.parse_softnet(text) == [
        {"cpu": 0, "processed": 0x5616BD, "dropped": 0xC79, "squeezed": 2, "rps": 16,
         "flow_limit": 1},
        {"cpu": 1, "processed": 0x5E241C, "dropped": 0xD29, "squeezed": 0, "rps": 0,
         "flow_limit": 0},
    ]


def test_show_rows() -> None:
    report = {"interfaces": [{"namespace": "host", "name": "nbv1", "owner": "veth host end",
                              "rx": [{"queue": "rx-0", "cpus": "0-1", "flow_cnt": 4096}],
                              "tx": [{"queue": "tx-0", "cpus": None}]}],
              "softnet": [{"cpu": 0, "processed": 5, "dropped": 0, "squeezed": 0, "rps": 1,
                           "flow_limit": 0}]}
    assert rps.interface_rows(report) == [
        ("host", "nbv1", "veth host end", "1", "0-1", "4096", "n/a")]
    assert rps.softnet_rows(report) == [("0", "5", "0", "0", "1", "0")]
