"""`netbay daemon install`: systemd units for netbayd. netbayd.service runs this installation's
daemon (this interpreter, `-m netbay.daemon`) with the NETBAY_* settings of the environment
the command runs in; with socket activation, netbayd.socket holds the API socket and hands it
to netbayd (sd_listen_fds). The units are written, never enabled: the command prints the
systemctl line for the administrator. packaging/systemd/ holds the same units for a distro
package (tests/unit/test_daemon_units.py keeps the two equal).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path

from ..paths import DEFAULT_SOCKET

SYSTEMD_DIR = Path("/etc/systemd/system")
SETTINGS = ("NETBAY_ROOT", "NETBAY_SOCKET", "NETBAY_NETNS_DIR", "NETBAY_RESOLV_CONF",
            "NETBAY_SOCKET_GROUP")
_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")

SERVICE = """\
[Unit]
Description=netbay container networking daemon (Docker-compatible API)
After=network-online.target nftables.service{after_socket}
Wants=network-online.target{wants_socket}

[Service]
# READY=1 once the API answers: units ordered after this one find it serving
Type=notify
ExecStart={exec_start}
{environment}\
# the containers of `netbay run -d` and the DNS server are netbayd's children: stopping or
# restarting the daemon must leave them running (Docker's and containerd's units do so)
KillMode=process
Delegate=yes
TasksMax=infinity
LimitNOFILE=1048576
Restart=on-failure
RestartSec=2s

[Install]
WantedBy=multi-user.target
"""

SOCKET = """\
[Unit]
Description=netbay API socket (netbayd starts on the first connection)

[Socket]
ListenStream={path}
SocketMode=0660
SocketUser=root
{group}\
Backlog=256

[Install]
WantedBy=sockets.target
"""


def _quoted(word: str) -> str:
    """One word of a unit's command line or setting: % and $ are systemd's, spaces split."""
    word = word.replace("%", "%%")
    if _PLAIN.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$") + '"'


def units(daemon: list[str], environ: Mapping[str, str], activation: bool) -> dict[str, str]:
    """File name -> text: netbayd.service running DAEMON (argv), and netbayd.socket."""
    settings = [f"{name}={environ[name]}" for name in SETTINGS if environ.get(name)]
    text = {
        "netbayd.service": SERVICE.format(
            after_socket=" netbayd.socket" if activation else "",
            wants_socket=" netbayd.socket" if activation else "",
            exec_start=" ".join(_quoted(word) for word in daemon),
            environment="".join(f"Environment={_quoted(s)}\n" for s in settings),
        )
    }
    if activation:
        group = environ.get("NETBAY_SOCKET_GROUP")
        path = environ.get("NETBAY_SOCKET") or DEFAULT_SOCKET
        text["netbayd.socket"] = SOCKET.format(
            path=path.replace("%", "%%"),  # the rest of the line, unquoted
            group=f"SocketGroup={group}\n" if group else "",
        )
    return text


def install(directory: Path, activation: bool, environ: Mapping[str, str]) -> list[Path]:
    """Write the units into DIRECTORY; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in units([sys.executable, "-m", "netbay.daemon"], environ,
                            activation).items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def enable_command(activation: bool) -> str:
    """What the administrator runs next. The service starts at boot either way: a daemon
    started by the first connection makes that client wait its whole start-up (1-2 s,
    measured by benchmarks/daemon_server.py --boots), where one started at boot answers
    the first command as fast as any other; the socket lets clients that come before the
    daemon is ready, or while it restarts, wait in its backlog instead of failing."""
    units_ = "netbayd.socket netbayd.service" if activation else "netbayd.service"
    return f"systemctl daemon-reload && systemctl enable --now {units_}"


BOOT_LINK = Path("multi-user.target.wants") / "netbayd.service"  # what `systemctl enable` makes
NOT_AT_BOOT = ("note: netbayd.service is not enabled here, so the first container after each "
               "boot waits for netbayd to start (~0.25 s, most of it Python's imports); "
               "`netbay daemon install` writes the unit and prints the line that enables it")


def starts_at_boot(systemd_dir: Path | None = None) -> bool:
    """Whether systemd starts netbayd at boot: the link `systemctl enable` made, to a unit
    that is there (a link left by a removed unit starts nothing)."""
    return ((systemd_dir or SYSTEMD_DIR) / BOOT_LINK).exists()
