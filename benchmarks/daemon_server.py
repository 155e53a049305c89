"""netbayd as a server: /_ping latency over its unix socket, and the first `netbay network ls`
after boot with and without socket activation.

    .venv/bin/python benchmarks/daemon_server.py [--requests 500] [--boots 10]

Ping: one connection per request, as the CLI and the runtime executables do (`Connection:
close`), and many requests on one kept-alive connection, as the docker client does.

First call: a cold daemon (a fresh sandbox and state root each boot), then one
`netbay network ls`, timed from its start to its exit:
- autostart: no unit; the CLI finds no socket and starts netbayd itself;
- activation: netbayd.socket; a launcher holds the listening socket and, at the first
  connection, starts netbayd with it as fd 3 (LISTEN_FDS=1), as systemd would; the command
  connects at once and its request waits in the backlog while the daemon starts;
- running: netbayd.service started at boot, so the daemon already serves (a warm call).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netbay.client import Client  # noqa: E402
from netbay.paths import Paths  # noqa: E402
from netbay.thin import json_obj  # noqa: E402
from sandbox import median, p, sandbox  # noqa: E402

PING = b"GET /_ping HTTP/1.1\r\nHost: netbay\r\nConnection: close\r\n\r\n"
LAUNCHER = Path(__file__).resolve().parent.parent / "tests" / "socket_activation.py"
MODES = ("autostart", "activation", "running")


def ping_per_connection(socket_path: Path) -> float:
    started = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(socket_path))
        sock.sendall(PING)
        while sock.recv(65536):
            pass
    return time.perf_counter() - started


def ping_latencies(paths: Paths, requests: int) -> dict[str, dict[str, float]]:
    for _ in range(50):  # warm-up: the daemon's first requests import and allocate
        ping_per_connection(paths.socket)
    fresh = [ping_per_connection(paths.socket) for _ in range(requests)]
    conn = http.client.HTTPConnection("netbay")
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.connect(str(paths.socket))
    kept = []
    for _ in range(requests):
        started = time.perf_counter()
        conn.request("GET", "/_ping")
        conn.getresponse().read()
        kept.append(time.perf_counter() - started)
    conn.close()
    return {
        name: {"median_us": median(values) * 1e6, "p99_us": p(values, 0.99) * 1e6}
        for name, values in (("connection_per_request", fresh), ("keep_alive", kept))
    }


def largest_bodies() -> dict[str, int]:
    """Bytes of the largest bodies the runtimes' executables send, built as they build them
    (the server's body limit is set from these)."""
    nets = [f"net{i}" for i in range(17)]
    options = {
        "container_id": "4f" * 32, "container_name": "web",
        "port_mappings": [{"host_ip": "", "container_port": 10000 + i, "host_port": 20000 + i,
                           "range": 1, "protocol": "tcp"} for i in range(1000)],
        "networks": {name: {"static_ips": [f"10.89.{i}.2"], "aliases": ["web"],
                            "interface_name": f"eth{i}"} for i, name in enumerate(nets)},
        "network_info": {name: {
            "name": name, "id": "97" * 32, "driver": "bridge", "network_interface": f"podman{i}",
            "created": "2026-11-27T22:14:10.827568241Z", "ipv6_enabled": False,
            "subnets": [{"subnet": f"10.89.{i}.0/24", "gateway": f"10.89.{i}.1"}],
            "internal": False, "dns_enabled": True, "ipam_options": {"driver": "host-local"},
        } for i, name in enumerate(nets)},
    }
    netavark = json_obj({"netns": "/run/netns/netns-" + "0" * 36,
                         "config": "/run/containers/networks",
                         "input": json.dumps(options).encode()})
    gc = {"cniVersion": "1.1.0", "name": "k8s-pod-network", "plugins": [{"type": "netbay"}],
          "cni.dev/valid-attachments": [{"containerID": f"{i:064x}", "ifname": "eth0"}
                                        for i in range(10_000)]}
    cni = json_obj({"kind": "plugin", "env": {"CNI_COMMAND": "GC", "CNI_PATH": "/opt/cni/bin"},
                    "config": json.dumps(gc).encode()})
    return {"netavark_setup_1000_ports_17_networks": len(netavark),
            "cni_gc_10000_attachments": len(cni)}


def environ(paths: Paths) -> dict[str, str]:
    return dict(os.environ, NETBAY_ROOT=str(paths.root), NETBAY_SOCKET=str(paths.socket),
                NETBAY_NETNS_DIR=str(paths.netns_dir))


def first_call(paths: Paths, mode: str) -> float:
    """Seconds from the start of `netbay network ls` to its exit, after a boot in MODE."""
    env = environ(paths)
    launcher = None
    if mode == "activation":
        launcher = subprocess.Popen(
            [sys.executable, str(LAUNCHER), str(paths.socket), "--",
             sys.executable, "-m", "netbay.daemon", "--root", str(paths.root)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        assert launcher.stdout is not None and launcher.stdout.readline() == "listening\n"
        launcher.stdout.close()
    elif mode == "running":
        Client(paths).get("/_ping")  # started at boot
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "netbay", "network", "ls"], env=env, check=True,
                   capture_output=True)
    elapsed = time.perf_counter() - started
    stop_daemon(paths)
    if launcher is not None:
        launcher.wait(timeout=30)
    return elapsed


def stop_daemon(paths: Paths) -> None:
    pid_file = paths.root / "netbayd.pid"
    deadline = time.monotonic() + 15
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    pid = int(pid_file.read_text())
    os.kill(pid, 15)
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)


def first_calls(boots: int) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(boots):
        for mode in MODES:  # interleaved, so the machine's load falls on all alike
            with sandbox() as paths:
                times[mode].append(first_call(paths, mode))
    return {mode: {"median_ms": median(values) * 1e3, "max_ms": max(values) * 1e3}
            for mode, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--boots", type=int, default=0,
                        help="cold starts for the first-call comparison (0: skip it)")
    args = parser.parse_args()
    result: dict[str, object] = {"largest_bodies": largest_bodies()}
    with sandbox() as paths:
        Client(paths).get("/_ping")  # starts netbayd in the sandbox
        result["ping"] = ping_latencies(paths, args.requests)
        stop_daemon(paths)
    if args.boots:
        result["first_network_ls"] = first_calls(args.boots)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
