"""`netbay docker install|uninstall`: have netbayd serve Docker's network and IPAM plugin.

dockerd finds a legacy plugin by its socket in /run/docker/plugins (no flags, no `docker
plugin install`), so enabling it is netbayd's setting NETBAY_DOCKER_PLUGIN with that path: a
systemd drop-in for netbayd.service, beside what `netbay daemon install` writes, so that the
unit itself stays as installed. Like `daemon install`, nothing is restarted here: the command
prints the systemctl line for the administrator.
"""

from __future__ import annotations

import argparse
import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from ..client import Client

PLUGIN_SOCKET = "/run/docker/plugins/netbay.sock"  # the plugin's name, "netbay", is the file's
DROP_IN = "netbayd.service.d/docker-plugin.conf"
RESTART = "systemctl daemon-reload && systemctl restart netbayd.service"
TRY = (
    "docker network create -d netbay --ipam-driver netbay -o netbay.driver=bridge mynet",
    "docker run --rm --network mynet busybox ip -4 addr show eth0",
)

DROP_IN_TEXT = f"""\
# Written by `netbay docker install`; `netbay docker uninstall` removes it.
[Unit]
# dockerd asks for the plugin as it restores its networks of driver netbay
Before=docker.service

[Service]
Environment=NETBAY_DOCKER_PLUGIN={PLUGIN_SOCKET}
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "docker", help="enable or disable netbayd's Docker plugin (a systemd drop-in)",
        description="install: write a drop-in for netbayd.service so that netbayd serves "
        f"Docker's network and IPAM plugin \"netbay\" on {PLUGIN_SOCKET}, where dockerd "
        "finds it; uninstall: remove it. Neither restarts anything: each prints the "
        "systemctl line to run. docs/docker-plugin.md lists the -o netbay.driver=... "
        "choices and their options.",
    )
    p.add_argument("action", choices=("install", "uninstall"))
    p.add_argument("--unit-dir", help="where netbayd.service's drop-in goes "
                   "(default /etc/systemd/system)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=docker)


def install(unit_dir: Path) -> Path:
    path = unit_dir / DROP_IN
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DROP_IN_TEXT)
    return path


def uninstall(unit_dir: Path) -> bool:
    """Remove the drop-in (and its directory if that leaves it empty); False: there was none."""
    path = unit_dir / DROP_IN
    if not path.exists():
        return False
    path.unlink()
    if not any(path.parent.iterdir()):
        path.parent.rmdir()
    return True


def _text(report: dict[str, Any]) -> list[str]:
    if report["Action"] == "install":
        return [
            f"wrote {report['Path']}: netbayd serves Docker's network and IPAM plugin "
            f"\"netbay\" on {report['PluginSocket']}",
            f"next: {report['Next']}",
            *(f"try:  {line}" for line in report["Try"]),
            f"undo: {report['Undo']}",
        ]
    if not report["Removed"]:
        return [f"nothing to remove: {report['Path']} does not exist"]
    return [f"removed {report['Path']}: netbayd serves no Docker plugin once restarted",
            f"next: {report['Next']}"]


def docker(client: Client, args: argparse.Namespace) -> int:
    from pathlib import Path

    from .daemon_units import SYSTEMD_DIR

    unit_dir = Path(args.unit_dir) if args.unit_dir else SYSTEMD_DIR
    report: dict[str, Any] = {"Action": args.action, "Path": str(unit_dir / DROP_IN)}
    if args.action == "install":
        install(unit_dir)
        undo = "netbay docker uninstall" + (f" --unit-dir {args.unit_dir}" if args.unit_dir else "")
        report.update(PluginSocket=PLUGIN_SOCKET, Next=RESTART, Try=list(TRY), Undo=undo)
    else:
        removed = uninstall(unit_dir)
        report.update(Removed=removed, Next=RESTART if removed else "")
    print(json.dumps(report, indent=2) if args.format == "json" else "\n".join(_text(report)))
    return 0
