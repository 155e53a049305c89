"""Many clients at once: 8 processes x 25 `netbay run -d` on one network."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Interface

import pytest

from helpers import Env, link_names, netns_files, store_rows

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

WORKERS, EACH = 8, 25


def test_parallel_runs_get_distinct_addresses_and_removal_leaves_nothing(env: Env) -> None:
    env.run("network", "create", "--subnet", "10.80.0.0/22", "asgard")
    env.stop_daemon()  # the 8 workers race to start it again; its lock lets one win
    loop = (
        f"for i in $(seq {EACH}); do {sys.executable} -m netbay run -d --network asgard "
        "-- sleep infinity >/dev/null || exit 1; done"
    )
    workers = [
        subprocess.Popen(["bash", "-c", loop], env=env.environ, stderr=subprocess.PIPE, text=True)
        for _ in range(WORKERS)
    ]
    errors = [w.communicate(timeout=600)[1] for w in workers]
    assert [w.returncode for w in workers] == [0] * WORKERS, errors

    members = env.json("network", "inspect", "asgard")[0]["Containers"].values()
    addresses = {IPv4Interface(m["IPv4Address"]).ip for m in members}
    assert len(members) == len(addresses) == WORKERS * EACH
    bridge = "br-" + env.json("network", "inspect", "asgard")[0]["Id"][:12]
    ports = (
        subprocess.run(
            ["ip", "-o", "link", "show", "master", bridge],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()
    )
    assert len(ports) == WORKERS * EACH
    assert len(netns_files(env.paths)) == WORKERS * EACH
    running = env.run("ps", "-q", "--no-trunc").stdout.split()
    assert len(running) == WORKERS * EACH

    env.run("rm", "-f", *running, timeout=600)
    assert netns_files(env.paths) == set()
    assert {n for n in link_names() if n.startswith("nbv")} == set()
    assert [r for r in store_rows(env.paths.db) if r[0] in ("endpoints", "containers")] == []
    env.run("network", "rm", "asgard")
    assert bridge not in link_names()
