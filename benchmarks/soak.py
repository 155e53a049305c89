"""A bounded soak of netbayd (issue 13): K concurrent clients run N container cycles against a
daemon in a throwaway namespace (sandbox.py), and what it holds is counted before, during and
after. Not a test. As root:

    .venv/bin/python benchmarks/soak.py [--cycles N] [--clients K] [--rounds R] [--quick]
                                        [--json FILE]

A cycle: `netbay run -d --name sG --network soak -p PORT:80 -- sleep inf` (create, start);
every third cycle a connect to soak-side and a disconnect; every tenth the network soak-kK
created, connected, disconnected and removed; then `netbay rm -f`. PORT is the client's own,
reused every cycle: a mapping not released would refuse the next one. The clients speak the
HTTP API through netbay's stdlib client (a connection per request, as the CLI does).

Start: both networks made, the DNS server serving, no container. After each round the counts
(RESOURCES) must be back there (ALLOWED: what may stay), waited for, bounded: the kernel frees
a deleted namespace in the background. RSS is stated; round 2 tells a leak from warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from cni_netavark import Daemon  # noqa: E402
from netbay import Paths  # noqa: E402
from netbay.client import Client, path_of  # noqa: E402
from netbay.errors import NetbayError  # noqa: E402
from netbay.kernel import netns  # noqa: E402
from netbay.kernel.rtnetlink import Rtnetlink  # noqa: E402
from netbay.plan.firewall import TABLE  # noqa: E402
from netbay.store.sqlite import SQLiteStore  # noqa: E402
from sandbox import p, sandbox, sh  # noqa: E402

# what must come back to its start value after every round
RESOURCES = {
    "daemon_fds": "netbayd fds", "daemon_threads": "netbayd threads",
    "daemon_children": "netbayd child processes", "dns_fds": "DNS server fds",
    "dns_threads": "DNS server threads", "leases": "leases (endpoint records)",
    "containers": "container records", "networks": "network records",
    "nft_elements": "nft elements (sets, maps)", "nft_rules": "nft rules",
    "links": "links (sandbox namespace)", "veths": "veths (sandbox namespace)",
    "addresses": "addresses (sandbox namespace)", "routes": "routes (sandbox namespace)",
    "netns_pins": "netns pins", "netns_mounts": "netns mounts",
    "container_dirs": "container directories",
}
# what may stay above its start value, and why (nothing now: the API server retires idle
# worker threads after 10 s, daemon/workers.py, so settling waits for that)
ALLOWED: dict[str, str] = {}
# what may end below its start value: a worker thread serving the start sample's requests
# may have retired by the end
MAY_SHRINK = frozenset({"daemon_threads"})
MEMORY = {"daemon_rss_mb": "netbayd RSS MB", "daemon_hwm_mb": "netbayd VmHWM MB",
          "dns_rss_mb": "DNS server RSS MB", "dns_hwm_mb": "DNS server VmHWM MB"}
OPERATIONS = ("create", "start", "connect", "disconnect", "network create", "network remove",
              "remove")
PORT_BASE = 18000  # client K publishes PORT_BASE + K
SIDE_EVERY, CHURN_EVERY = 3, 10
MAX_ERRORS = 20  # a daemon that fails this often is broken: stop and say so
LIGHT_INTERVAL = 0.5  # seconds between the cheap samples (/proc of both processes)
SETTLE_TIMEOUT = 120.0


# --- counting ----------------------------------------------------------------------------
def process_figures(pid: int | None, prefix: str) -> dict[str, float]:
    """fds, threads, RSS and VmHWM (MB) of PID; zeros when there is none."""
    try:
        if pid is None:
            raise FileNotFoundError
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return {f"{prefix}_{key}": 0 for key in ("fds", "threads", "rss_mb", "hwm_mb")}
    status = dict(line.split(":", 1) for line in lines)
    return {f"{prefix}_fds": fds, f"{prefix}_threads": int(status["Threads"]),
            f"{prefix}_rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 2),
            f"{prefix}_hwm_mb": round(int(status["VmHWM"].split()[0]) / 1024, 2)}


def children(pid: int) -> list[int]:
    """PID's child processes (zombies included: not yet reaped is not yet released)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text() if proc.name.isdigit() else ""
        except OSError:
            continue
        if stat and int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            found.append(int(proc.name))
    return found


def nft_figures(ruleset: dict[str, Any]) -> dict[str, float]:
    """Elements of netbay's sets and maps, and its rules, in `nft -j list ruleset`."""
    elements = rules = 0
    for item in ruleset.get("nftables", []):
        for kind in ("set", "map"):
            if item.get(kind, {}).get("table") == TABLE:
                elements += len(item[kind].get("elem", []))
        rules += item.get("rule", {}).get("table") == TABLE
    return {"nft_elements": elements, "nft_rules": rules}


def entries(directory: Path) -> int:
    return len(os.listdir(directory)) if directory.is_dir() else 0


class Probe:
    """Counts what the daemon in the sandbox holds. light(): the two processes (cheap, often);
    full(): everything in RESOURCES and MEMORY."""

    def __init__(self, paths: Paths, hostns: Path, daemon_pid: int) -> None:
        self.paths, self.hostns, self.daemon_pid = paths, hostns, daemon_pid
        self.store = SQLiteStore(paths.db, read_only=True)

    def dns_pid(self) -> int | None:
        pid_file = self.paths.root / "netbay-dns.pid"  # the supervisor's (dns/supervisor.py)
        text = pid_file.read_text().strip() if pid_file.exists() else ""
        return int(text) if text.isdigit() else None

    def light(self) -> dict[str, float]:
        return {**process_figures(self.daemon_pid, "daemon"),
                **process_figures(self.dns_pid(), "dns")}

    def full(self) -> dict[str, float]:
        figures = self.light()
        figures["daemon_children"] = len(set(children(self.daemon_pid)) - {self.dns_pid()})
        figures["leases"] = len(self.store.endpoints())
        figures["containers"] = len(self.store.containers())
        figures["networks"] = len(self.store.networks())
        with netns.entered(self.hostns):
            figures |= nft_figures(json.loads(sh("nft -j list ruleset")))
        with Rtnetlink(self.hostns) as nl:
            links, addresses, routes = nl.links(), nl.addresses(), nl.routes()
        figures["links"] = len(links)
        figures["veths"] = sum(link.kind == "veth" for link in links)
        figures["addresses"], figures["routes"] = len(addresses), len(routes)
        figures["netns_pins"] = entries(self.paths.netns_dir)
        prefix = f" {self.paths.netns_dir}/"
        mounts = Path(f"/proc/{self.daemon_pid}/mountinfo").read_text().splitlines()
        figures["netns_mounts"] = sum(prefix in line for line in mounts)
        figures["container_dirs"] = entries(self.paths.containers)
        return figures

    def close(self) -> None:
        self.store.close()


# --- the load ----------------------------------------------------------------------------
class Soak:
    """K client threads taking cycles from one counter; every operation's latency kept."""

    def __init__(self, paths: Paths, clients: int) -> None:
        self.api = Client(paths, autostart=False)
        self.clients = clients
        self.latency: dict[str, list[float]] = {op: [] for op in OPERATIONS}
        self.errors: list[str] = []
        self.done = 0  # cycles finished, failed ones included
        self._lock = threading.Lock()
        self._next = self._end = 0

    def timed(self, op: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = call(*args, **kwargs)
        self.latency[op].append((time.perf_counter() - start) * 1000)
        return result

    def attach_detach(self, cid: str, network: str) -> None:
        self.timed("connect", self.api.post, path_of("networks", network, "connect"),
                   {"Container": cid})
        self.timed("disconnect", self.api.post, path_of("networks", network, "disconnect"),
                   {"Container": cid})

    def churn(self, k: int, cid: str) -> None:
        name = f"soak-k{k}"
        self.timed("network create", self.api.post, "/networks/create",
                   {"Name": name, "IPAM": {"Config": [{"Subnet": f"10.152.{k}.0/24"}]}})
        try:
            self.attach_detach(cid, name)
        finally:
            self.timed("network remove", self.api.delete, path_of("networks", name))

    def cycle(self, k: int, g: int) -> None:
        body = {"Name": f"s{g}", "Cmd": ["sleep", "inf"], "Networks": [{"Network": "soak"}],
                "Publish": [f"{PORT_BASE + k}:80"]}
        cid = self.timed("create", self.api.post, "/containers/create", body)["Id"]
        try:
            self.timed("start", self.api.post, path_of("containers", cid, "start"))
            if g % SIDE_EVERY == 1:
                self.attach_detach(cid, "soak-side")
            if g % CHURN_EVERY == CHURN_EVERY - 1:
                self.churn(k, cid)
        finally:
            self.timed("remove", self.api.delete, path_of("containers", cid), force=1)

    def take(self) -> int | None:
        with self._lock:
            if self._next >= self._end or len(self.errors) >= MAX_ERRORS:
                return None
            self._next += 1
            return self._next - 1

    def worker(self, k: int) -> None:
        while (g := self.take()) is not None:
            try:
                self.cycle(k, g)
            except (NetbayError, OSError) as exc:
                self.errors.append(f"cycle {g}: {type(exc).__name__}: {exc}")
            finally:
                with self._lock:
                    self.done += 1

    def round(self, cycles: int) -> float:
        """Run CYCLES more cycles; the seconds they took."""
        self._end += cycles
        threads = [threading.Thread(target=self.worker, args=(k,), name=f"soak-client-{k}")
                   for k in range(self.clients)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.monotonic() - start


class Sampler(threading.Thread):
    """The two processes every LIGHT_INTERVAL, everything every EVERY cycles."""

    def __init__(self, probe: Probe, soak: Soak, every: int) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.probe, self.soak, self.every = probe, soak, every
        self.light: list[dict[str, float]] = []
        self.checkpoints: list[dict[str, float]] = []
        self._finished = threading.Event()

    def run(self) -> None:
        mark = self.every
        while not self._finished.wait(LIGHT_INTERVAL):
            done = self.soak.done
            self.light.append({"cycles": done, **self.probe.light()})
            if done >= mark:
                self.checkpoints.append({"cycles": done, **self.probe.full()})
                mark = (done // self.every + 1) * self.every

    def stop(self) -> None:
        self._finished.set()
        self.join()


def back(start: dict[str, float], now: dict[str, float], clients: int) -> dict[str, bool]:
    """Each resource: at its start value, or above it by no more than ALLOWED lets it."""
    return {key: (-now[key] if key in MAY_SHRINK else 0) <= now[key] - start[key]
            <= (clients if key in ALLOWED else 0) for key in RESOURCES}


def settle(probe: Probe, start: dict[str, float], clients: int) -> tuple[dict[str, float], float]:
    """Counts once they are back (the kernel frees namespaces in the background), or as they
    are at SETTLE_TIMEOUT; and the seconds waited."""
    began = time.monotonic()
    while True:
        now = probe.full()
        waited = time.monotonic() - began
        if all(back(start, now, clients).values()) or waited > SETTLE_TIMEOUT:
            return now, waited
        time.sleep(0.2)


def wait_for_dns(probe: Probe) -> None:
    """The DNS server starts in the background with the first bridge network."""
    deadline = time.monotonic() + 30
    while not probe.light()["dns_fds"]:
        if time.monotonic() > deadline:
            raise RuntimeError("the DNS server did not start within 30 s")
        time.sleep(0.05)


# --- a run -------------------------------------------------------------------------------
def latency_summary(latency: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {op: {"count": len(v), **{f"p{q}": p(v, q / 100) for q in (50, 90, 99)},
                 "max": max(v)} for op, v in latency.items() if v}


def soak_rounds(probe: Probe, soak: Soak, cycles: int, rounds: int,
                progress: Callable[[str], None]) -> dict[str, Any]:
    start = probe.full()
    sampler = Sampler(probe, soak, every=max(1, cycles // 10))
    sampler.light.append({"cycles": 0, **start})  # the plot's first and each round's last point
    sampler.start()
    ends: list[dict[str, Any]] = []
    try:
        for number in range(1, rounds + 1):
            progress(f"soak: round {number}/{rounds}, {cycles} cycles, {soak.clients} clients")
            seconds = soak.round(cycles)
            end, waited = settle(probe, start, soak.clients)
            sampler.light.append({"cycles": soak.done, **end})
            ends.append({"cycles": cycles, "seconds": seconds, "rate": cycles / seconds,
                         "settle_s": waited, "end": end})
            progress(f"soak: {cycles / seconds:.1f} cycles/s; settled in {waited:.1f} s")
    finally:
        sampler.stop()
    seen = [*sampler.light, *sampler.checkpoints]
    highest = {key: max(s[key] for s in seen if key in s) for key in (*RESOURCES, *MEMORY)}
    plotted = ("cycles", "daemon_fds", "daemon_threads", "daemon_rss_mb", "dns_fds", "dns_rss_mb")
    return {"start": start, "rounds": ends, "peak": highest,
            "samples": [{k: s[k] for k in plotted} for s in sampler.light],
            "checkpoints": sampler.checkpoints}


def returned(data: dict[str, Any]) -> dict[str, bool]:
    """Each resource: back after every round."""
    verdicts = [back(data["start"], r["end"], data["clients"]) for r in data["rounds"]]
    return {key: all(v[key] for v in verdicts) for key in RESOURCES}


def run(cycles: int, clients: int, rounds: int = 2,
        progress: Callable[[str], None] = print) -> dict[str, Any]:
    """The soak's figures: start, peak and each round's end of every resource, throughput,
    latency percentiles per operation, and any operation that failed."""
    with sandbox() as paths:
        environ = {**os.environ, "NETBAY_ROOT": str(paths.root),
                   "NETBAY_SOCKET": str(paths.socket), "NETBAY_NETNS_DIR": str(paths.netns_dir)}
        daemon = Daemon(paths, environ)
        try:
            soak = Soak(paths, clients)
            for name, subnet in (("soak", "10.150.0.0/16"), ("soak-side", "10.151.0.0/16")):
                soak.api.post("/networks/create",
                              {"Name": name, "IPAM": {"Config": [{"Subnet": subnet}]}})
            probe = Probe(paths, paths.root.parent / "hostns", daemon.proc.pid)
            try:
                wait_for_dns(probe)
                data = soak_rounds(probe, soak, cycles, rounds, progress)
            finally:
                probe.close()
        finally:
            daemon.stop()
    total = sum(r["seconds"] for r in data["rounds"])
    data |= {"cycles": cycles, "clients": clients, "rate": cycles * len(data["rounds"]) / total,
             "latency_ms": latency_summary(soak.latency), "errors": soak.errors}
    return data | {"returned": returned(data)}


def verdict(data: dict[str, Any], key: str) -> str:
    """In words: returned, returned but some kept within ALLOWED (how many, why), or not."""
    if not data["returned"][key]:
        return "NOT RETURNED"
    kept = max(r["end"][key] for r in data["rounds"]) - data["start"][key]
    return f"returned, +{kept} kept: {ALLOWED[key]}" if kept > 0 else "returned"


# --- the command -------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description="bounded soak of netbayd: resources return")
    parser.add_argument("--cycles", type=int, default=5000, help="cycles per round")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of CYCLES (the second tells a leak from warm-up)")
    parser.add_argument("--quick", action="store_true", help="500 cycles a round")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the soak needs root (it makes network namespaces)", file=sys.stderr)
        return 2
    data = run(500 if args.quick else args.cycles, args.clients, args.rounds)
    import soak_page  # the page's tables, here in the terminal

    print(soak_page.text(data))
    if args.json:
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    return 0 if all(data["returned"].values()) and not data["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
