"""SIGKILL of the daemon at injected points during create/attach/detach/remove: after a
restart, the record and the kernel agree and nothing is orphaned (no veth, netns, lease,
store row); then removing everything leaves the host as it was."""

from __future__ import annotations

import pytest

from helpers import Env, link_names, netns_files, store_rows
from netbay import _linux

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

SETUP = [
    ("network", "create", "--subnet", "10.70.0.0/24", "asgard"),
    ("run", "-d", "--name", "env1", "--network", "asgard", "--", "sleep", "infinity"),
]

FAULTS = [
    ("network:recorded", ("network", "create", "--subnet", "10.71.0.0/24", "late")),
    ("network:removing", ("network", "rm", "empty")),
    (
        "container:recorded",
        ("run", "-d", "--name", "env2", "--network", "asgard", "--", "sleep", "infinity"),
    ),
    (
        "container:netns",
        ("run", "-d", "--name", "env2", "--network", "asgard", "--", "sleep", "infinity"),
    ),
    (
        "attach:recorded",
        ("run", "-d", "--name", "env2", "--network", "asgard", "--", "sleep", "infinity"),
    ),
    (
        "attach:kernel",
        ("run", "-d", "--name", "env2", "--network", "asgard", "--", "sleep", "infinity"),
    ),
    ("attach:kernel", ("network", "connect", "empty", "env1")),
    ("detach:marked", ("network", "disconnect", "asgard", "env1")),
    ("detach:kernel", ("network", "disconnect", "asgard", "env1")),
    ("detach:marked", ("rm", "-f", "env1")),
    ("container:removing", ("rm", "-f", "env1")),
]


def assert_consistent(env: Env) -> None:
    """Every record is settled, every kernel object is recorded and vice versa."""
    assert env.run("system", "audit", check=False).stdout == ""
    rows = store_rows(env.paths.db)
    assert not [r for r in rows if "creating" in r or "removing" in r]
    recorded_netns = {r[6].rsplit("/", 1)[-1] for r in rows if r[0] == "containers" and r[6]}
    assert netns_files(env.paths) == recorded_netns
    recorded_veths = {r[5] for r in rows if r[0] == "endpoints"}
    veths = {name for name in link_names() if name.startswith("nbv")}
    assert veths == recorded_veths
    bridges = {r[11] for r in rows if r[0] == "networks" and r[11]}
    assert {n for n in link_names() if n.startswith("br-")} == {
        b for b in bridges if b.startswith("br-")
    }
    dirs = {p.name for p in env.paths.containers.iterdir()}
    assert dirs == {r[1] for r in rows if r[0] == "containers"}


@pytest.mark.parametrize(
    ("point", "command"), FAULTS, ids=[f"{p}-{c[0]}-{c[1]}" for p, c in FAULTS]
)
def test_daemon_killed_mid_operation_is_repaired(
    env: Env, point: str, command: tuple[str, ...]
) -> None:
    for step in SETUP:
        env.run(*step)
    env.run("network", "create", "--subnet", "10.72.0.0/24", "empty")
    env.stop_daemon()

    env.environ["NETBAY_FAULT"] = point
    env.run("daemon", "start")
    pid = env.daemon_pid()
    start = _linux.process_start_time(pid or 0)
    result = env.run(*command, check=False)
    assert result.returncode != 0, "the daemon should have died at " + point
    assert pid is not None and not _linux.process_alive(pid, start)
    assert "netbayd closed the connection" in result.stderr
    del env.environ["NETBAY_FAULT"]

    env.run("daemon", "start")  # start-up repairs from the record
    assert_consistent(env)

    # and the survivors can be removed completely
    for name in env.run("ps", "-a", "-q", "--no-trunc").stdout.split():
        env.run("rm", "-f", name)
    env.run("network", "prune", "-f")
    assert_consistent(env)
    assert netns_files(env.paths) == set()
    assert {n for n in link_names() if n.startswith(("nbv", "br-"))} == set()
    assert [r for r in store_rows(env.paths.db) if r[0] == "endpoints"] == []
