"""Podman 4.3 for tests, kept inside the test: its configuration (containers.conf through
CONTAINERS_CONF), storage (vfs under the test's directory), a local image made from
busybox-static (no registry), and the test's throwaway host namespace (inherited by podman,
conmon and runc from the pytest thread). Containers get only netbay's DNS server, never the
host's resolver.

Settings podman needs on these machines (notes/kernel-vm.md): runtime runc, cgroupfs,
file events, explicit ulimits. Outside the test's directory podman still uses /run/netns for
its namespaces (removed with the containers, and by the cleanup here when a test fails), and
its own IPAM database /run/containers/networks/ipam.db (netavark backend, rootful: not
configurable) or libcni's cache /var/lib/cni (CNI backend).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PODMAN = shutil.which("podman")
BUSYBOX = Path("/bin/busybox")
IMAGE = "localhost/nbbox:latest"
NETNS_DIR = Path("/run/netns")
CGROUPS = Path("/sys/fs/cgroup")
# with cgroup_manager cgroupfs podman makes <controller>/libpod_parent/{libpod-<id>,conmon}
# in every hierarchy and removes only a container's own cgroup
CGROUP_PARENT = "libpod_parent"


def missing() -> str | None:
    """Why podman cannot run here, or None."""
    if PODMAN is None:
        return "podman is not installed (apt-get install podman runc)"
    if shutil.which("runc") is None:
        return "runc is not installed (apt-get install runc)"
    if not BUSYBOX.exists():
        return "busybox-static is not installed (apt-get install busybox-static)"
    return None


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


class Podman:
    def __init__(
        self, tmp: Path, environ: Mapping[str, str], backend: str, helper_dir: Path,
        dns_servers: Sequence[str],
    ) -> None:
        self.tmp = tmp
        self.backend = backend
        self.conf_dir = tmp / "podman-networks"
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        storage = tmp / "podman-storage"
        (tmp / "podman-tmp").mkdir(exist_ok=True)
        (tmp / "podman-storage.conf").write_text(
            "[storage]\n"
            'driver = "vfs"\n'
            f'graphroot = "{storage}/graph"\n'
            f'runroot = "{storage}/run"\n'
        )
        network = [
            "[network]",
            f'network_backend = "{backend}"',
            f'network_config_dir = "{self.conf_dir}"',
        ]
        if backend == "cni":
            network.append(f"cni_plugin_dirs = {_toml_list([str(helper_dir), '/usr/lib/cni'])}")
        (tmp / "containers.conf").write_text("\n".join([
            "[containers]",
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]',
            f"dns_servers = {_toml_list(dns_servers)}",
            "[engine]",
            'runtime = "runc"',
            'cgroup_manager = "cgroupfs"',
            'events_logger = "file"',
            f'events_logfile_path = "{tmp}/podman-events.log"',
            f'tmp_dir = "{tmp}/podman-tmp"',
            f"helper_binaries_dir = {_toml_list([str(helper_dir), '/usr/lib/podman'])}",
            *network,
        ]) + "\n")
        self.environ = dict(environ)
        self.environ.update(
            CONTAINERS_CONF=str(tmp / "containers.conf"),
            CONTAINERS_STORAGE_CONF=str(tmp / "podman-storage.conf"),
        )
        self.netns_before = _netns_files()
        self.cgroups_before = _podman_cgroups()
        self.started: list[str] = []

    def run(self, *args: str, check: bool = True, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        assert PODMAN is not None
        result = subprocess.run([PODMAN, *args], env=self.environ, capture_output=True,
                                text=True, timeout=timeout, input=input)
        if check and result.returncode:
            raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}): "
                                 f"{result.stderr}{result.stdout}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args).stdout)

    def import_image(self) -> None:
        """busybox-static and its applet links, imported from a tar stream."""
        rootfs = self.tmp / "podman-rootfs"
        (rootfs / "bin").mkdir(parents=True, exist_ok=True)
        for d in ("etc", "proc", "sys", "dev", "tmp", "www", "root"):
            (rootfs / d).mkdir(exist_ok=True)
        shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
        applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for applet in applets:
            link = rootfs / "bin" / applet
            if applet != "busybox" and not link.exists():
                link.symlink_to("busybox")
        (rootfs / "www" / "index.html").write_text("hello from podman via netbay\n")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        assert PODMAN is not None
        imported = subprocess.run([PODMAN, "import", "-", IMAGE], stdin=tar.stdout,
                                  env=self.environ, capture_output=True, text=True, timeout=120)
        tar.wait()
        if imported.returncode:
            raise AssertionError(f"podman import failed: {imported.stderr}")

    def start(self, name: str, *args: str, command: Sequence[str] = ("sleep", "1000")) -> None:
        self.started.append(name)
        self.run("run", "-d", "--name", name, *args, IMAGE, *command)

    def exec(self, name: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("exec", name, *cmd, check=check)

    def sandbox_key(self, name: str) -> str:
        return str(self.json("inspect", name)[0]["NetworkSettings"]["SandboxKey"])

    def close(self) -> None:
        """Remove every container (podman tears its networks down through netbay), then
        whatever a failed test left: podman's namespaces made during the test, mounts."""
        with contextlib.suppress(Exception):
            self.run("rm", "-a", "-f", "-t", "0", check=False, timeout=180)
        with contextlib.suppress(Exception):
            self.run("network", "prune", "-f", check=False)
        for name in _netns_files() - self.netns_before:
            if name.startswith("netns-"):
                _unpin(NETNS_DIR / name)
        _remove_cgroups(_podman_cgroups() - self.cgroups_before)


def _podman_cgroups() -> set[Path]:
    """Every cgroup directory podman's parent holds, the parent included, in each hierarchy."""
    found: set[Path] = set()
    for parent in CGROUPS.glob(f"*/{CGROUP_PARENT}"):
        found.add(parent)
        found.update(p for p in parent.rglob("*") if p.is_dir())
    return found


def _remove_cgroups(made: set[Path]) -> None:
    """The cgroups made during the test, children first (a cgroup goes only when empty; one
    a process still holds stays and shows up in the machine's check)."""
    for path in sorted(made, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            path.rmdir()


def _netns_files() -> set[str]:
    return set(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else set()


def _unpin(path: Path) -> None:
    from netbay.kernel import netns

    with contextlib.suppress(Exception):
        netns.delete(path)
