"""A real etcd cluster for tests: every member a process started and stopped by its PID, with
its own data directory and ports. On 127.0.0.1 (`loopback_addresses`: distinct free ports) or,
for the multi-host harness, each member inside a namespace (`prefixes`: the command each
member's etcd and etcdctl run under, such as ["nsenter", "--net=/path/ns"]).

    with etcd_cluster([tmp/"e0", tmp/"e1", tmp/"e2"], loopback_addresses(3)) as cluster:
        ... cluster.kill(cluster.leader()) ... cluster.start_member(i) ...

(or start_etcd_cluster(...) and cluster.stop() in a finally).

`stop()` ends every member (SIGTERM, then SIGKILL) and removes their data directories; a
start that fails stops what it started first. Members also get SIGKILL if the thread that
started them dies (setpriv --pdeathsig), so a crashed test run leaves no etcd behind.

`TcpProxy` stands between a client and a member on loopback and can cut it off (a partition
the client sees, with etcd still up).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL"]


@dataclass(frozen=True)
class MemberAddress:
    host: str
    client_port: int = 2379
    peer_port: int = 2380


@dataclass(frozen=True)
class EtcdTls:
    """The members' certificate for clients (peers talk plain HTTP). etcdctl presents the same
    certificate, so it must allow clientAuth as well as serverAuth."""

    ca: Path
    cert: Path
    key: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loopback_addresses(count: int) -> list[MemberAddress]:
    return [MemberAddress("127.0.0.1", free_port(), free_port()) for _ in range(count)]


class EtcdMember:
    def __init__(
        self, name: str, directory: Path, address: MemberAddress, prefix: Sequence[str],
        tls: EtcdTls | None,
    ) -> None:
        self.name = name
        self.directory = directory
        self.address = address
        self.prefix = list(prefix)
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "etcd.log"

    @property
    def client_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.address.host}:{self.address.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.address.host}:{self.address.peer_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self, initial_cluster: str, token: str) -> list[str]:
        argv = [
            *DIE_WITH_PARENT, *self.prefix, ETCD, "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", token, "--logger", "zap", "--enable-v2=false",
        ]
        if self.tls:
            argv += ["--trusted-ca-file", str(self.tls.ca), "--cert-file", str(self.tls.cert),
                     "--key-file", str(self.tls.key), "--client-cert-auth"]
        return argv

    def start(self, initial_cluster: str, token: str) -> None:
        assert not self.running, f"etcd member {self.name} is already running"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.command(initial_cluster, token), stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, start_new_session=True,
            )

    def signal_and_wait(self, signum: int, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def etcdctl(self, *args: str, timeout: float = 5.0) -> subprocess.CompletedProcess[str]:
        argv = [*self.prefix, ETCDCTL, f"--endpoints={self.client_url}", "--dial-timeout=2s",
                "--command-timeout=3s"]
        if self.tls:
            argv += [f"--cacert={self.tls.ca}", f"--cert={self.tls.cert}",
                     f"--key={self.tls.key}"]
        return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=timeout,
                              check=False)

    def status(self) -> dict[str, int] | None:
        """This member's id and the leader it knows of; None while it cannot answer."""
        try:
            out = self.etcdctl("endpoint", "status", "-w", "json")
        except subprocess.TimeoutExpired:
            return None
        if out.returncode != 0:
            return None
        status = json.loads(out.stdout)[0]["Status"]
        # etcd leaves "leader" out of its JSON while there is none
        return {"member_id": int(status["header"]["member_id"]),
                "leader": int(status.get("leader", 0))}


class EtcdCluster:
    def __init__(self, members: list[EtcdMember], token: str) -> None:
        self.members = members
        self.token = token

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(m.client_url for m in self.members)

    def start_member(self, index: int) -> None:
        self.members[index].start(self.initial_cluster, self.token)

    def stop_member(self, index: int) -> None:
        self.members[index].signal_and_wait(signal.SIGTERM)

    def kill(self, index: int) -> None:
        self.members[index].signal_and_wait(signal.SIGKILL)

    def leader(self, timeout: float = 15.0) -> int:
        """The index of the member the running members agree leads."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = [m.status() if m.running else None for m in self.members]
            known = {s["leader"] for s in statuses if s}
            ids = [s["member_id"] if s else None for s in statuses]
            if len(known) == 1 and (leader := known.pop()) in ids:
                return ids.index(leader)
            time.sleep(0.1)
        raise AssertionError(f"no etcd leader within {timeout:g} s; logs: {self.log_tails()}")

    def wait_healthy(self, timeout: float = 20.0) -> None:
        self.leader(timeout)

    def log_tails(self, lines: int = 5) -> dict[str, list[str]]:
        return {m.name: m.log.read_text(errors="replace").splitlines()[-lines:]
                for m in self.members if m.log.exists()}

    def stop(self) -> None:
        """Every member ended (by PID), its data directory removed."""
        for member in self.members:
            member.signal_and_wait(signal.SIGTERM)
        for member in self.members:
            shutil.rmtree(member.data_dir, ignore_errors=True)


def start_etcd_cluster(
    dirs: Sequence[Path], addresses: Sequence[MemberAddress], *,
    prefixes: Sequence[Sequence[str]] | None = None, tls: EtcdTls | None = None,
    timeout: float = 20.0,
) -> EtcdCluster:
    """Members named etcd0..N-1, one per directory and address, running and with a leader."""
    assert len(dirs) == len(addresses), "one directory per member address"
    prefixes = prefixes or [[] for _ in dirs]
    members = [EtcdMember(f"etcd{i}", Path(d), a, p, tls)
               for i, (d, a, p) in enumerate(zip(dirs, addresses, prefixes, strict=True))]
    cluster = EtcdCluster(members, token=f"netbay-test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        for index in range(len(members)):
            cluster.start_member(index)
        cluster.wait_healthy(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def etcd_cluster(
    dirs: Sequence[Path], addresses: Sequence[MemberAddress], *,
    prefixes: Sequence[Sequence[str]] | None = None, tls: EtcdTls | None = None,
) -> Iterator[EtcdCluster]:
    """start_etcd_cluster, stopped however the block ends."""
    cluster = start_etcd_cluster(dirs, addresses, prefixes=prefixes, tls=tls)
    try:
        yield cluster
    finally:
        cluster.stop()


class TcpProxy:
    """127.0.0.1:PORT forwarding to TARGET; `cut()` closes every connection and refuses new
    ones until `restore()`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._selector = selectors.DefaultSelector()
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._listen()
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ)

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._selector.unregister(self._listener)
                self._listener.close()
                self._listener = None
            for sock in list(self._pairs):
                self._drop(sock)

    def restore(self) -> None:
        with self._lock:
            if self._listener is None:
                self._listen()

    def close(self) -> None:
        self.cut()
        self._stopped = True
        self._thread.join(5)
        self._selector.close()

    def _drop(self, sock: socket.socket) -> None:
        peer = self._pairs.pop(sock, None)
        for end in (sock, peer):
            if end is not None:
                self._pairs.pop(end, None)
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(end)
                end.close()

    def _accept(self, listener: socket.socket) -> None:
        client, _ = listener.accept()
        upstream = socket.create_connection(self.target, timeout=2)
        for end in (client, upstream):
            end.setblocking(False)
            self._selector.register(end, selectors.EVENT_READ)
        self._pairs[client], self._pairs[upstream] = upstream, client

    def _forward(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        peer = self._pairs.get(sock)
        if not data or peer is None:
            self._drop(sock)
            return
        try:
            peer.setblocking(True)
            peer.sendall(data)
            peer.setblocking(False)
        except OSError:
            self._drop(sock)

    def _run(self) -> None:
        while not self._stopped:
            for key, _ in self._selector.select(0.1):
                with self._lock:
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._listener:
                        self._accept(sock)
                    elif sock in self._pairs:
                        self._forward(sock)


@dataclass(frozen=True)
class TlsFiles:
    """A test CA, the members' certificate (serverAuth and clientAuth) and a client's."""

    ca: Path
    member_cert: Path
    member_key: Path
    client_cert: Path
    client_key: Path

    @property
    def members(self) -> EtcdTls:
        return EtcdTls(self.ca, self.member_cert, self.member_key)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_certificates(directory: Path, ips: Sequence[str] = ("127.0.0.1",)) -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    _openssl("req", "-x509", *key, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
             "-subj", "/CN=netbay test CA")
    made = {}
    for name, usage in (("member", "serverAuth,clientAuth"), ("client", "clientAuth")):
        extensions = directory / f"{name}.ext"
        sans = ",".join(f"IP:{ip}" for ip in ips)
        extensions.write_text(f"subjectAltName={sans}\nextendedKeyUsage={usage}\n")
        request = directory / f"{name}.csr"
        _openssl("req", *key, "-keyout", str(directory / f"{name}.key"), "-out", str(request),
                 "-subj", f"/CN=netbay test {name}")
        _openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-out", str(directory / f"{name}.pem"), "-days", "2",
                 "-extfile", str(extensions))
        made[name] = (directory / f"{name}.pem", directory / f"{name}.key")
    return TlsFiles(ca, *made["member"], *made["client"])
