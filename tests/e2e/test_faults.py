"""SIGKILL of the daemon at injected points during create/attach/detach/remove: after a
restart, the record and the kernel agree and nothing is orphaned (no veth, netns, lease,
store row); then removing everything leaves the host as it was."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from helpers import Env, link_names, netns_files
from netbay import _linux
from netbay.model import CREATING, REMOVING
from netbay.store.sqlite import SQLiteStore

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


def recorded(db: Path) -> dict[str, list[dict[str, Any]]]:
    """The record's rows by table, each by column name (read-only: the daemon is running)."""
    rows: dict[str, list[dict[str, Any]]] = {"networks": [], "containers": [], "endpoints": []}
    with contextlib.closing(SQLiteStore(db, read_only=True)) as store:
        for table, row in store.dump():
            rows[table].append(row)
    return rows


def assert_consistent(env: Env) -> None:
    """Every record is settled, every kernel object is recorded and vice versa."""
    assert env.run("system", "audit", check=False).stdout == ""
    rows = recorded(env.paths.db)
    assert [r for table in rows.values() for r in table if r["state"] in (CREATING, REMOVING)] == []
    recorded_netns = {c["netns"].rsplit("/", 1)[-1] for c in rows["containers"] if c["netns"]}
    assert netns_files(env.paths) == recorded_netns
    recorded_veths = {e["host_ifname"] for e in rows["endpoints"]}
    veths = {name for name in link_names() if name.startswith("nbv")}
    assert veths == recorded_veths
    bridges = {n["device"] for n in rows["networks"] if n["device"]}
    assert {n for n in link_names() if n.startswith("br-")} == {
        b for b in bridges if b.startswith("br-")
    }
    dirs = {p.name for p in env.paths.containers.iterdir()}
    assert dirs == {c["id"] for c in rows["containers"]}


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
    assert recorded(env.paths.db)["endpoints"] == []
