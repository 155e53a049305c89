"""A cluster of hosts on a routed underlay with a 3-member etcd, for the multi-host tests.

    fabric   a namespace with one bridge per segment (seg-a, seg-b) and a port per machine
    router   eth-a 198.18.1.1/24, eth-b 198.18.2.1/24, forwarding on
    hosts    h1 198.18.1.11 and h2 198.18.1.12 on segment a, h3 198.18.2.13 on b: each a
             HostSandbox (network, mount, UTS and PID namespaces) running its own netbayd
    etcd     etcd0 198.18.1.101 (a), etcd1 198.18.2.102 (b), etcd2 198.18.1.103 (a): one
             member per network namespace (tests/etcd.py), ports 2379 (clients), 2380 (peers)

Every machine's default route goes via the router's address on its segment: hosts on one
segment reach each other directly (host-gw), hosts on different segments through one routed
hop (VXLAN). 198.18.0.0/15 is the benchmarking range: no overlay pool uses it.

`with Cluster() as cluster:` builds everything; leaving the block removes it in reverse order
(processes by PID, namespaces by their pins, mounts, the work directory), also when the body
failed, and then fails if anything of the harness is left. In a test module,
`cluster = cluster_fixture()` gives its tests one shared cluster. `python tests/cluster.py
demo` shows one (scripts/cluster-demo.sh).
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any, Literal

import pytest

from etcd import EtcdCluster, MemberAddress, start_etcd_cluster
from helpers import poll
from hostsandbox import HostSandbox, namespace_id, processes_in
from lans import Machine
from netbay.kernel import netns

UNDERLAY = "198.18.{}.0/24"
# with ipv6=True, each segment also gets a /64 of 2001:2::/48, IPv6's benchmarking range
UNDERLAY6 = "2001:2:0:{}::/64"
ETCD_MEMBERS = 3


class ClusterHost(HostSandbox):
    """A host of the cluster: its underlay address on one segment and its own netbayd, with
    the state root at DIRECTORY/state, the socket and netns directory in its own /run."""

    def __init__(self, name: str, directory: Path, segment: str, address: str) -> None:
        super().__init__(name, directory)
        self.segment = segment
        self.address = address
        self.address6: str | None = None  # on an IPv6 underlay (Cluster(ipv6=True))
        self.port = name  # its port on the segment's bridge, in the fabric
        self.state = directory / "state"
        self.environ.update(
            NETBAY_ROOT=str(self.state),
            NETBAY_SOCKET="/run/netbay/netbay.sock",
            NETBAY_NETNS_DIR="/run/netns",
        )

    def netbay(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """`netbay ARGS` on this host."""
        return self.run(self.netbay_argv(*args), check=check, timeout=timeout)

    def netbay_argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "netbay", *args]

    def popen(self, argv: Sequence[str]) -> subprocess.Popen[str]:
        """ARGV started inside (its output piped), for what must run while the test acts."""
        return subprocess.Popen(self.argv(argv), env=self.environ, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def start_daemon(self) -> None:
        started = self.netbay("daemon", "start", check=False)
        if started.returncode != 0:
            log = self.state / "netbayd.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
            raise AssertionError(f"{self.name}: netbayd did not start: {started.stderr}{tail}")

    def daemon_pid(self) -> int | None:
        """The running netbayd's PID as the harness sees it (None: not running)."""
        try:
            inner = int((self.state / "netbayd.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return self.outer_pid(inner)

    def container_address(self, container: str, network: str) -> str:
        """CONTAINER's address on NETWORK, as `netbay inspect` shows it."""
        found = json.loads(self.netbay("inspect", container).stdout)[0]
        return str(found["NetworkSettings"]["Networks"][network]["IPAddress"])

    def bird_pid(self) -> int:
        """BIRD's PID in this host's PID namespace, as its PID file names it; 0: none."""
        try:
            return int((self.state / "bird" / "bird.pid").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return 0

    def cni(self, plugins: Path, command: str, netns: str, network: str) -> dict[str, Any]:
        """The netbay CNI plugin installed in PLUGINS run as a runtime would: COMMAND (ADD,
        DEL) for the namespace /run/netns/NETNS on NETWORK; its JSON result."""
        conf = json.dumps({"cniVersion": "1.0.0", "name": network, "type": "netbay",
                           "network": network})
        env = (f"CNI_COMMAND={command} CNI_CONTAINERID=cni-{netns} CNI_NETNS=/run/netns/{netns} "
               f"CNI_IFNAME=eth0 CNI_PATH={plugins}")
        done = self.run(["sh", "-c", f"echo '{conf}' | env {env} {plugins}/netbay"])
        return dict(json.loads(done.stdout)) if done.stdout.strip() else {}

    def run_web(self, name: str, network: str, published: str) -> None:
        """Container NAME on NETWORK, publishing PUBLISHED (`-p HOST:7001`), that answers
        every TCP connection on 7001 with 'from NAME'."""
        self.netbay("run", "-d", "--name", name, "--network", network, "-p", published, "--",
                    "python3", "-c", "import socket\ns = socket.create_server(('0.0.0.0', "
                    f"7001))\nwhile True:\n    c = s.accept()[0]; c.sendall(b'from {name}'); "
                    "c.close()")

    def fetch(self, address: str, port: int, container: str | None = None) -> str:
        """What ADDRESS:PORT answers a TCP connection from this host (or from its CONTAINER)
        with (retried for 5 s)."""
        program = ("import socket, time\nfor _ in range(50):\n    try:\n"
                   f"        print(socket.create_connection(('{address}', {port}), 2).recv(64)"
                   ".decode()); break\n    except OSError: time.sleep(0.1)")
        if container is None:
            return self.run(["python3", "-c", program]).stdout.strip()
        return self.netbay("exec", container, "--", "python3", "-c", program).stdout.strip()

    def ping_unfragmented(
        self, container: str, target: str, size: int
    ) -> subprocess.CompletedProcess[str]:
        """One echo of SIZE bytes from CONTAINER to TARGET (either family) that no one on
        the way may fragment; its exit tells whether it came back."""
        family = ["-6"] if ":" in target else []
        return self.netbay("exec", container, "--", "ping", *family, "-c", "1", "-W", "2",
                           "-M", "do", "-s", str(size), target, check=False)

    def kernel_state(self) -> str:
        """Links, addresses, routes and nftables (the neighbour cache is the kernel's own):
        what a refused request must leave as it was."""
        ip = [self.run(["ip", *args]).stdout for args in (["-br", "link"], ["-br", "addr"],
                                                          ["route"], ["-6", "route"])]
        return "\n".join([*ip, self.run(["nft", "list", "ruleset"]).stdout])

    def kill_daemon(self, sig: int = signal.SIGKILL) -> int:
        """Send SIG to netbayd and wait until it is gone; its PID. The next `netbay` command
        starts a new one."""
        pid = self.daemon_pid()
        if pid is None:
            raise AssertionError(f"{self.name}: netbayd is not running")
        os.kill(pid, sig)
        if not poll(lambda: self.daemon_pid() != pid, 15):
            raise AssertionError(f"{self.name}: netbayd {pid} survived signal {sig}")
        return pid


class Etcd(EtcdCluster):
    """The cluster's etcd: members etcd0..2 (kill(index), start_member(index), leader(),
    endpoints: tests/etcd.py), and the control plane stopped and started as a whole."""

    def stop_all(self) -> None:
        for index in range(len(self.members)):
            self.stop_member(index)

    def start_all(self, timeout: float = 20.0) -> None:
        """Start every member that is not running; return once they have a leader."""
        for index, member in enumerate(self.members):
            if not member.running:
                self.start_member(index)
        self.wait_healthy(timeout)


def default_segments(hosts: int) -> list[str]:
    """Two hosts on segment a for each one on b: a, a, b, a, a, b, ..."""
    return ["b" if index % 3 == 2 else "a" for index in range(hosts)]


class Cluster:
    """Fabric, router, etcd and HOSTS hosts (host i on segment SEGMENTS[i]); a context
    manager. MTU is the underlay's (every veth on the segments)."""

    def __init__(
        self, hosts: int = 3, segments: Sequence[str] | None = None, *, mtu: int = 1500,
        host_type: type[ClusterHost] = ClusterHost,  # tests/docker_env.py DockerHost: dockerd too
        ipv6: bool = False,  # the underlay dual stack: every machine an IPv6 address too
    ) -> None:
        placed = list(segments) if segments is not None else default_segments(hosts)
        if len(placed) != hosts:
            raise ValueError(f"{hosts} hosts, but segments for {len(placed)}: {placed}")
        self.mtu = mtu
        self.work = Path(tempfile.gettempdir()) / f"netbay-cluster-{secrets.token_hex(4)}"
        names = sorted(set(placed))
        self.subnets = {name: IPv4Network(UNDERLAY.format(index + 1))
                        for index, name in enumerate(names)}
        self.subnets6 = {name: IPv6Network(UNDERLAY6.format(index + 1))
                         for index, name in enumerate(names)} if ipv6 else {}
        self.fabric = Machine(self.work / "fabric")
        self.router = Machine(self.work / "router")
        self.hosts = [
            host_type(f"h{index}", self.work / f"h{index}", segment,
                      self._address(segment, 10 + index))
            for index, segment in enumerate(placed, 1)
        ]
        for host in self.hosts if ipv6 else ():
            host.address6 = self._address6(host.segment, int(host.address.rsplit(".", 1)[1]))
        self._etcd: Etcd | None = None
        self.setup_seconds = self.teardown_seconds = 0.0
        self._pins: list[Path] = []  # network namespaces outside the hosts, in creation order
        self._namespaces: set[str] = set()  # 'net:[inode]' ... of everything the harness made

    def _address(self, segment: str, index: int) -> str:
        return str(self.subnets[segment][index])

    def _address6(self, segment: str, index: int) -> str:
        return str(self.subnets6[segment][index])

    def gateway(self, segment: str) -> str:
        """The router's address on SEGMENT."""
        return self._address(segment, 1)

    def pins(self) -> list[Path]:
        """Where every network namespace of the cluster is pinned."""
        return [*self._pins, *(host.netns for host in self.hosts)]

    def __enter__(self) -> Cluster:
        started = time.monotonic()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        self.setup_seconds = time.monotonic() - started
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- building -----------------------------------------------------------------------
    def _build(self) -> None:
        self.work.mkdir(mode=0o700)
        self._build_underlay()
        for host in self.hosts:
            host.start()
            self._namespaces |= host.namespaces
            self._plug(host.netns, host.port, host.segment, host.address)
        with ThreadPoolExecutor(len(self.hosts)) as pool:
            daemons = [pool.submit(host.start_daemon) for host in self.hosts]
            self._start_etcd()  # here: its members die with the thread that started them
            for started in daemons:
                started.result()

    def _build_underlay(self) -> None:
        for machine in (self.fabric, self.router):
            self._pin(machine.path)
        self.fabric.ip(*[f"link add seg-{name} mtu {self.mtu} type bridge"
                         for name in self.subnets],
                       *[f"link set seg-{name} up" for name in self.subnets])
        for name, subnet in self.subnets.items():
            self._cable(self.router.path, f"r-{name}", f"eth-{name}", name)
            self.router.ip(f"addr add {self.gateway(name)}/{subnet.prefixlen} dev eth-{name}",
                           f"link set eth-{name} up")
            if name in self.subnets6:
                self.router.ip(f"addr add {self._address6(name, 1)}/64 dev eth-{name} nodad")
        self.router.sh("sysctl -qw net.ipv4.ip_forward=1")
        if self.subnets6:
            self.router.sh("sysctl -qw net.ipv6.conf.all.forwarding=1")

    def _start_etcd(self) -> None:
        """One member per namespace, on the segments in turn (.101, .102, ...)."""
        names = list(self.subnets)
        segments = [names[index % len(names)] for index in range(ETCD_MEMBERS)]
        addresses = [self._address(segment, 101 + index) for index, segment in
                     enumerate(segments)]
        dirs = [self.work / f"etcd{index}" for index in range(ETCD_MEMBERS)]
        for directory, segment, address in zip(dirs, segments, addresses, strict=True):
            directory.mkdir()
            self._pin(directory / "net")
            self._plug(directory / "net", directory.name, segment, address)
        etcd = start_etcd_cluster(
            dirs, [MemberAddress(address) for address in addresses],
            prefixes=[["nsenter", f"--net={directory / 'net'}"] for directory in dirs],
        )
        self._etcd = Etcd(etcd.members, etcd.token)

    @property
    def etcd(self) -> Etcd:
        if self._etcd is None:
            raise AssertionError("the cluster's etcd has not started")
        return self._etcd

    def _pin(self, path: Path) -> None:
        netns.create(path)
        self._pins.append(path)
        self._namespaces.add(namespace_id(path))

    def _cable(self, path: Path, port: str, ifname: str, segment: str) -> None:
        """A veth from the bridge of SEGMENT (PORT, in the fabric) to IFNAME in PATH."""
        self.fabric.ip(
            f"link add {port} mtu {self.mtu} type veth peer name {ifname} mtu {self.mtu} "
            f"netns {path}",
            f"link set {port} master seg-{segment} up",
        )

    def _plug(self, path: Path, port: str, segment: str, address: str) -> None:
        """The machine at PATH on SEGMENT: eth0 with ADDRESS, the default route via the
        router."""
        self._cable(path, port, "eth0", segment)
        Machine(path).ip(
            "link set lo up",
            f"addr add {address}/{self.subnets[segment].prefixlen} dev eth0",
            "link set eth0 up",
            f"route add default via {self.gateway(segment)}",
        )
        if segment in self.subnets6 and address in (h.address for h in self.hosts):
            index = int(address.rsplit(".", 1)[1])
            Machine(path).ip(f"addr add {self._address6(segment, index)}/64 dev eth0 nodad",
                             f"route add default via {self._address6(segment, 1)}")

    def routed_network(self, name: str, subnet: str, *join: str) -> None:
        """Every host joined (at its underlay address, with JOIN's extra options), a routed
        network NAME of SUBNET, and on every host a container c-HOST on it, sleeping."""
        endpoints = ",".join(self.etcd.endpoints)
        for host in self.hosts:
            host.netbay("cluster", "join", "--etcd", endpoints, "--address", host.address,
                        *join)
        self.hosts[0].netbay("network", "create", "-d", "routed", "--subnet", subnet, name)
        for host in self.hosts:
            host.netbay("run", "-d", "--name", f"c-{host.name}", "--network", name, "--",
                        "sleep", "infinity")

    def router_popen(self, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """ARGV started in the router's network namespace (nsenter execs it: the PID is its
        own), its output discarded: a daemon of the test's, such as a BIRD, which the test
        stops by that PID before the cluster closes."""
        return subprocess.Popen(["nsenter", f"--net={self.router.path}", *argv],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # --- faults ---------------------------------------------------------------------------
    def record(self) -> list[tuple[str, str]]:
        """netbay's keys and values in etcd, leases and times left out, and the BGP status
        each node publishes as its sessions come and go: what a refused request must leave
        as it was."""
        out = self.hosts[0].run(["etcdctl", f"--endpoints={','.join(self.etcd.endpoints)}",
                                 "get", "--prefix", "/netbay/"]).stdout.splitlines()
        return [(key, re.sub(r'"(last_seen|lease|grace_lease)":\d+', "", value))
                for key, value in zip(out[::2], out[1::2], strict=True)
                if not key.startswith("/netbay/v1/bgp/")]

    def partition(self, node: ClusterHost) -> None:
        """Cut NODE off the underlay: its port on the bridge goes down, so its own link loses
        carrier as when a cable is pulled (its addresses and routes stay)."""
        self.fabric.ip(f"link set {node.port} down")

    def heal(self, node: ClusterHost) -> None:
        self.fabric.ip(f"link set {node.port} up")

    # --- teardown -------------------------------------------------------------------------
    def close(self) -> None:
        """Remove everything in reverse order, whatever failed; then fail if anything of the
        harness is left (a process in its namespaces, a mount under its directory)."""
        started = time.monotonic()
        errors: list[str] = []
        steps: list[Callable[[], object]] = [host.stop for host in reversed(self.hosts)]
        steps += [self._etcd.stop] if self._etcd else []
        steps += [functools.partial(netns.delete, path) for path in reversed(self._pins)]
        for step in steps:
            try:
                step()
            except Exception as exc:  # go on removing the rest; reported below
                errors.append(repr(exc))
        shutil.rmtree(self.work, ignore_errors=True)
        self.teardown_seconds = time.monotonic() - started
        left = errors + self.leftovers()
        if left:
            raise AssertionError(f"the cluster's teardown left: {left}")

    def leftovers(self) -> list[str]:
        """What of the harness still exists: processes in its namespaces (given a moment to
        die), mounts under its directory, the directory."""
        poll(lambda: not processes_in(self._namespaces), 5)
        left = [f"process {pid}" for pid in processes_in(self._namespaces)]
        left += [f"mount {target}" for target in _mounts_under(self.work)]
        return left + ([f"directory {self.work}"] if self.work.exists() else [])


def _mounts_under(directory: Path) -> list[str]:
    prefix = f"{directory}/"
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        return [line.split()[4] for line in info if line.split()[4].startswith(prefix)]


def cluster_fixture(
    scope: Literal["function", "module", "session"] = "module", **options: Any
) -> Any:
    """A pytest fixture giving one Cluster(**OPTIONS) to the tests of SCOPE. In a test
    module: `cluster = cluster_fixture()` (a module's tests share it, each leaving it as it
    found it) or `cluster = cluster_fixture("function", hosts=2)`."""

    @pytest.fixture(scope=scope)
    def fixture() -> Iterator[Cluster]:
        with Cluster(**options) as built:
            yield built

    return fixture


# --- the demo (scripts/cluster-demo.sh) ----------------------------------------------------
def _show(host: ClusterHost, command: str) -> subprocess.CompletedProcess[str]:
    """Run `netbay COMMAND` on HOST as a user would type it, and show it with its output."""
    print(f"\n\033[1m[{host.name}]$ netbay {command}\033[0m")
    result = host.netbay(*shlex.split(command), check=False)
    print((result.stdout + result.stderr).rstrip())
    if result.returncode != 0:
        raise AssertionError(f"{host.name}: netbay {command} failed ({result.returncode})")
    return result


def _demo_steps(cluster: Cluster) -> None:
    endpoints = ",".join(cluster.etcd.endpoints)
    h1, h2, h3 = cluster.hosts[:3]
    for host in cluster.hosts:
        _show(host, f"cluster join --etcd {endpoints}")
    _show(h1, "network create -d overlay --subnet 10.244.0.0/16 podnet")
    for host in cluster.hosts:
        _show(host, f"run -d --name c-{host.name} --network podnet -- sleep infinity")
    _show(h2, "network ls")
    _show(h1, "cluster nodes")
    print("\n\033[1mc-h1 reaches c-h2 over a plain route (one segment: host-gw) and c-h3 "
          "through a VXLAN tunnel (behind the router)\033[0m")
    for target in (h2, h3):
        address = json.loads(target.netbay("inspect", f"c-{target.name}").stdout)[0][
            "NetworkSettings"]["Networks"]["podnet"]["IPAddress"]
        _show(h1, f"exec c-h1 -- ping -c 2 -W 2 {address}")
    print("\n\033[1mh1's routes to the other nodes' subnets (netbay's protocol, 57)\033[0m")
    print(h1.run(["ip", "route", "show", "proto", "57"]).stdout.rstrip())
    _show(h1, "cluster status")
    _routed_demo_steps(cluster)


def _routed_demo_steps(cluster: Cluster) -> None:
    """A routed network (Calico's model): no bridge, BGP between h1 and h2, VXLAN to h3."""
    h1, h2, h3 = cluster.hosts[:3]
    _show(h1, "network create -d routed --subnet 10.88.0.0/16 calico")
    for host in cluster.hosts:
        _show(host, f"run -d --name r-{host.name} --network calico -- sleep infinity")
    print("\n\033[1mr-h1's own view: a /32 and 169.254.1.1, answered by its host\033[0m")
    _show(h1, "exec r-h1 -- ip -4 -br addr show dev eth0")
    _show(h1, "exec r-h1 -- ip route")
    addresses = {}
    for target in (h2, h3):
        addresses[target.name] = json.loads(target.netbay("inspect", f"r-{target.name}").stdout)[
            0]["NetworkSettings"]["Networks"]["calico"]["IPAddress"]
    poll(lambda: "Established" in h1.netbay("bgp", "status", check=False).stdout, 15)
    _show(h1, "bgp status")
    print("\n\033[1mh1's routes learned by BGP (proto bird): h2's block, via h2\033[0m")
    print(h1.run(["ip", "route", "show", "proto", "bird"]).stdout.rstrip())
    for address in addresses.values():
        _show(h1, f"exec r-h1 -- ping -c 2 -W 2 {address}")


def demo() -> None:
    """Three hosts and etcd, an overlay and a routed network across them with a container of
    each on each, then everything removed (also on Ctrl-C, SIGTERM or a failed step)."""
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # through the teardown too
    print("building 3 hosts on two underlay segments joined by a router, and a 3-member etcd")
    with Cluster() as cluster:
        try:
            print(f"up in {cluster.setup_seconds:.1f} s:")
            for host in cluster.hosts:
                print(f"  {host.name}  {host.address}  segment {host.segment}")
            print(f"  etcd {' '.join(cluster.etcd.endpoints)}")
            _demo_steps(cluster)
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the teardown that follows finishes
            print("\nremoving hosts, etcd, router and fabric")
    print(f"removed in {cluster.teardown_seconds:.1f} s; nothing left")


if __name__ == "__main__":
    if sys.argv[1:] != ["demo"]:
        sys.exit(f"usage: {sys.argv[0]} demo")
    try:
        demo()
    except KeyboardInterrupt:
        sys.exit("interrupted: everything the demo built is removed")
