"""Defects a real host shows and the old test sandbox hid (issue 13): /sys, /run/netns.

A real host's /sys shows its own network namespace and its /run is a tmpfs mounted at boot;
the suite's daemons used to run under the test runner's /sys and /run, which hid these.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import Env

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]


def test_a_container_sees_its_own_links_in_a_read_only_sys(env: Env) -> None:
    env.run("network", "create", "asgard")
    env.run("run", "-d", "--name", "env1", "--network", "asgard", "--", "sleep", "infinity")
    mac = env.json("inspect", "env1")[0]["NetworkSettings"]["Networks"]["asgard"]["MacAddress"]
    assert env.in_container("env1", "cat", "/sys/class/net/eth0/address").stdout.strip() == mac
    listed = env.in_container("env1", "ls", "/sys/class/net").stdout.split()
    assert sorted(listed) == ["eth0", "lo"]
    write = env.in_container("env1", "sh", "-c", "echo 1 > /sys/class/net/eth0/mtu", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr


def _in_private_mounts(script: str) -> subprocess.CompletedProcess[str]:
    """SCRIPT (python) in a mount namespace of its own, so nothing it mounts leaks."""
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", script],
        capture_output=True, text=True, timeout=60,
    )


def test_the_netns_dir_is_made_shared_under_a_tmpfs_that_hides_an_older_mount(
    tmp_path: Path, host_ns: Path
) -> None:
    run = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, subprocess
        from pathlib import Path
        from netbay.kernel import netns
        run = Path({str(run)!r}); hidden = run / "netns"
        hidden.mkdir(parents=True)
        subprocess.run(["mount", "--bind", str(hidden), str(hidden)], check=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(run)], check=True)
        netns.ensure_shared_dir(hidden)
        mine = [l.split() for l in open("/proc/self/mountinfo") if l.split()[4] == str(hidden)]
        print(len(mine), any(f.startswith("shared:") for f in mine[-1][6:]))
    """)
    result = _in_private_mounts(script)
    assert result.returncode == 0, result.stderr
    # the hidden mount and the new one are both listed; the visible (last) one is shared
    assert result.stdout.split() == ["2", "True"]


def test_rps_masks_are_read_where_sys_already_shows_this_namespace(host_ns: Path) -> None:
    subprocess.run(["ip", "link", "add", "rps0", "type", "veth", "peer", "name", "rps1"],
                   check=True)
    script = textwrap.dedent("""
        import subprocess
        from netbay.kernel import netsysfs
        subprocess.run(["mount", "-t", "sysfs", "sysfs", "/sys"], check=True)
        print(len(netsysfs.read_queues(None, ["rps0"])["rps0"].rps_cpus))
    """)
    try:
        result = _in_private_mounts(script)
    finally:
        subprocess.run(["ip", "link", "del", "rps0"], check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
