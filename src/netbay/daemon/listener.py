"""netbayd's API socket: bound with its final mode and group from the moment it exists at its
path, or handed over by systemd (socket activation, sd_listen_fds(3)); and systemd's
readiness notification (sd_notify(3), Type=notify)."""

from __future__ import annotations

import contextlib
import grp
import os
import socket
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from ..errors import ConfigError

SOCKET_MODE = 0o660  # root and the socket's group (NETBAY_SOCKET_GROUP), as Docker's socket
BACKLOG = 256  # many thin clients (CLI, CNI, netavark) connect at once
GROUP_VARIABLE = "NETBAY_SOCKET_GROUP"
SD_LISTEN_FDS_START = 3


def socket_group(environ: Mapping[str, str]) -> int | None:
    """The gid NETBAY_SOCKET_GROUP names (a group name, or a number as dockerd's --group takes
    it); None when it is unset."""
    name = environ.get(GROUP_VARIABLE, "")
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if name.isascii() and name.isdigit():
            return int(name)
        raise ConfigError(GROUP_VARIABLE, name, "no such group") from None


def bind(path: Path, gid: int | None = None) -> socket.socket:
    """A listening unix socket at PATH with mode 0660 (and group GID) before it appears there.

    bind() creates the file with the process umask, and chmod can only come after it; umask
    is process-wide (a thread making a file meanwhile would get the tightened mask). So the
    socket is bound in a fresh directory only its owner can enter (mkdtemp makes it 0700),
    given its mode and group there, and renamed onto PATH: a socket at PATH never has other
    permissions, and a stale one is replaced in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    private = Path(tempfile.mkdtemp(prefix=".nb", dir=path.parent))
    staged = private / "s"  # short: the whole path must fit sun_path's 108 bytes
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(staged))
        os.chmod(staged, SOCKET_MODE)
        if gid is not None:
            os.chown(staged, -1, gid)
        sock.listen(BACKLOG)
        os.rename(staged, path)
    except BaseException:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
        raise
    finally:
        private.rmdir()
    return sock


def inherited(environ: MutableMapping[str, str]) -> socket.socket | None:
    """The listening socket systemd passed (LISTEN_PID is this process, LISTEN_FDS=1: fd 3);
    None when netbayd was not socket-activated. The variables are removed either way, as
    sd_listen_fds(1) does, so nothing netbayd starts (containers, the DNS server) takes them
    for its own."""
    pid = environ.pop("LISTEN_PID", "")
    count = environ.pop("LISTEN_FDS", "")
    environ.pop("LISTEN_FDNAMES", None)
    if not count or pid != str(os.getpid()):
        return None
    if count != "1":
        raise ConfigError("LISTEN_FDS", count, "netbayd serves exactly one socket")
    try:
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    except OSError as exc:
        raise ConfigError("LISTEN_FDS", count, f"fd 3 is not a socket ({exc.strerror})") from None
    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM or not listening:
        sock.detach()  # not ours to close
        raise ConfigError("LISTEN_FDS", count, "fd 3 is not a listening unix stream socket")
    sock.set_inheritable(False)  # systemd passes it inheritable; containers must not hold it
    return sock


class ApiSocket:
    """Where netbayd serves: the listening socket, whether systemd made it (then its file is
    systemd's to keep or remove), and where to tell systemd the daemon is ready."""

    def __init__(self, path: Path, environ: MutableMapping[str, str]) -> None:
        # taken now, before any child process could inherit it
        self._notify = environ.pop("NOTIFY_SOCKET", "")
        activated = inherited(environ)
        self.activated = activated is not None
        if activated is None:
            self.sock, self.path = bind(path, socket_group(environ)), path
        else:  # its address, not NETBAY_SOCKET's (the unit's ListenStream= says where)
            self.sock, self.path = activated, Path(activated.getsockname())

    def ready(self) -> None:
        """READY=1 to systemd when it waits for it (Type=notify); nothing otherwise."""
        if not self._notify:
            return
        address = "\0" + self._notify[1:] if self._notify.startswith("@") else self._notify
        # as sd_notify(3): a notification that cannot be sent is not the daemon's failure
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify, \
                contextlib.suppress(OSError):
            notify.connect(address)
            notify.sendall(b"READY=1")

    def close(self) -> None:
        self.sock.close()
        if not self.activated:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
