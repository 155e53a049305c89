from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from netbay.errors import ConfigError, ConflictError
from netbay.plan.ports import Mapping, PublishSpec, allocate, parse_publish

LOCAL = (32768, 60999)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("80", PublishSpec("tcp", None, None, (80, 80))),
        ("53/udp", PublishSpec("udp", None, None, (53, 53))),
        ("8080:80", PublishSpec("tcp", None, (8080, 8080), (80, 80))),
        (
            "127.0.0.1:8080:80/sctp",
            PublishSpec("sctp", IPv4Address("127.0.0.1"), (8080, 8080), (80, 80)),
        ),
        ("127.0.0.1::80", PublishSpec("tcp", IPv4Address("127.0.0.1"), None, (80, 80))),
        # IPv4 only, as in Docker 27: no host address publishes on both families
        ("0.0.0.0:8080:80", PublishSpec("tcp", IPv4Address("0.0.0.0"), (8080, 8080), (80, 80))),
        ("8000-8099:8000-8099", PublishSpec("tcp", None, (8000, 8099), (8000, 8099))),
        ("9000-9010:80", PublishSpec("tcp", None, (9000, 9010), (80, 80))),
    ],
)
def test_parse(text: str, expected: PublishSpec) -> None:
    assert parse_publish(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("70000:80", "port 70000 out of range"),
        ("0:80", "port 0 out of range"),
        ("80/icmp", "unknown protocol 'icmp'"),
        ("a:b:c:d", "expected [HOSTIP:]"),
        ("1.2.3:80:80", "'1.2.3' is not an IPv4 address"),
        ("8000-8010:9000-9001", "ranges differ in length"),
        ("90-80:80", "runs backwards"),
        ("http", "'http' is not a port"),
        ("8080:", "expected"),
    ],
)
def test_parse_errors_name_the_value(text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_publish(text)
    assert str(err.value).startswith(f"invalid publish {text!r}: ")
    assert reason in str(err.value)


def test_allocate_fixed_ranges_auto_and_clashes() -> None:
    taken = [Mapping("tcp", None, 8080, 80)]
    got = allocate(
        [parse_publish("8000-8002:7000-7002"), parse_publish("80")], taken, (40000, 40001)
    )
    assert [(m.host_port, m.container_port) for m in got] == [
        (8000, 7000),
        (8001, 7001),
        (8002, 7002),
        (40000, 80),
    ]
    with pytest.raises(ConflictError, match="8080/tcp: host port already published"):
        allocate([parse_publish("127.0.0.1:8080:80")], taken, LOCAL)
    assert allocate([parse_publish("8080:80/udp")], taken, LOCAL)[0].host_port == 8080
    picked = allocate([parse_publish("8080-8082:80")], taken, LOCAL)
    assert picked[0].host_port == 8081
    with pytest.raises(ConflictError, match="no free host port"):
        allocate([parse_publish(f"9000-9001:{p}") for p in (80, 81, 82)], [], LOCAL)
