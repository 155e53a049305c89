"""The first operation on a fresh host (issue 18): netbay's CNI plugin and netavark-compatible
executable exec'd with no netbayd running and an empty state root (the plugin starts the
daemon, the operation makes the network: bridge, nftables tables, DNS server), against the
reference CNI chain's and netavark's first operation on a host where neither ever ran; and
netbay's first operation with netbayd started before it (at boot, as `netbay daemon install`
sets it up), its state root empty. Each system gets a fresh namespace standing in for the host
in every round; the systems take turns round by round, so machine noise falls on all of them.
Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import peers  # noqa: E402
from netbay.install import install_cni, install_netavark  # noqa: E402
from netbay.kernel import netns  # noqa: E402
from sandbox import sandbox  # noqa: E402

PORT = [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]
SUBNET = IPv4Network("10.127.0.0/24")
CID = "f" * 64
IP = "10.127.0.5"
UP = ", netbayd up"  # the daemon started before (at boot, as `netbay daemon install` has it)
LABELS = ("netbay CNI ADD", "chain ADD", "netbay netavark setup", "netavark setup",
          f"netbay CNI ADD{UP}", f"netbay netavark setup{UP}")


def _cni_add(exe: Path, environ: dict[str, str], path: Path) -> None:
    """ADD with a configuration that defines its network: made by this first ADD."""
    conf = {"cniVersion": "1.0.0", "name": "first", "type": "netbay", "subnet": str(SUBNET),
            "runtimeConfig": {"portMappings": PORT}}
    env = {**environ, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": CID, "CNI_NETNS": str(path),
           "CNI_IFNAME": "eth0", "CNI_PATH": "/nonexistent"}
    out = subprocess.run([str(exe)], input=json.dumps(conf), env=env, capture_output=True,
                         text=True)
    if out.returncode:
        raise RuntimeError(f"netbay first ADD: {out.stdout} {out.stderr}")


def _stop_daemon(root: Path) -> None:
    """The netbayd the plugin started, by the PID it recorded; wait until it is gone."""
    pid_file = root / "netbayd.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _fresh(system: str) -> float:
    """Milliseconds of SYSTEM's first operation on a fresh host of its own."""
    from cni_netavark import Daemon, NetbayNetavark, timed

    with sandbox() as paths:
        work = paths.root.parent
        environ = {**os.environ, "NETBAY_ROOT": str(paths.root),
                   "NETBAY_SOCKET": str(paths.socket), "NETBAY_NETNS_DIR": str(paths.netns_dir)}
        container = work / "ns-first"
        netns.create(container)
        daemon = None
        try:
            if system.endswith(UP):  # serving already, its state root empty: start untimed
                daemon = Daemon(paths, environ)
                system = system.removesuffix(UP)
            if system == "netbay CNI ADD":
                exe = install_cni(work / "bin", socket=str(paths.socket),
                                  root=str(paths.root))[0]
                return timed(_cni_add, exe, environ, container)
            if system == "netbay netavark setup":
                exe = install_netavark(work / "bin", socket=str(paths.socket),
                                       root=str(paths.root))
                ours = NetbayNetavark(work, SUBNET, exe, environ)
                return timed(ours.setup, CID, IP, container, PORT)
            if system == "chain ADD":
                return timed(peers.CniChain(work, SUBNET).add, CID, container, PORT)
            return timed(peers.Netavark(work, SUBNET).setup, CID, IP, container, PORT)
        finally:
            if daemon is not None:
                daemon.stop()  # its parent: waits for it, so it leaves no zombie
            _stop_daemon(paths.root)
            netns.delete(container)


def run(rounds: int, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """'first': milliseconds of each system's first operation, one list per system (LABELS);
    'first_rounds'."""
    times: dict[str, list[float]] = {label: [] for label in LABELS}
    for i in range(rounds):
        progress(f"first operation: round {i + 1}/{rounds}")
        order = LABELS if i % 2 == 0 else tuple(reversed(LABELS))
        for label in order:
            times[label].append(_fresh(label))
    return {"first_rounds": rounds, "first": times}


def main() -> int:
    """`.venv/bin/python benchmarks/cold_start.py [--rounds N]`: every round's figures and
    the medians, with the load average before and after (the machine is shared)."""
    parser = argparse.ArgumentParser(description="the first operation from a cold daemon")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    before = os.getloadavg()
    result = run(args.rounds)
    after = os.getloadavg()
    for label, values in result["first"].items():
        rounds = " ".join(f"{v:.0f}" for v in values)
        print(f"{label:24} median {statistics.median(values):6.0f} ms   ({rounds})")
    print(f"load average before {before[0]:.2f}, after {after[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
