"""The `netbay` command: a thin client of netbayd (it starts the daemon when needed)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from .. import __version__
from ..client import Client
from ..errors import NetbayError
from . import bgp, cluster, container, docker_cmd, network, observe

# typing costs ~4 ms of start-up the CLI does not need at run time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netbay",
        description="Container networking for Linux: Docker's network models on real kernel "
        "objects, with a Docker-compatible API (netbayd).",
        epilog="Environment: NETBAY_ROOT (state, default /var/lib/netbay), NETBAY_SOCKET "
        "(default /run/netbay/netbay.sock), NETBAY_NETNS_DIR (default /run/netns).",
    )
    parser.add_argument("--version", action="version", version=f"netbay {__version__}")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)
    network.add_parser(sub)
    container.add_parsers(sub)
    observe.add_parsers(sub)
    cluster.add_parser(sub)
    bgp.add_parser(sub)
    docker_cmd.add_parser(sub)

    d = sub.add_parser("daemon", help="control netbayd, or install its systemd units")
    d.add_argument("action", choices=("start", "stop", "status", "install"))
    d.add_argument("--socket-activation", action="store_true",
                   help="install: also netbayd.socket, which holds the API socket for netbayd")
    d.add_argument("--prefix", help="install: the directory for the units "
                   "(default /etc/systemd/system)")
    d.add_argument("--ipv6", action="store_true", help="start: the default bridge is dual "
                   "stack (Docker's daemon.json ipv6; netbayd --ipv6, env NETBAY_IPV6=true)")
    d.add_argument("--fixed-cidr-v6", metavar="CIDR", help="start: the default bridge's IPv6 "
                   "subnet (default: a /64 of this host's ULA /48)")
    d.set_defaults(func=daemon)

    s = sub.add_parser("system", help="maintenance")
    s.add_argument(
        "action",
        choices=("gc", "audit", "reload"),
        help="gc: repair what interrupted operations left; audit: record vs kernel; "
        "reload: rebuild netbay's nftables tables from the record",
    )
    s.set_defaults(func=system)
    add_install_parsers(sub)
    return parser


def add_install_parsers(sub: Any) -> None:
    c = sub.add_parser("cni", help="install the CNI plugins (netbay, netbay-ipam)")
    c.add_argument("action", choices=("install",))
    c.add_argument("--dir", default="/opt/cni/bin", help="CNI plugin directory")
    c.add_argument("--name", default="netbay", help="the interface plugin's file name")
    c.add_argument("--ipam-name", default="netbay-ipam", help="the IPAM plugin's file name")
    p = sub.add_parser("podman", help="install podman's network backend (netavark-compatible)")
    p.add_argument("action", choices=("install",))
    p.add_argument("--dir", required=True, help="a directory of [engine] helper_binaries_dir")
    p.add_argument("--name", default="netavark")
    for parser in (c, p):
        parser.add_argument("--socket", help="netbayd's socket (default $NETBAY_SOCKET or "
                            "/run/netbay/netbay.sock)")
        parser.add_argument("--root", help="netbayd's state root when it is started")
        parser.add_argument("--python", help="interpreter of the executables (default: "
                            "/usr/bin/python3 if 3.10+, else this one)")
        parser.add_argument("--source", action="store_true",
                            help="write the readable script, not precompiled code (slower start)")
    c.set_defaults(func=install_executables)
    p.set_defaults(func=install_executables)


def install_executables(client: Client, args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..install import install_cni, install_netavark
    from .daemon_units import NOT_AT_BOOT, starts_at_boot

    options = {"socket": args.socket, "root": args.root, "python": args.python,
               "source": args.source}
    if args.command_name == "cni":
        paths = install_cni(Path(args.dir), args.name, args.ipam_name, **options)
    else:
        paths = [install_netavark(Path(args.dir), args.name, **options)]
    for path in paths:
        print(path)
    if not starts_at_boot():  # the executables start netbayd themselves: only slower
        print(NOT_AT_BOOT, file=sys.stderr)
    return 0


def install_units(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..daemon.listener import socket_group
    from .daemon_units import SYSTEMD_DIR, enable_command, install

    socket_group(os.environ)  # a group that does not exist fails here, not at boot
    for path in install(Path(args.prefix or SYSTEMD_DIR), args.socket_activation, os.environ):
        print(path)
    print(enable_command(args.socket_activation))
    return 0


def daemon(client: Client, args: argparse.Namespace) -> int:
    if args.action == "install":
        return install_units(args)
    if args.action == "start":
        options = bridge_options(args)
        if not client.ping():
            client.start_daemon(options=options)
        elif options:
            check_bridge_options(client, args)
        print(f"netbayd running, socket {client.paths.socket}")
        return 0
    pid_file = client.paths.root / "netbayd.pid"
    running = client.ping()
    if args.action == "status":
        state = (
            f"running, version {client.get('/version')['Version']}" if running else "not running"
        )
        print(f"netbayd {state}, socket {client.paths.socket}")
        return 0 if running else 3
    if not running or not pid_file.exists():
        print("netbayd not running")
        return 0
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and client.ping():
        time.sleep(0.05)
    print("netbayd stopped")
    return 0


def bridge_options(args: argparse.Namespace) -> list[str]:
    """netbayd's options for the default bridge, checked here first (one line, at once)."""
    if not (args.ipv6 or args.fixed_cidr_v6):
        return []
    from ..engine.default_bridge import ENV_FIXED_CIDR_V6, ENV_IPV6, bridge_defaults

    bridge_defaults({ENV_IPV6: str(args.ipv6), ENV_FIXED_CIDR_V6: args.fixed_cidr_v6 or ""})
    fixed = ["--fixed-cidr-v6", args.fixed_cidr_v6] if args.fixed_cidr_v6 else []
    return ["--ipv6", *fixed]


def check_bridge_options(client: Client, args: argparse.Namespace) -> None:
    """A running netbayd keeps its settings: options it does not have are refused, not
    dropped (stop it, then start it with them)."""
    from ..errors import ConfigError

    bridge = client.get("/networks/bridge")
    subnets6 = [c["Subnet"] for c in bridge["IPAM"]["Config"] if ":" in c["Subnet"]]
    if not bridge["EnableIPv6"]:
        raise ConfigError("ipv6", True, "netbayd runs with an IPv4-only default bridge: "
                          "netbay daemon stop, then start with --ipv6")
    if args.fixed_cidr_v6 and args.fixed_cidr_v6 not in subnets6:
        raise ConfigError("fixed-cidr-v6", args.fixed_cidr_v6, "netbayd runs with "
                          f"{', '.join(subnets6)}: netbay daemon stop, then start with it")


def system(client: Client, args: argparse.Namespace) -> int:
    if args.action == "gc":
        report = client.post("/system/gc")
        print(json.dumps(report, indent=2))
        return 0
    if args.action == "reload":
        client.post("/system/reload")
        print("firewall rebuilt from the record")
        return 0
    found = client.get("/system/audit")
    for problem in found["Problems"]:
        print(problem)
    repairs = found.get("Reconciler", {}).get("Repairs", {})
    if repairs:  # what was put back: not a problem now, so not on stdout
        kinds = ", ".join(f"{kind} {count}" for kind, count in repairs.items())
        print(f"netbayd repaired {sum(repairs.values())} drift(s) since it started ({kinds}); "
              "its log has each", file=sys.stderr)
    return 1 if found["Problems"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    client = Client(autostart=args.command_name != "daemon" or args.action == "start")
    try:
        code: Any = args.func(client, args)
        return int(code or 0)
    except NetbayError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
