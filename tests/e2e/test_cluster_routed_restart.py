"""A routed network's data plane through restarts (issue 15), on the multi-host harness
(tests/cluster.py): h1 and h2 on one segment peer by BGP, a routed network with a container
on each. BIRD outlives netbayd: while h1's daemon is stopped (an upgrade) traffic from h2 to
h1's containers goes on, h2 never withdraws h1's block, and the next netbayd adopts the same
BIRD; a BIRD that died meanwhile is started again. A BIRD killed under a running netbayd is
restarted by graceful restart: h2 keeps h1's block (stale) and goes on forwarding."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Network

import pytest

from cluster import Cluster, ClusterHost, cluster_fixture
from helpers import wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

cluster = cluster_fixture(hosts=2)
POOL = "10.94.0.0/16"
WATCH = 12  # seconds of pings and route events around each restart
LOST = 2  # pings a restart may cost at most ("a few")
ECHO = ("import socket; s = socket.create_server(('0.0.0.0', 7002))\n"
        "while c := s.accept()[0]:\n    while data := c.recv(64): c.sendall(data)")
# one byte echoed every 0.1 s for WATCH seconds: the rounds and the slowest, in seconds
ROUNDS = ("import socket, sys, time; c = socket.create_connection((sys.argv[1], 7002), 5); "
          "c.settimeout(5); end = time.monotonic() + float(sys.argv[2]); n, worst = 0, 0.0\n"
          "while time.monotonic() < end:\n"
          "    t = time.monotonic(); c.sendall(b'x'); assert c.recv(1) == b'x'\n"
          "    n, worst = n + 1, max(worst, time.monotonic() - t); time.sleep(0.1)\n"
          "print(n, worst)")


@pytest.fixture(scope="module")
def calico(cluster: Cluster) -> Iterator[Cluster]:
    cluster.routed_network("calico", POOL)
    h1, h2 = cluster.hosts
    h1.netbay("run", "-d", "--name", "echo-h1", "--network", "calico", "--", "python3", "-c",
              ECHO)
    wait_until(lambda: f"{_block(h1)} via {h1.address}" in _bird_routes(h2), 20,
               "h1's block learned by BGP on h2")
    yield cluster


def _block(host: ClusterHost) -> str:
    return str(IPv4Network(f"{host.container_address(f'c-{host.name}', 'calico')}/26",
                           strict=False))


def _bird_routes(host: ClusterHost) -> str:
    return host.run(["ip", "route", "show", "proto", "bird"]).stdout


def _bird_alive(host: ClusterHost, pid: int) -> bool:
    return pid != 0 and host.run(["kill", "-0", str(pid)], check=False).returncode == 0


def _running_bird(host: ClusterHost) -> int:
    """HOST's BIRD once its PID file names a live one with its sessions up (a BIRD the test
    before had restarted may have been replaced once more meanwhile)."""
    wait_until(lambda: _bird_alive(host, host.bird_pid()) and _bgp_established(host), 20,
               f"{host.name}'s BIRD running with its sessions up")
    return host.bird_pid()


def _bgp_established(host: ClusterHost) -> bool:
    found = json.loads(host.netbay("bgp", "status", "--format", "json", check=False).stdout
                       or "{}")
    sessions = found.get("Sessions") or []
    return bool(found.get("Running")) and all(s["State"] == "Established" for s in sessions) \
        and bool(sessions)


class Traffic:
    """From c-h2 to h1's containers while a fault happens: pings to c-h1 (0.1 s apart), a
    TCP connection to echo-h1 exchanging a byte every 0.1 s, and h2's route events, for
    WATCH seconds each (they end by themselves: a signal to nsenter would not reach them)."""

    def __init__(self, cluster: Cluster) -> None:
        h1, self.h2 = cluster.hosts
        c1 = h1.container_address("c-h1", "calico")
        echo = h1.container_address("echo-h1", "calico")
        self.block = _block(h1)
        self.monitor = self.h2.popen(["timeout", "-s", "INT", str(WATCH + 2), "ip", "monitor",
                                      "route"])
        self.pings = self.h2.popen(self.h2.netbay_argv(
            "exec", "c-h2", "--", "ping", "-n", "-i", "0.1", "-W", "1", "-w", str(WATCH), c1))
        self.tcp = self.h2.popen(self.h2.netbay_argv(
            "exec", "c-h2", "--", "python3", "-c", ROUNDS, echo, str(WATCH)))
        time.sleep(1)  # all three under way before the fault

    def results(self) -> tuple[tuple[int, int], tuple[int, float], list[str]]:
        """(pings sent, received), (TCP rounds, the slowest), h2's deletions of h1's block."""
        pinged, _ = self.pings.communicate(timeout=WATCH + 30)
        rounds, errors = self.tcp.communicate(timeout=WATCH + 30)
        events, _ = self.monitor.communicate(timeout=WATCH + 30)
        summary = next(line for line in pinged.splitlines() if "packets transmitted" in line)
        sent, received = (int(summary.split()[i]) for i in (0, 3))
        assert self.tcp.returncode == 0, errors
        count, worst = rounds.split()
        deleted = [line for line in events.splitlines()
                   if line.startswith("Deleted") and self.block in line]
        return (sent, received), (int(count), float(worst)), deleted


def _through(cluster: Cluster, fault: Callable[[], None]) -> None:
    """FAULT happens amid the traffic; the traffic and h2's route to h1's block go on."""
    traffic = Traffic(cluster)
    fault()
    (sent, received), (rounds, worst), deleted = traffic.results()
    assert sent - received <= LOST, (sent, received)
    assert rounds >= WATCH * 5 and worst < 1.0, (rounds, worst)  # the connection never stalled
    assert deleted == []  # never withdrawn on h2
    assert f"{traffic.block} via {cluster.hosts[0].address}" in _bird_routes(traffic.h2)


def test_a_daemon_restart_keeps_bird_and_cuts_no_traffic(calico: Cluster) -> None:
    h1 = calico.hosts[0]
    bird = _running_bird(h1)

    def restart() -> None:
        h1.kill_daemon(signal.SIGTERM)  # `netbay daemon stop`, waiting until it is gone
        assert _bird_alive(h1, bird)  # BIRD outlives netbayd
        time.sleep(2)
        h1.start_daemon()
        wait_until(lambda: "adopted" in (h1.state / "netbayd.log").read_text(), 10,
                   "h1's netbayd adopting its BIRD")

    _through(calico, restart)
    assert h1.bird_pid() == bird and _bird_alive(h1, bird)
    assert f"bird (pid {bird}) adopted from a previous netbayd" in (
        h1.state / "netbayd.log").read_text()
    wait_until(lambda: _bgp_established(h1), 10, "h1's sessions reported by its netbayd")
    # supervised again: killed, it is restarted
    h1.run(["kill", "-KILL", str(bird)])
    wait_until(lambda: _bird_alive(h1, h1.bird_pid()) and h1.bird_pid() != bird, 10,
               "h1's BIRD restarted by the new netbayd")
    wait_until(lambda: _bgp_established(h1), 20, "h1's sessions back")


def test_a_bird_that_died_while_the_daemon_was_down_is_started_again(
    calico: Cluster,
) -> None:
    h1, h2 = calico.hosts
    bird = _running_bird(h1)
    h1.kill_daemon(signal.SIGTERM)
    h1.run(["kill", "-KILL", str(bird)])
    wait_until(lambda: not _bird_alive(h1, bird), 5, "h1's BIRD gone")
    h1.start_daemon()
    wait_until(lambda: _bird_alive(h1, h1.bird_pid()) and h1.bird_pid() != bird, 10,
               "h1's BIRD started again")
    wait_until(lambda: _bgp_established(h1), 20, "h1's sessions back")
    wait_until(lambda: f"{_block(h1)} via {h1.address}" in _bird_routes(h2), 10,
               "h1's block on h2")
    assert h2.netbay("exec", "c-h2", "--", "ping", "-c", "1", "-W", "2",
                     h1.container_address("c-h1", "calico"), check=False).returncode == 0


def test_a_killed_bird_leaves_its_routes_stale_on_the_peers_until_it_is_back(
    calico: Cluster,
) -> None:
    """Graceful restart: h2 keeps forwarding to h1's block while h1's BIRD restarts."""
    h1 = calico.hosts[0]
    bird = _running_bird(h1)

    def kill_bird() -> None:
        h1.run(["kill", "-KILL", str(bird)])
        wait_until(lambda: _bird_alive(h1, h1.bird_pid()) and h1.bird_pid() != bird, 10,
                   "h1's BIRD restarted")

    _through(calico, kill_bird)
    wait_until(lambda: _bgp_established(h1), 20, "h1's sessions back")


def test_leaving_the_cluster_stops_bird(calico: Cluster) -> None:
    h1 = calico.hosts[0]
    bird = _running_bird(h1)
    for name in ("c-h1", "echo-h1"):
        h1.netbay("rm", "-f", name)
    h1.netbay("cluster", "leave")
    wait_until(lambda: not _bird_alive(h1, bird), 10, "h1's BIRD stopped")
    assert h1.bird_pid() == 0  # its PID file gone with it
