"""Runtimes that never send DEL: the CNI plugin exec'd as libcni does, through the daemon,
for a namespace that then goes (containerd's `ctr run --cni` passes /proc/PID/ns/net and
sends no DEL when the task goes; a runtime may unpin a namespace without one). The daemon
releases the attachment's lease, published port and records after the grace period and
says so in its log; DEL afterwards still succeeds; a live namespace is never released.

containerd itself is not installed on this machine (Debian `containerd`), so `ctr run --cni`
is stood in for by the same environment it gives the plugin."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import Env, sh, wait_until
from runtimes import Cni

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

GRACE = 2.0  # seconds (NETBAY_VANISHED_GRACE); the daemon looks every second


@pytest.fixture
def daemon_env(env: Env) -> Env:
    """A daemon (started by its first command) with a short grace period and network asgard."""
    env.environ["NETBAY_VANISHED_GRACE"] = str(GRACE)
    env.run("network", "create", "--subnet", "10.57.0.0/24", "asgard")
    return env


def conf(ip: str, host_port: int) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": "cninet", "type": "netbay", "network": "asgard",
            "runtimeConfig": {"ips": [ip], "portMappings": [
                {"hostPort": host_port, "containerPort": 80, "protocol": "tcp"}]}}


def members(env: Env) -> list[str]:
    return sorted(c["Name"] for c in env.json("network", "inspect", "asgard")[0]["Containers"]
                  .values())


def published(port: int) -> bool:
    return str(port) in sh("nft list map inet netbay pub_any").stdout


def add(cni: Cni, container_id: str, netns: Path, ip: str, port: int) -> None:
    added = cni.call("ADD", conf(ip, port), container_id, netns)
    assert added.code == 0, added
    assert published(port)


def released(env: Env, container_id: str, ip: str, port: int) -> bool:
    """Lease, port mapping and record gone, and the daemon's log line written."""
    log = env.paths.daemon_log.read_text()
    return (f"cni-{container_id}" not in members(env) and not published(port)
            and f"released cni-{container_id} (eth0 {ip} on asgard; ports {port}/tcp)" in log)


class Sleeper:
    """`unshare --net sleep 1000` where the daemon runs (a container's task, as containerd
    starts it): its own network namespace, known by the PID the daemon sees."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.proc = subprocess.Popen(
            [*env.enter, "sh", "-c", "echo $$; exec unshare --net sleep 1000"],
            stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        self.pid = int(self.proc.stdout.readline())  # as the daemon sees it
        self.netns = Path(f"/proc/{self.pid}/ns/net")
        env.cleanups.append(self.kill)

    def kill(self) -> None:
        if self.proc.poll() is None:
            with_pid = self.env.host_pid(self.pid)  # the same process, as this test sees it
            subprocess.run(["kill", "-KILL", str(with_pid)], check=True)
        self.proc.wait(10)


def test_an_attachment_whose_process_is_gone_is_released_after_the_grace_period(
    daemon_env: Env, tmp_path: Path
) -> None:
    env = daemon_env
    cni = Cni(tmp_path / "bin", env.environ)
    task, alive = Sleeper(env), Sleeper(env)
    add(cni, "task-1", task.netns, "10.57.0.9", 18700)
    add(cni, "alive-1", alive.netns, "10.57.0.10", 18701)
    assert members(env) == ["cni-alive-1", "cni-task-1"]

    task.kill()  # the task exits; the runtime sends no DEL
    gone_at = time.monotonic()
    assert "cni-task-1" in members(env)  # not before the grace period
    wait_until(lambda: released(env, "task-1", "10.57.0.9", 18700), GRACE + 2,
               "the release of task-1's lease, port and records, and its log line")
    assert time.monotonic() - gone_at >= GRACE
    log = env.paths.daemon_log.read_text()
    assert f"network namespace {task.netns} is gone" in log
    deleted = cni.call("DEL", conf("10.57.0.9", 18700), "task-1", task.netns)
    assert (deleted.code, deleted.stdout) == (0, ""), deleted

    # the live one stays through more than a grace period; its lease is not free
    time.sleep(GRACE + 1)
    assert members(env) == ["cni-alive-1"] and published(18701)
    assert "released cni-alive-1" not in env.paths.daemon_log.read_text()
    # the released address and port are: a new task takes them
    again = Sleeper(env)
    add(cni, "task-2", again.netns, "10.57.0.9", 18700)
    for container_id, ns, ip, port in (("task-2", again.netns, "10.57.0.9", 18700),
                                       ("alive-1", alive.netns, "10.57.0.10", 18701)):
        assert cni.call("DEL", conf(ip, port), container_id, ns).code == 0


def test_a_pinned_namespace_unmounted_and_unlinked_is_released(
    daemon_env: Env, tmp_path: Path
) -> None:
    from netbay.kernel import netns

    env = daemon_env
    cni = Cni(tmp_path / "bin", env.environ)
    pinned = tmp_path / "ns-pinned"
    netns.create(pinned)
    add(cni, "pinned-1", pinned, "10.57.0.20", 18710)
    netns.delete(pinned)  # as `ip netns delete`: unmount, then unlink
    wait_until(lambda: released(env, "pinned-1", "10.57.0.20", 18710), GRACE + 2,
               "the release of pinned-1's lease, port and records, and its log line")
    deleted = cni.call("DEL", conf("10.57.0.20", 18710), "pinned-1", pinned)
    assert (deleted.code, deleted.stdout) == (0, ""), deleted
    assert json.loads(env.run("system", "gc").stdout) == {
        "Endpoints": [], "Containers": [], "Networks": [], "OrphanLinks": []}
