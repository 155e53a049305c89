"""What the figures were measured on: the machine, and the version of every peer and tool.

Versions come from the Debian package database (how the peers are installed, by
scripts/install.sh --bench) and, where a program reports one, from the program itself.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import netbay

# what the page lists: label -> (Debian package, program asked for --version or None)
PEERS = {
    "CNI reference plugins": ("containernetworking-plugins", None),
    "netavark": ("netavark", "/usr/lib/podman/netavark"),
    "aardvark-dns": ("aardvark-dns", "/usr/lib/podman/aardvark-dns"),
    "iptables (the peers' firewall)": ("iptables", "iptables"),
    "nftables (netbay's firewall)": ("nftables", "nft"),
    "iperf3": ("iperf3", "iperf3"),
    "dnsperf": ("dnsperf", None),
}


def _first_line(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None and not os.access(argv[0], os.X_OK):
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def package_version(package: str) -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Status}\t${Version}", package],
                             capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    status, _, version = out.stdout.partition("\t")
    return version if out.returncode == 0 and "ok installed" in status else None


def versions() -> dict[str, str | None]:
    """Label -> "package version (program's own line)", or None when not installed."""
    out: dict[str, str | None] = {"netbay": netbay.__version__}
    for label, (package, program) in PEERS.items():
        version = package_version(package)
        if version is None:
            out[label] = None
            continue
        own = _first_line([program, "--version"]) if program else None
        out[label] = f"{package} {version}" + (f" ({own})" if own else "")
    return out


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    debian = Path("/etc/debian_version")
    return {
        "CPU": f"{os.cpu_count()} x {cpu}",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "OS": f"Debian {debian.read_text().strip()}" if debian.exists() else platform.platform(),
        "Python": platform.python_version(),
    }
