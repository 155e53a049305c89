"""The real Docker engine and containerd for end-to-end tests, each on a host of its own.

    with DockerHost("d1", tmp / "d1") as host:      # sandbox, netbayd, containerd, dockerd
        host.docker("network", "create", "-d", "netbay", "--ipam-driver", "netbay", "n1")
        host.docker("run", "--rm", "--network", "n1", IMAGE, "true")
        host.ctr("run", "--rm", "--cni", IMAGE, "c1", "true")

A DockerHost is a cluster host (tests/cluster.py ClusterHost: a HostSandbox with its own
netbayd), so `Cluster(hosts=2, host_type=DockerHost)` gives two Docker hosts of one netbay
cluster. Inside it, what the runtimes write stays in the sandbox:
- /run (tmpfs: sockets, dockerd's data-root and exec-root, containerd's root and state),
  /etc as an overlay on a tmpfs (dockerd writes /etc/docker/key.json; /etc/cni/net.d holds
  only the conflists of the test), /opt and /var/lib/cni (ctr runs the CNI plugins in
  /opt/cni/bin: netbay's, installed there, and the reference ones from /usr/lib/cni);
- the cgroup hierarchies mounted again (runc cannot start a container after the fresh
  sysfs otherwise). They are the machine's own hierarchies, so containers go under a parent
  named for this host (dockerd's --cgroup-parent, ctr's namespace), removed by stop();
- dockerd without iptables, bridge or forwarding settings of its own (ENGINE_FLAGS), and the
  resolv.conf nobody answers; netbayd serves Docker's plugin at /run/docker/plugins/netbay.sock.
A busybox image, IMAGE, is in both runtimes: busybox-static imported with `docker import`,
saved and given to `ctr image import` (no registry).

stop() (also on leaving the `with` block, whatever failed) kills PID 1 inside, which takes
every process of the host with it, then removes the host's cgroups; leftovers() lists what
would remain.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from cluster import ClusterHost
from helpers import poll, wait_until
from hostsandbox import processes_in

BIN = Path(sys.executable).parent  # scripts/install.sh --test puts the runtimes' binaries here
RUNTIME_BINARIES = ("docker", "dockerd", "containerd", "containerd-shim-runc-v2", "ctr",
                    "docker-proxy")
BUSYBOX = Path("/bin/busybox")
IMAGE = "localhost/bb:latest"
PLUGIN_SOCKET = "/run/docker/plugins/netbay.sock"
CNI_CONF_DIR = "/etc/cni/net.d"
CNI_BIN_DIR = "/opt/cni/bin"  # ctr's, not configurable
REFERENCE_CNI = Path("/usr/lib/cni")
CGROUPS = Path("/sys/fs/cgroup")
# the sandbox's Docker engine touches neither iptables nor sysctls, and makes no docker0
ENGINE_FLAGS = ("--iptables=false", "--ip6tables=false", "--bridge=none",
                "--ip-forward=false", "--ip-masq=false")

_CONTAINERD_CONFIG = """version = 2
root = "/run/containerd/root"
state = "/run/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "/run/containerd/containerd.sock"
"""

# run inside once the sandbox is up: $1 the host's resolv.conf, $2 containerd's config
_PREPARE = r"""
set -e
mkdir -p /run/etc/upper /run/etc/work
mount -t overlay -o lowerdir=/etc,upperdir=/run/etc/upper,workdir=/run/etc/work etc /etc
mount --bind "$1" /etc/resolv.conf  # the sandbox's own, hidden by the overlay
mkdir -p /etc/cni/net.d /etc/containerd
mount -t tmpfs -o mode=0755 cni-conf /etc/cni/net.d
cp "$2" /etc/containerd/config.toml
mount -t tmpfs -o mode=0755 opt /opt
mkdir -p /opt/cni/bin /var/lib/cni /run/docker/plugins
mount -t tmpfs -o mode=0755 cni-state /var/lib/cni
ln -s /usr/lib/cni/* /opt/cni/bin/
"""


def missing() -> str | None:
    """Why the runtimes cannot run here, or None."""
    absent = [name for name in RUNTIME_BINARIES if not (BIN / name).exists()]
    if absent:
        return f"{', '.join(absent)} not in {BIN} (scripts/install.sh --test)"
    for needed in ("runc", "tini"):
        if shutil.which(needed) is None:
            return f"{needed} is not installed (scripts/install.sh --test)"
    if not BUSYBOX.exists():
        return "busybox-static is not installed (scripts/install.sh --test)"
    return None


def cgroup_mounts() -> list[tuple[str, str, str]]:
    """The machine's cgroup hierarchies as (mount point, type, mount options), the runner's
    view: what a fresh sysfs needs mounted again."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            fields = line.split()
            separator = fields.index("-")
            target, fstype = fields[4], fields[separator + 1]
            if not target.startswith(str(CGROUPS)) or fstype not in ("cgroup", "cgroup2"):
                continue
            options = [o for o in fields[separator + 3].split(",") if o not in ("rw", "ro")]
            if any(o.startswith("name=") for o in options):
                options.insert(0, "none")  # a named hierarchy without controllers
            found.append((target, fstype, ",".join(options) or "defaults"))
    return found


def _mount_cgroups_script() -> str:
    lines = ["set -e"]
    mounts = cgroup_mounts()
    if all(target != str(CGROUPS) for target, _, _ in mounts):
        lines.append(f"mount -t tmpfs -o mode=0755 cgroup {CGROUPS}")  # v1: one dir each
    for target, fstype, options in mounts:
        lines += [f"mkdir -p {target}", f"mount -t {fstype} -o {options} {fstype} {target}"]
    return "\n".join(lines)


class DockerHost(ClusterHost):
    """A host (HostSandbox + netbayd) running containerd and dockerd. SEGMENT and ADDRESS
    are its place in a Cluster; a DockerHost of its own has only lo. ENGINE the dockerd
    flags that decide its networking (ENGINE_FLAGS; () for Docker's defaults: docker0,
    iptables, docker-proxy); SETTINGS more environment for what runs inside (netbayd)."""

    def __init__(self, name: str, directory: Path, segment: str = "", address: str = "",
                 *, engine: Sequence[str] = ENGINE_FLAGS,
                 settings: Mapping[str, str] | None = None) -> None:
        super().__init__(name, directory, segment, address)
        self.engine = tuple(engine)
        # the machine's cgroup hierarchies are shared: this host's containers go under here
        self.cgroup_parent = f"netbay-{name}-{secrets.token_hex(3)}"
        self.environ.update(
            NETBAY_DOCKER_PLUGIN=PLUGIN_SOCKET,
            PATH=f"{BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            DOCKER_CONFIG=str(directory / "docker-client"),  # not the runner's ~/.docker
            CONTAINERD_NAMESPACE=self.cgroup_parent,  # ctr's cgroups: /<namespace>/<id>
        )
        self.environ.update(settings or {})  # netbayd's own (NETBAY_VANISHED_GRACE, ...)
        self.daemons: dict[str, subprocess.Popen[bytes]] = {}  # name -> its nsenter
        self.plugin_missing: str | None = "netbayd has not started"  # why no plugin, or None

    def __enter__(self) -> DockerHost:
        try:
            self.start()
            self.start_daemon()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- starting -------------------------------------------------------------------------
    def start(self) -> None:
        super().start()
        config = self.dir / "containerd.toml"
        config.write_text(_CONTAINERD_CONFIG)
        self.run(["sh", "-c", _mount_cgroups_script()])
        self.run(["sh", "-c", _PREPARE, "prepare", str(self.dir / "resolv.conf"), str(config)])

    def start_daemon(self) -> None:
        """netbayd (serving the plugin), then containerd and dockerd; the image loaded."""
        super().start_daemon()
        self.wait_for_plugin()
        self.netbay("cni", "install", "--dir", CNI_BIN_DIR, "--socket",
                    self.environ["NETBAY_SOCKET"], "--root", str(self.state))
        self.start_containerd()
        self.start_dockerd()
        self._load_image()

    def wait_for_plugin(self) -> None:
        """Until netbayd serves Docker's plugin (dockerd asks for it while restoring its
        networks); plugin_missing says when it does not."""
        if importlib.util.find_spec("netbay.docker_plugin") is None:
            self.plugin_missing = "netbay's Docker plugin (netbay.docker_plugin) is not there"
            return
        served = poll(lambda: self.run(["test", "-S", PLUGIN_SOCKET], check=False)
                      .returncode == 0, 5)
        self.plugin_missing = None if served else f"netbayd does not serve {PLUGIN_SOCKET}"

    def start_containerd(self) -> None:
        self._spawn("containerd", ["containerd", "--config", "/etc/containerd/config.toml"])
        wait_until(lambda: self.ctr("version", check=False).returncode == 0, 30,
                   f"{self.name}: containerd to answer ({self.log_tail('containerd')})")

    def start_dockerd(self, *extra: str) -> None:
        """dockerd (again: its data-root keeps what it had), answering when this returns."""
        self._spawn("dockerd", [
            "dockerd", "--data-root", "/run/docker-data", "--exec-root", "/run/docker-exec",
            "--pidfile", "/run/dockerd.pid", "--containerd", "/run/containerd/containerd.sock",
            "--cgroup-parent", f"/{self.cgroup_parent}", *self.engine, *extra,
        ])
        wait_until(lambda: self.docker("version", check=False).returncode == 0, 60,
                   f"{self.name}: dockerd to answer ({self.log_tail('dockerd')})")

    def _spawn(self, name: str, argv: Sequence[str]) -> None:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - the daemon's for life
        with log:
            self.daemons[name] = subprocess.Popen(
                self.argv(["setsid", *argv]), env=self.environ, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log)

    def log_tail(self, name: str) -> str:
        log = self.dir / f"{name}.log"
        return log.read_text(errors="replace")[-1500:] if log.exists() else "(no log)"

    def _load_image(self) -> None:
        """busybox-static and its applets as IMAGE, in dockerd's store and in containerd's
        namespace for ctr."""
        rootfs = self.dir / "rootfs"
        for directory in ("bin", "etc", "proc", "sys", "dev", "tmp", "root"):
            (rootfs / directory).mkdir(parents=True, exist_ok=True)
        shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
        # relative links: `busybox --install -s` names the busybox outside the image
        self.run(["sh", "-c", f"cd {rootfs}/bin && ./busybox --list | grep -vx busybox | "
                              "xargs -n 1 ln -sf busybox"])
        archive = self.dir / "bb.tar"
        self.run(["sh", "-c", f"tar -C {rootfs} -c . | docker import - {IMAGE} >/dev/null && "
                              f"docker save -o {archive} {IMAGE}"])
        self.ctr("image", "import", str(archive))

    # --- using ----------------------------------------------------------------------------
    def docker(self, *args: str, check: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`docker ARGS` inside (the engine at /run/docker.sock)."""
        return self.run(["docker", *args], check=check, timeout=timeout)

    def ctr(self, *args: str, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`ctr ARGS` inside, in this host's containerd namespace."""
        return self.run(["ctr", "--address", "/run/containerd/containerd.sock", *args],
                        check=check, timeout=timeout)

    def daemon_outer_pid(self, name: str) -> int | None:
        """The PID the harness sees for the running 'dockerd' or 'containerd' (its nsenter's
        child: setsid execs it), None when it is not running."""
        process = self.daemons.get(name)
        if process is None or process.poll() is not None:
            return None
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        with contextlib.suppress(OSError, ValueError):
            return int(children.read_text().split()[0])
        return None

    def restart_netbayd(self, sig: int = signal.SIGKILL) -> None:
        """netbayd killed with SIG and started again; the runtimes go on running."""
        self.kill_daemon(sig)
        super().start_daemon()
        self.wait_for_plugin()

    def stop_runtime(self, name: str, sig: int) -> None:
        """Send SIG to 'dockerd' or 'containerd' and wait until it has exited."""
        pid = self.daemon_outer_pid(name)
        process = self.daemons.pop(name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        process.wait(timeout=60)

    # --- removing -------------------------------------------------------------------------
    def stop(self) -> None:
        """Every process inside (PID 1 killed), then the cgroups this host's containers had
        in the machine's hierarchies. Safe on a host that failed to start."""
        super().stop()
        for process in self.daemons.values():
            process.wait(timeout=30)
        self.daemons.clear()
        poll(lambda: not self._remove_cgroups(), 10, 0.1)

    def cgroups(self) -> list[Path]:
        """This host's cgroup directories in the machine's hierarchies, deepest first."""
        found = []
        for target, _, _ in cgroup_mounts():
            parent = Path(target) / self.cgroup_parent
            if parent.is_dir():
                found += [parent, *(p for p in parent.rglob("*") if p.is_dir())]
        return sorted(found, key=lambda p: len(p.parts), reverse=True)

    def _remove_cgroups(self) -> list[Path]:
        """rmdir each (a cgroup goes once its last process is reaped); those left."""
        for path in self.cgroups():
            with contextlib.suppress(OSError):
                path.rmdir()
        return self.cgroups()

    def leftovers(self) -> list[str]:
        left = [f"process {pid}" for pid in processes_in(self.namespaces)]
        return left + [f"cgroup {path}" for path in self.cgroups()]


def docker_host_fixture(
    scope: Literal["function", "module", "session"] = "module", **options: Any
) -> Any:
    """A pytest fixture giving one running DockerHost(**OPTIONS) to the tests of SCOPE
    (`docker_host = docker_host_fixture()` in a module); removed afterwards, and a failure
    if anything of it is left."""

    @pytest.fixture(scope=scope)
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerHost]:
        reason = missing()
        if reason:
            pytest.skip(reason)
        directory = tmp_path_factory.mktemp("docker-host")
        with DockerHost("docker1", directory, **options) as host:
            yield host
        poll(lambda: not host.leftovers(), 5)
        left = host.leftovers()
        assert not left, f"the docker host's teardown left: {left}"

    return fixture

