"""The real-host harness (tests/realhost.py), and the defects a real host shows that the old
test sandbox hid (issue 13): /sys, /run/netns.

A real host's /sys shows its own network namespace and its /run is a tmpfs mounted at boot;
the suite's daemons used to run under the test runner's /sys and /run, which hid these.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import Env, link_names, sh
from netbay import _linux
from netbay.paths import DEFAULT_NETNS_DIR, DEFAULT_ROOT, DEFAULT_SOCKET, Paths
from realhost import RealHost

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]


def mounts(path: str = "/proc/self/mountinfo") -> dict[str, list[str]]:
    """Mount point -> (filesystem type, propagation fields) of each mount, the last one there."""
    out = {}
    for fields in map(str.split, Path(path).read_text().splitlines()):
        dash = fields.index("-")
        out[fields[4]] = [fields[dash + 1], *fields[6:dash]]
    return out


def runner_view(tmp_path: Path) -> tuple[dict[str, list[str]], set[str]]:
    """What the test runner's namespaces show that a sandbox could change: its mounts under
    the test's directory and on /run, /sys, /proc, its links."""
    shown = {m: f for m, f in mounts().items()
             if m.startswith(str(tmp_path)) or m in ("/run", "/sys", "/proc", "/var/lib")}
    return shown, link_names()


def test_the_real_host_has_its_own_sys_run_and_pids_and_leaves_nothing(tmp_path: Path) -> None:
    before = runner_view(tmp_path)
    home = [os.readlink(f"/proc/thread-self/ns/{kind}") for kind in ("mnt", "net")]
    host = RealHost(tmp_path / "state")
    host.start()
    try:
        env = Env(Paths(tmp_path / "state", tmp_path / "netbay.sock", tmp_path / "netns"),
                  tmp_path, host)
        seen = mounts()
        assert (seen["/run"][0], seen["/sys"][0], seen[str(tmp_path / "state")][0]) == (
            "tmpfs", "sysfs", "tmpfs")
        assert sorted(os.listdir("/sys/class/net")) == ["lo"] == sorted(link_names())
        inside = subprocess.run([*host.enter, "sh", "-c", "echo $$; cat /proc/1/cmdline"],
                                capture_output=True, text=True, check=True).stdout.split("\n")
        assert int(inside[0]) < 100 and "realhost.py" in inside[1]
        env.run("network", "create", "--subnet", "10.70.0.0/24", "asgard")
        env.run("run", "-d", "--name", "c1", "--network", "asgard", "--", "sleep", "inf")
        daemon = env.daemon_pid()
        container = env.host_pid(env.json("inspect", "c1")[0]["State"]["Pid"])
        assert daemon is not None  # not the pid its own namespace gives it (in its pid file)
        assert daemon != int((tmp_path / "state" / "netbayd.pid").read_text())
        straggler = subprocess.Popen(["sleep", "1000"])  # started by the test, inside
        started = [(p, _linux.process_start_time(p)) for p in (daemon, container)]
    finally:
        host.stop()
    assert straggler.wait(5) == -signal.SIGKILL
    assert not any(_linux.process_alive(pid, start) for pid, start in started)
    assert [os.readlink(f"/proc/thread-self/ns/{kind}") for kind in ("mnt", "net")] == home
    assert runner_view(tmp_path) == before


def test_a_container_sees_its_own_links_in_a_read_only_sys(env: Env) -> None:
    env.run("network", "create", "asgard")
    env.run("run", "-d", "--name", "env1", "--network", "asgard", "--", "sleep", "infinity")
    mac = env.json("inspect", "env1")[0]["NetworkSettings"]["Networks"]["asgard"]["MacAddress"]
    assert env.in_container("env1", "cat", "/sys/class/net/eth0/address").stdout.strip() == mac
    listed = env.in_container("env1", "ls", "/sys/class/net").stdout.split()
    assert sorted(listed) == ["eth0", "lo"]
    write = env.in_container("env1", "sh", "-c", "echo 1 > /sys/class/net/eth0/mtu", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr


def test_rps_is_read_and_set_where_sys_already_shows_the_hosts_namespace(env: Env) -> None:
    sh("ip link add rps0 type veth peer name rps1")
    shown = env.json("rps", "show", "rps0", "--format", "json")["interfaces"]
    assert [(i["namespace"], i["rx"]) for i in shown] == [
        ("host", [{"queue": "rx-0", "cpus": "", "flow_cnt": 0}])]
    env.run("rps", "set", "rps0", "--cpus", "0", "--flows", "64")
    shown = env.json("rps", "show", "rps0", "--format", "json")["interfaces"]
    assert shown[0]["rx"] == [{"queue": "rx-0", "cpus": "0", "flow_cnt": 64}]
    # the kernel, through the host's own /sys
    assert Path("/sys/class/net/rps0/queues/rx-0/rps_cpus").read_text().strip() == "1"
    assert Path("/sys/class/net/rps0/queues/rx-0/rps_flow_cnt").read_text().strip() == "64"


def test_the_daemon_starts_with_its_defaults_under_a_tmpfs_hiding_an_older_netns_mount(
    env: Env,
) -> None:
    """A booted host: /run a tmpfs mounted over an older /run that had /run/netns bind-mounted
    (still listed in mountinfo); netbay's state in /var/lib. No NETBAY_* setting at all."""
    sh("mkdir -p /run/netns && mount --bind /run/netns /run/netns && mount -t tmpfs tmpfs /run"
       " && mount -t tmpfs tmpfs /var/lib")
    listed = Path("/proc/self/mountinfo").read_text().splitlines()
    assert len([f for f in map(str.split, listed) if f[4] == DEFAULT_NETNS_DIR]) == 1  # hidden
    defaults = Env(Paths(Path(DEFAULT_ROOT), Path(DEFAULT_SOCKET), Path(DEFAULT_NETNS_DIR)),
                   env.tmp, env.host)
    for name in ("NETBAY_ROOT", "NETBAY_SOCKET", "NETBAY_NETNS_DIR"):
        del defaults.environ[name]
    defaults.run("network", "create", "--subnet", "10.70.0.0/24", "asgard")
    defaults.run("run", "-d", "--name", "c1", "--network", "asgard", "--", "sleep", "inf")
    assert Path(DEFAULT_SOCKET).is_socket() and defaults.daemon_pid() is not None
    pin = f"{DEFAULT_NETNS_DIR}/netbay-{defaults.json('inspect', 'c1')[0]['Id'][:12]}"
    seen = mounts()
    assert seen[pin][0] == "nsfs"
    assert any(f.startswith("shared:") for f in seen[DEFAULT_NETNS_DIR][1:])
    eth0 = defaults.in_container("c1", "ip", "-j", "-4", "addr", "show", "eth0").stdout
    assert json.loads(eth0)[0]["addr_info"][0]["local"] == "10.70.0.2"


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
