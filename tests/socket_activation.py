"""Socket activation the way systemd does it, for tests and benchmarks (never systemd itself).

    python tests/socket_activation.py SOCKET [--now] -- COMMAND...

Listens on the unix socket SOCKET (mode 0660, backlog 256, as netbayd.socket has it) and
prints "listening"; at the first connection (at once with --now) starts COMMAND with the
socket as fd 3, LISTEN_FDS=1 and LISTEN_PID=its pid (sd_listen_fds(3)). Exits with the
command's status; the socket file stays, as systemd leaves it for the next start.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys


def main(argv: list[str]) -> int:
    split = argv.index("--")
    path, options, command = argv[0], argv[1:split], argv[split + 1:]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener.bind(path)
    os.chmod(path, 0o660)
    listener.listen(256)
    print("listening", flush=True)
    if "--now" not in options:
        select.select([listener], [], [])  # a client connected: systemd starts the service
    pid = os.fork()
    if pid == 0:
        os.dup2(listener.fileno(), 3)
        os.set_inheritable(3, True)  # dup2 onto itself would leave close-on-exec set
        os.environ["LISTEN_FDS"] = "1"
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.execvp(command[0], command)
    listener.close()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
