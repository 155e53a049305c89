"""The API socket: bound with its final mode (and group) before it appears at its path,
NETBAY_SOCKET_GROUP, the socket systemd passes (LISTEN_FDS), and READY=1 to systemd."""

from __future__ import annotations

import grp
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from inotify import watch
from netbay.daemon.listener import ApiSocket, bind, inherited, socket_group
from netbay.errors import ConfigError

NOGROUP = grp.getgrnam("nogroup").gr_gid


def test_the_socket_appears_with_its_final_mode_under_any_umask(tmp_path: Path) -> None:
    path = tmp_path / "netbay.sock"
    old = os.umask(0)  # bind() alone would make it 0777
    try:
        with watch(tmp_path) as seen:
            sock = bind(path)
            events = seen.events("netbay.sock")
    finally:
        os.umask(old)
    # renamed into place, never created there and chmod-ed after (that would be create,
    # attrib): at no moment was a socket with another mode at PATH
    assert events == ["moved_to"]
    info = path.lstat()
    assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o660
    assert [p.name for p in tmp_path.iterdir()] == ["netbay.sock"]  # the private dir is gone
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(path))
        conn, _ = sock.accept()
        conn.close()
    sock.close()


def test_a_stale_socket_is_replaced_in_one_step(tmp_path: Path) -> None:
    path = tmp_path / "netbay.sock"
    bind(path).close()  # a socket file nobody listens on, as a killed daemon leaves it
    with watch(tmp_path) as seen:
        sock = bind(path, NOGROUP)
        assert seen.events("netbay.sock") == ["moved_to"]  # no delete: no moment without
    assert path.lstat().st_gid == NOGROUP
    sock.close()


def test_socket_group_by_name_or_number() -> None:
    assert socket_group({}) is None
    assert socket_group({"NETBAY_SOCKET_GROUP": "nogroup"}) == NOGROUP
    assert socket_group({"NETBAY_SOCKET_GROUP": "4242"}) == 4242
    with pytest.raises(ConfigError) as err:
        socket_group({"NETBAY_SOCKET_GROUP": "no-such-group"})
    assert str(err.value) == "invalid NETBAY_SOCKET_GROUP 'no-such-group': no such group"


def test_listen_variables_for_another_process_are_dropped() -> None:
    environ = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x", "PATH": "/bin"}
    assert inherited(environ) is None
    assert environ == {"PATH": "/bin"}  # nothing netbayd starts takes them for its own
    assert inherited({"PATH": "/bin"}) is None


def test_more_than_one_socket_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        inherited({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2"})
    assert str(err.value) == "invalid LISTEN_FDS '2': netbayd serves exactly one socket"


INHERIT = """
import os, socket, sys
from netbay.daemon.listener import inherited
kind = sys.argv[1]
if kind == "listening":
    s = socket.socket(socket.AF_UNIX)
    s.bind(sys.argv[2])
    s.listen()
elif kind == "unconnected":
    s = socket.socket(socket.AF_UNIX)
else:
    s = open("/dev/null")
os.dup2(s.fileno(), 3)
env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "api"}
try:
    sock = inherited(env)
except Exception as exc:
    print(exc)
else:
    print(sock.fileno(), sock.get_inheritable(), sock.getsockname() == sys.argv[2], env)
"""


@pytest.mark.parametrize(("kind", "printed"), [
    ("listening", "3 False True {}"),
    ("unconnected", "invalid LISTEN_FDS '1': fd 3 is not a listening unix stream socket"),
    ("file", "invalid LISTEN_FDS '1': fd 3 is not a socket (Socket operation on non-socket)"),
])
def test_fd_3_from_systemd(tmp_path: Path, kind: str, printed: str) -> None:
    result = subprocess.run([sys.executable, "-c", INHERIT, kind, str(tmp_path / "s")],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == printed


@pytest.mark.parametrize("abstract", [False, True])
def test_ready_tells_systemd(tmp_path: Path, abstract: bool) -> None:
    address = f"\0netbay-test-{os.getpid()}" if abstract else str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(address)
        environ = {"NOTIFY_SOCKET": "@" + address[1:] if abstract else address}
        api = ApiSocket(tmp_path / "api.sock", environ)
        assert environ == {}  # not passed on to what netbayd starts
        api.ready()
        assert systemd.recv(100) == b"READY=1"
    api.close()
    assert not (tmp_path / "api.sock").exists()  # its own socket goes with it


def test_a_socket_systemd_made_stays_when_netbayd_stops(tmp_path: Path) -> None:
    code = (
        "import os, socket, sys\n"
        "from pathlib import Path\n"
        "from netbay.daemon.listener import ApiSocket\n"
        "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen()\n"
        "os.dup2(s.fileno(), 3)\n"
        "env = {'LISTEN_PID': str(os.getpid()), 'LISTEN_FDS': '1'}\n"
        "api = ApiSocket(Path('/nonexistent/elsewhere.sock'), env)\n"
        "print(api.activated, api.path)\n"
        "api.close()\n"
    )
    path = tmp_path / "activated.sock"
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == f"True {path}"
    assert path.exists()
