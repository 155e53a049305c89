"""Start-up cost of the runtime-facing executables, side by side with the peers (issue 6).
Not a test. Run as root:

    .venv/bin/python benchmarks/cni_netavark.py [--runs N]

1. CNI ADD and DEL of a bridge attachment with one port mapping: netbay's plugin (exec'd as
   libcni does, the daemon already running; an existing network) vs the reference chain
   bridge + host-local + portmap + firewall (benchmarks/peers.py). Targets: ADD >= 3x
   faster, DEL >= 5x faster.
2. netavark setup and teardown of one container with one port mapping, static IP as podman
   passes it: netbay's netavark-compatible executable vs netavark 1.4. Target: >= 2x.
3. Start-up alone: the interpreter (`python -I -S`), the installed plugin answering VERSION
   (start-up plus its own work, no daemon), and a STATUS round trip to the daemon.
4. The first operation on a fresh host, from a cold daemon (benchmarks/cold_start.py): CNI
   ADD and netavark setup with no netbayd running and an empty state root, against the
   chain's and netavark's first operation; up to 5 rounds, medians. Target: no slower.

Each side has one other container attached throughout (its bridge, chains and DNS server in
steady state, not made and removed with the measured one); netbay and the peer alternate
iteration by iteration, so machine noise falls on both. Everything runs in a throwaway
namespace (sandbox.py), state in its temp directory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import cold_start  # noqa: E402
import peers  # noqa: E402
from netbay import Paths  # noqa: E402
from netbay.client import Client  # noqa: E402
from netbay.ids import new_id  # noqa: E402
from netbay.install import install_cni, install_netavark  # noqa: E402
from netbay.kernel import netns  # noqa: E402
from sandbox import median, p, sandbox  # noqa: E402

PORT = [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]
ADD_TARGET, DEL_TARGET, NETAVARK_TARGET = 3.0, 5.0, 2.0
FIRST_PAIRS = (("first CNI ADD, cold daemon", "netbay CNI ADD", "chain ADD"),
               ("first netavark setup, cold daemon", "netbay netavark setup", "netavark setup"))


def timed(call: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    start = time.perf_counter()
    call(*args, **kwargs)
    return (time.perf_counter() - start) * 1000


class NetbayCni:
    def __init__(self, exe: Path, environ: dict[str, str]) -> None:
        self.exe = exe
        self.environ = environ

    def _run(self, command: str, cid: str, netns_path: Path, ports: list[dict[str, Any]]) -> Any:
        conf = {"cniVersion": "1.0.0", "name": "bench", "type": "netbay", "network": "bench",
                "runtimeConfig": {"portMappings": ports}}
        env = {**self.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": cid,
               "CNI_NETNS": str(netns_path), "CNI_IFNAME": "eth0", "CNI_PATH": "/nonexistent"}
        out = subprocess.run([str(self.exe)], input=json.dumps(conf), env=env,
                             capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"netbay {command}: {out.stdout} {out.stderr}")
        return json.loads(out.stdout) if out.stdout.strip() else None

    def add(self, cid: str, netns_path: Path, ports: list[dict[str, Any]]) -> Any:
        return self._run("ADD", cid, netns_path, ports)

    def delete(self, cid: str, netns_path: Path, ports: list[dict[str, Any]]) -> None:
        self._run("DEL", cid, netns_path, ports)


class NetbayNetavark(peers.Netavark):
    """The same input peers.Netavark gives netavark, to netbay's executable (its network
    named nvbench: "bench" is the CNI side's netbay network)."""

    def __init__(self, workdir: Path, subnet: IPv4Network, exe: Path, environ: dict[str, str]):
        super().__init__(workdir, subnet, bridge="nbnv0")
        self.exe = exe
        self.environ = environ

    def _run(self, verb: str, cid: str, ip: str, netns_path: Path,
             ports: list[dict[str, Any]]) -> None:
        options = json.loads(self._input(cid, ip, ports))
        options["networks"] = {"nvbench": options["networks"].pop("bench")}
        info = options["network_info"].pop("bench")
        options["network_info"] = {"nvbench": {**info, "name": "nvbench", "id": "n" * 64}}
        out = subprocess.run(
            [str(self.exe), "--config", str(self.config), "--rootless=false", verb,
             str(netns_path)],
            input=json.dumps(options), capture_output=True, text=True, env=self.environ,
        )
        if out.returncode:
            raise RuntimeError(f"netbay netavark {verb}: {out.stdout} {out.stderr}")


def startup(exe: Path, environ: dict[str, str], runs: int) -> dict[str, list[float]]:
    python = exe.read_text().splitlines()[0][2:].split()[0]
    status = json.dumps({"cniVersion": "1.1.0", "name": "bench", "type": "netbay",
                         "network": "bench"}).encode()
    version_env = {**environ, "CNI_COMMAND": "VERSION"}
    status_env = {**environ, "CNI_COMMAND": "STATUS", "CNI_PATH": "/nonexistent"}
    out: dict[str, list[float]] = {"python -I -S -c pass": [], "plugin VERSION (no daemon)": [],
                                   "plugin STATUS (daemon round trip)": []}
    for _ in range(runs):
        out["python -I -S -c pass"].append(
            timed(subprocess.run, [python, "-I", "-S", "-c", "pass"]))
        out["plugin VERSION (no daemon)"].append(timed(
            subprocess.run, [str(exe)], input=b'{"cniVersion":"1.1.0"}', capture_output=True,
            env=version_env))
        out["plugin STATUS (daemon round trip)"].append(timed(
            subprocess.run, [str(exe)], input=status, capture_output=True, env=status_env))
    return out


class Daemon:
    """A netbayd of the benchmark's own, started in the calling thread's namespace, with
    ENVIRON (its state root, socket and netns directory); stopped by its PID."""

    def __init__(self, paths: Paths, environ: dict[str, str]) -> None:
        paths.root.mkdir(parents=True, exist_ok=True)
        with open(paths.root / "netbayd.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "netbay.daemon", "--root", str(paths.root),
                 "--socket", str(paths.socket)],
                env=environ, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.client = Client(paths)
        deadline = time.monotonic() + 30
        while not self.client.ping():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"netbayd did not start; see {paths.root / 'netbayd.log'}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Bench:
    def __init__(self, work: Path, environ: dict[str, str], exe: Path, nv_exe: Path) -> None:
        self.work = work
        self.cni = NetbayCni(exe, environ)
        self.chain = peers.CniChain(work, IPv4Network("10.124.0.0/16"))
        self.ours_nv = NetbayNetavark(work, IPv4Network("10.125.0.0/16"), nv_exe, environ)
        self.theirs_nv = peers.Netavark(work, IPv4Network("10.126.0.0/16"))
        self.times: dict[str, list[float]] = {k: [] for k in (
            "netbay ADD", "chain ADD", "netbay DEL", "chain DEL",
            "netbay setup", "netavark setup", "netbay teardown", "netavark teardown")}

    def netns(self, name: str) -> Path:
        path = self.work / f"ns-{name}"
        netns.create(path)
        return path

    def anchors(self, attach: bool) -> None:
        """One other container on each side, attached throughout."""
        if attach:
            self.anchor_ns = {n: self.netns(f"anchor-{n}") for n in ("nb", "ch", "onv", "tnv")}
            self.cni.add("anchor-nb", self.anchor_ns["nb"], [])
            self.anchor_result = self.chain.add("anchor-ch", self.anchor_ns["ch"], [])
            self.ours_nv.setup("o" * 64, "10.125.0.200", self.anchor_ns["onv"], [])
            self.theirs_nv.setup("t" * 64, "10.126.0.200", self.anchor_ns["tnv"], [])
            return
        self.cni.delete("anchor-nb", self.anchor_ns["nb"], [])
        self.chain.delete("anchor-ch", self.anchor_ns["ch"], self.anchor_result, [])
        self.ours_nv.teardown("o" * 64, "10.125.0.200", self.anchor_ns["onv"], [])
        self.theirs_nv.teardown("t" * 64, "10.126.0.200", self.anchor_ns["tnv"], [])
        for path in self.anchor_ns.values():
            netns.delete(path)

    def once(self, i: int) -> None:
        t = self.times
        path = self.netns(f"c{i}")
        cid = new_id()[:32]
        t["netbay ADD"].append(timed(self.cni.add, cid, path, PORT))
        t["netbay DEL"].append(timed(self.cni.delete, cid, path, PORT))
        start = time.perf_counter()
        result = self.chain.add(cid, path, PORT)
        t["chain ADD"].append((time.perf_counter() - start) * 1000)
        t["chain DEL"].append(timed(self.chain.delete, cid, path, result, PORT))
        ip = f"10.125.1.{i % 250 + 1}"
        t["netbay setup"].append(timed(self.ours_nv.setup, cid, ip, path, PORT))
        t["netbay teardown"].append(timed(self.ours_nv.teardown, cid, ip, path, PORT))
        ip = f"10.126.1.{i % 250 + 1}"
        t["netavark setup"].append(timed(self.theirs_nv.setup, cid, ip, path, PORT))
        t["netavark teardown"].append(timed(self.theirs_nv.teardown, cid, ip, path, PORT))
        netns.delete(path)


def row(label: str, values: list[float]) -> str:
    return f"  {label:<44} median {median(values):7.1f} ms   p90 {p(values, 0.9):7.1f} ms"


def compare(label: str, ours: list[float], theirs: list[float], target: float) -> str:
    ratio = median(theirs) / median(ours)
    verdict = "ok" if ratio >= target else "MISSED"
    return f"  {label:<44} {ratio:5.1f}x faster (target >= {target:.0f}x: {verdict})"


def report(runs: int, times: dict[str, list[float]], start: dict[str, list[float]],
           first: dict[str, list[float]]) -> None:
    print(f"CNI and netavark start-up cost, {runs} runs each, interleaved "
          "(one port mapping, one other container attached)")
    for label, values in {**times, **start}.items():
        print(row(label, values))
    print("ratios (peer median / netbay median):")
    for label, ours, theirs, target in (
        ("CNI ADD vs bridge+host-local+portmap+firewall", "netbay ADD", "chain ADD", ADD_TARGET),
        ("CNI DEL vs bridge+host-local+portmap+firewall", "netbay DEL", "chain DEL", DEL_TARGET),
        ("setup vs netavark 1.4", "netbay setup", "netavark setup", NETAVARK_TARGET),
        ("teardown vs netavark 1.4", "netbay teardown", "netavark teardown", NETAVARK_TARGET),
    ):
        print(compare(label, times[ours], times[theirs], target))
    print("first operation on a fresh host (netbayd not running):")
    for label, values in first.items():
        print(row(label, values))
    for label, ours, theirs in FIRST_PAIRS:
        print(compare(label, first[ours], first[theirs], 1.0))


def run(runs: int, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Milliseconds per call: 'times' (ADD/DEL/setup/teardown, netbay's and the peers',
    interleaved), 'startup' (interpreter, VERSION, STATUS) and 'first' (each system's first
    operation on a fresh host, netbayd not running)."""
    for kind in ("cni", "netavark"):
        if (why := peers.available(kind)) is not None:
            raise RuntimeError(f"peer {kind} not installed: {why}")
    first = cold_start.run(min(runs, 5), progress)
    with sandbox() as paths:
        work = paths.root.parent
        environ = {**os.environ, "NETBAY_ROOT": str(paths.root),
                   "NETBAY_SOCKET": str(paths.socket), "NETBAY_NETNS_DIR": str(paths.netns_dir)}
        exe = install_cni(work / "bin", socket=str(paths.socket), root=str(paths.root))[0]
        nv_exe = install_netavark(work / "bin", socket=str(paths.socket), root=str(paths.root))
        daemon = Daemon(paths, environ)
        try:
            daemon.client.post("/networks/create", {"Name": "bench", "IPAM": {"Config": [
                {"Subnet": "10.123.0.0/16"}]}})
            bench = Bench(work, environ, exe, nv_exe)
            bench.anchors(attach=True)
            for i in range(runs):
                if i % 10 == 0:
                    progress(f"cni/netavark: iteration {i + 1}/{runs}")
                bench.once(i)
            start = startup(exe, environ, runs)
            bench.anchors(attach=False)
        finally:
            daemon.stop()
    return {"runs": runs, "times": bench.times, "startup": start, **first}


def main() -> int:
    parser = argparse.ArgumentParser(description="CNI and netavark start-up cost vs peers")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    for kind in ("cni", "netavark"):
        if (why := peers.available(kind)) is not None:
            print(f"peer {kind} unavailable: {why}")
            return 2
    result = run(args.runs)
    report(args.runs, result["times"], result["startup"], result["first"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
