"""The simulated cluster of cluster_scale.py, the parent's side: one etcd member, the processes
that run the nodes (cluster_worker.py; a handle on each, commands to them all at once), and
etcd's and the simulation's CPU and memory per phase. No figures are computed here."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))  # etcd.py; last

from etcd import DIE_WITH_PARENT, loopback_addresses, start_etcd_cluster  # noqa: E402

Json = dict[str, Any]
WORKER = Path(__file__).with_name("cluster_worker.py")
NODES_PER_WORKER = 125  # each process's nodes: 8 processes for 1,000
HOSTS = 8  # nodes alone in a process with their view
# The packed nodes' processes yield the CPU to etcd and the hosts: each of those stands for a
# machine of its own, which the other nodes' work, crammed onto this one, would not slow down.
NODES_NICENESS = 10
STOP_WAIT = 60.0  # for a process to stop its nodes and exit once its stdin closes


@contextmanager
def etcd_member() -> Iterator[tuple[str, int]]:
    """One etcd member on loopback (tests/etcd.py): its client URL and PID; stopped by PID and
    its directory removed after."""
    directory = Path(tempfile.mkdtemp(prefix="netbay-bench-etcd-"))
    try:
        cluster = start_etcd_cluster([directory / "etcd0"], loopback_addresses(1))
        try:
            process = cluster.members[0].process
            assert process is not None
            yield cluster.endpoints[0], process.pid
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def cpu_seconds(pid: int | None = None) -> float:
    """utime + stime of PID (None: this process, every thread)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"rss_mb": int(status["VmRSS"].split()[0]) / 1024,
            "hwm_mb": int(status["VmHWM"].split()[0]) / 1024}


@dataclass
class Phases:
    """etcd's CPU seconds and RSS at the end, the simulation's CPU (every process of it) and
    the wall time of each phase."""

    pid: int
    simulation: Sequence[int]  # its processes' PIDs
    etcd_cpu_s: dict[str, float] = field(default_factory=dict)
    etcd_rss_mb: dict[str, float] = field(default_factory=dict)
    sim_cpu_s: dict[str, float] = field(default_factory=dict)
    wall_s: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        etcd, sim, wall = cpu_seconds(self.pid), self._sim_cpu(), time.perf_counter()
        yield
        self.etcd_cpu_s[name] = cpu_seconds(self.pid) - etcd
        self.etcd_rss_mb[name] = memory_mb(self.pid)["rss_mb"]
        self.sim_cpu_s[name] = self._sim_cpu() - sim
        self.wall_s[name] = time.perf_counter() - wall

    def _sim_cpu(self) -> float:
        return cpu_seconds() + sum(cpu_seconds(pid) for pid in self.simulation)


class Worker:
    """The parent's end of one process of the simulation (cluster_worker.py SPEC)."""

    def __init__(self, spec: Json) -> None:
        self.nodes = {*spec["nodes"], *spec["newcomers"]}
        self.process = subprocess.Popen(
            [*DIE_WITH_PARENT, sys.executable, str(WORKER), json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, op: str, **args: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.process.stdin.flush()

    def receive(self) -> Json:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"simulation process {self.pid} exited "
                               f"({self.process.poll()}); its traceback is above")
        reply: Json = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"simulation process {self.pid}: {reply['error']}")
        return reply

    def ask(self, op: str, **args: Any) -> Json:
        self.send(op, **args)
        return self.receive()

    def hang_up(self) -> None:
        """Its stdin closed: it stops its nodes and exits."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()

    def close(self) -> None:
        """Hung up on, and gone; killed by PID if it does not go in time."""
        self.hang_up()
        try:
            self.process.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class Simulation:
    """Every process of one size: HOSTS of the COUNT nodes spread over them each alone in a
    process with its view, as a daemon on a host of its own; the others in processes of
    NODES_PER_WORKER at most (contiguous slices, the NEWCOMERS dealt round), with a bare
    watch each, at a lower priority. Started at once, ready when all are."""

    def __init__(self, endpoint: str, count: int, newcomers: Sequence[int], ttl: int) -> None:
        self.workers: list[Worker] = []  # the packed nodes'
        self.hosts: list[Worker] = []
        hosts = sorted({h * count // HOSTS for h in range(min(HOSTS, count))})
        packed = [i for i in range(count) if i not in hosts]
        size = max(1, math.ceil(len(packed) / NODES_PER_WORKER))
        bounds = [len(packed) * w // size for w in range(size + 1)]
        base = {"endpoint": endpoint, "ttl": ttl}
        try:
            for w in range(size):
                self.workers.append(Worker(base | {
                    "nodes": packed[bounds[w]:bounds[w + 1]],
                    "newcomers": list(newcomers[w::size]), "views": [],
                    "nice": NODES_NICENESS}))
            self.hosts = [Worker(base | {"nodes": [h], "newcomers": [], "views": [h],
                                         "nice": 0}) for h in hosts]
            self.ask(self.everyone, "ready")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def everyone(self) -> list[Worker]:
        return [*self.workers, *self.hosts]

    @property
    def pids(self) -> list[int]:
        return [worker.pid for worker in self.everyone]

    def owner(self, index: int) -> Worker:
        return next(worker for worker in self.everyone if index in worker.nodes)

    @staticmethod
    def ask(workers: Sequence[Worker], op: str, **args: Any) -> list[Json]:
        """OP sent to every one of WORKERS first, then each one's answer (in parallel: they
        run at once). "ready": only the answer each sends when it has started."""
        if op != "ready":
            for worker in workers:
                worker.send(op, **args)
        return [worker.receive() for worker in workers]

    def close(self) -> None:
        """Every process hung up on first, so they stop their nodes at once."""
        for worker in self.everyone:
            worker.hang_up()
        for worker in self.everyone:
            worker.close()


def quantiles(values: Sequence[float]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": None, "p99": None, "max": None, "count": 0}
    return {"p50": ordered[len(ordered) // 2], "p99": ordered[min(len(ordered) - 1,
                                                                  int(0.99 * len(ordered)))],
            "max": ordered[-1], "count": len(ordered)}
