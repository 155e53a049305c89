"""netbayd as a server (issue 13, part 4), on the test's real host: misbehaving clients never
stall others and cost no thread; the socket has its final mode and group from its first
moment; netbayd serves the socket systemd passes it (socket activation)."""

from __future__ import annotations

import grp
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import Env
from inotify import watch
from rawhttp import connect, parse, ping_seconds, read_to_end

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

LAUNCHER = str(Path(__file__).resolve().parent.parent / "socket_activation.py")
MiB = 1024 * 1024


def threads_and_rss(pid: int) -> tuple[int, int]:
    """The process's thread count and resident memory in bytes (/proc/PID/status)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines())
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0]) * 1024


def slow_headers(path: Path, answers: list[tuple[int, float]]) -> None:
    """Headers one byte every 0.2 s, never ending: the server's request deadline ends it."""
    header = b"GET /_ping HTTP/1.1\r\nHost: netbay\r\nX-Slow: " + b"z" * 1000
    with connect(path, timeout=0.2) as sock:
        started = time.monotonic()
        for byte in header:
            sock.sendall(bytes([byte]))
            try:
                first = sock.recv(65536)
            except TimeoutError:
                continue
            sock.settimeout(5)
            answers.append((parse(first + read_to_end(sock))[0], time.monotonic() - started))
            return


def test_misbehaving_clients_never_stall_a_normal_one(env: Env) -> None:
    env.run("network", "ls")
    pid = env.daemon_pid()
    assert pid is not None
    path = env.paths.socket
    for _ in range(20):  # the workers a normal load needs are started
        ping_seconds(path)
    threads, rss = threads_and_rss(pid)

    idle = [connect(path) for _ in range(300)]  # (b) connected, never a byte
    huge = connect(path)  # (c) a 100 MB body announced, a few bytes of it sent
    huge.sendall(b"POST /networks/create HTTP/1.1\r\nHost: netbay\r\nContent-Type: "
                 b"application/json\r\nContent-Length: 100000000\r\n\r\n" + b'{"Name": "n')
    slow: list[tuple[int, float]] = []  # (a) headers byte by byte
    dribbler = threading.Thread(target=slow_headers, args=(path, slow))
    dribbler.start()
    latencies, peak_threads, peak_rss = [], threads, rss
    while dribbler.is_alive():
        latencies.append(ping_seconds(path))
        now_threads, now_rss = threads_and_rss(pid)
        peak_threads, peak_rss = max(peak_threads, now_threads), max(peak_rss, now_rss)
        time.sleep(0.05)
    dribbler.join()

    assert max(latencies) < 1.0, sorted(latencies)[-5:]
    status, _, body = parse(read_to_end(huge))
    assert (status, body) == (413, b'{"message": "request body of 100000000 bytes over '
                                   b"netbayd's limit of 4194304 bytes (4 MiB)\"}\n")
    assert len(slow) == 1 and slow[0][0] == 408 and 10.0 <= slow[0][1] < 12.0, slow
    # the 302 clients held no thread, and their buffers are small
    assert peak_threads <= threads + 2, (threads, peak_threads)
    assert peak_rss - rss < 16 * MiB, (rss, peak_rss)
    idle[0].sendall(b"GET /_ping HTTP/1.1\r\nHost: netbay\r\n\r\n")  # still served
    assert idle[0].recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    for sock in [*idle, huge]:
        sock.close()


def test_the_socket_has_its_mode_and_group_from_its_first_moment(env: Env) -> None:
    """With umask 0, a socket bound at its path and chmod-ed after would be 0777 for a
    moment: inotify would see it created there and then its mode changed."""
    env.environ["NETBAY_SOCKET_GROUP"] = "nogroup"
    with watch(env.paths.socket.parent) as seen:
        env.run("network", "ls", umask=0)  # the daemon the CLI starts inherits the umask
        events = seen.events(env.paths.socket.name)
    assert events == ["moved_to"]
    info = env.paths.socket.lstat()
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o660
    assert info.st_gid == grp.getgrnam("nogroup").gr_gid


def test_a_socket_group_that_does_not_exist_stops_netbayd_at_once(env: Env) -> None:
    result = subprocess.run(
        [*env.enter, sys.executable, "-m", "netbay.daemon"], capture_output=True, text=True,
        env={**env.environ, "NETBAY_SOCKET_GROUP": "no-such-group"}, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        "ERROR netbayd: invalid NETBAY_SOCKET_GROUP 'no-such-group': no such group")
    assert not env.paths.socket.exists()


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_netbayd_serves_the_socket_systemd_passes(env: Env, tmp_path: Path) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(60)
    with open(tmp_path / "activated.log", "wb") as log:
        launcher = subprocess.Popen(
            [*env.enter, sys.executable, LAUNCHER, str(env.paths.socket), "--",
             sys.executable, "-m", "netbay.daemon"],
            env={**env.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")},
            stdout=subprocess.PIPE, stderr=log, text=True,
        )
    try:
        assert launcher.stdout is not None and launcher.stdout.readline() == "listening\n"
        assert env.daemon_pid() is None  # started by the first connection, not before
        env.run("network", "create", "--subnet", "10.70.0.0/24", "act")
        assert notify.recv(100) == b"READY=1"
        env.run("run", "-d", "--name", "c1", "--network", "act", "--", "sleep", "infinity")
        daemon = env.daemon_pid()
        assert daemon is not None
        listening = os.readlink(f"/proc/{daemon}/fd/3")
        assert listening.startswith("socket:")
        container = env.host_pid(int(env.json("inspect", "c1")[0]["State"]["Pid"]))
        assert not {"LISTEN_PID", "LISTEN_FDS", "NOTIFY_SOCKET"} & environ_of(container).keys()
        fds = os.listdir(f"/proc/{container}/fd")
        assert listening not in {os.readlink(f"/proc/{container}/fd/{fd}") for fd in fds}
        env.run("rm", "-f", "c1")
        env.stop_daemon()
        assert launcher.wait(timeout=30) == 0
        assert env.paths.socket.exists()  # systemd's: it stays for the next start
        assert "(socket activation)" in (tmp_path / "activated.log").read_text()
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        notify.close()
