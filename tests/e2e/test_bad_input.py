"""Invalid or conflicting input: one clear line naming the field and value, a non-zero exit,
and no change at all to the kernel (links, namespaces) or the store."""

from __future__ import annotations

import pytest

from helpers import Env, snapshot

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

CASES = [
    (
        ("network", "create", "--subnet", "10.50.0.0/24", "asgard"),
        "network with name asgard already exists",
    ),
    (
        ("network", "create", "--subnet", "10.50.0.128/25", "other"),
        "invalid subnet '10.50.0.128/25': overlaps 10.50.0.0/24 of network asgard",
    ),
    (
        ("network", "create", "--subnet", "10.51.0.0/24", "--gateway", "10.52.0.1", "x"),
        "invalid gateway '10.52.0.1': not inside any --subnet",
    ),
    (
        ("network", "create", "--subnet", "10.51.0.0/24", "--gateway", "10.51.0.255", "x"),
        "invalid gateway '10.51.0.255': not a host address of subnet 10.51.0.0/24",
    ),
    (("network", "create", "--subnet", "10.51.0.1/24", "x"), "invalid subnet '10.51.0.1/24'"),
    (("network", "create", "--subnet", "banana", "x"), "invalid subnet 'banana'"),
    (("network", "create", "-d", "warp", "x"), "invalid driver 'warp': unknown driver"),
    (
        ("network", "create", "-o", "colour=blue", "x"),
        "invalid opt 'colour': unknown option for driver bridge",
    ),
    (
        ("network", "create", "-o", "com.docker.network.driver.mtu=9", "x"),
        "invalid opt com.docker.network.driver.mtu '9': out of range 68-65535",
    ),
    (
        ("network", "create", "-o", "com.docker.network.bridge.name=waytoolongbridgename", "x"),
        "invalid opt com.docker.network.bridge.name 'waytoolongbridgename'",
    ),
    (  # issue 13: the name passed the driver, the bridge was made, the firewall refused it
        ("network", "create", "-o", "com.docker.network.bridge.name=br+x", "n1"),
        "invalid opt com.docker.network.bridge.name 'br+x': not a valid interface name (1-15 "
        "characters of ASCII letters, digits, '_', '-' and '.')",
    ),
    (("network", "create", "bad/name"), "invalid name 'bad/name'"),
    (("network", "create", "-d", "host", "x"), "invalid driver 'host'"),
    (("network", "rm", "asgard"), "network asgard id"),
    (("network", "rm", "bridge"), "bridge is a pre-defined network and cannot be removed"),
    (("network", "rm", "nosuch"), "network nosuch not found"),
    (
        ("run", "-d", "--network", "asgard", "--ip", "10.9.9.9", "--", "true"),
        "invalid ip '10.9.9.9': not inside the network's subnets (10.50.0.0/24)",
    ),
    (
        ("run", "-d", "--network", "asgard", "--ip", "10.50.0.7", "--", "true"),
        "invalid ip '10.50.0.7': already in use",
    ),
    (
        ("run", "-d", "--network", "asgard", "--ip", "10.50.0.1", "--", "true"),
        "invalid ip '10.50.0.1': reserved",
    ),
    (("run", "-d", "--network", "asgard", "--ip", "nope", "--", "true"), "invalid ip 'nope'"),
    (
        ("run", "-d", "--name", "env1", "--network", "asgard", "--", "true"),
        "the container name 'env1' is already in use",
    ),
    (("run", "-d", "--network", "nosuch", "--", "true"), "network nosuch not found"),
    (
        ("run", "-d", "--network", "host", "--network", "asgard", "--", "true"),
        "host and none modes cannot be combined",
    ),
    (("run", "-d", "--dns", "1.2.3", "--", "true"), "invalid dns '1.2.3'"),
    (("run", "-d", "--add-host", "nocolon", "--", "true"), "invalid add-host 'nocolon'"),
    (("network", "connect", "asgard", "env1"), "endpoint with name env1 already exists"),
    (("network", "connect", "asgard", "ghost"), "no such container: ghost"),
    (
        ("network", "disconnect", "bridge", "env1"),
        "container env1 is not connected to network bridge",
    ),
    (("rm", "env1"), "cannot remove running container env1"),
]


@pytest.fixture
def prepared(env: Env) -> Env:
    env.run("network", "create", "--subnet", "10.50.0.0/24", "asgard")
    env.run(
        "run",
        "-d",
        "--name",
        "env1",
        "--network",
        "asgard",
        "--ip",
        "10.50.0.7",
        "--",
        "sleep",
        "infinity",
    )
    return env


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_refused_with_one_line_and_nothing_changed(
    prepared: Env, args: tuple[str, ...], message: str
) -> None:
    before = snapshot(prepared.paths)
    result = prepared.run(*args, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert message in lines[0]
    assert snapshot(prepared.paths) == before
