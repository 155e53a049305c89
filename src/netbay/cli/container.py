"""`netbay run|ps|exec|stop|rm|inspect`: lightweight containers on the host's filesystem."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from ..client import ApiError, Client, path_of
from . import render

# typing costs ~4 ms of start-up the CLI does not need at run time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a command in a new container",
        add_help=False,
        description="Run CMD in new network, UTS and mount namespaces.",
    )
    p.add_argument("-d", "--detach", action="store_true", help="run in the background, print ID")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--name")
    p.add_argument(
        "--network",
        "--net",
        action="append",
        default=[],
        help="network to join (default: bridge); host and none are modes",
    )
    p.add_argument("--ip", help="IPv4 address on the (first) network")
    p.add_argument("--ip6", help="IPv6 address on the (first) network")
    p.add_argument("--network-alias", "--alias", action="append", default=[], dest="alias")
    p.add_argument("-h", "--hostname")
    p.add_argument("--dns", action="append", default=[], help="nameserver for resolv.conf")
    p.add_argument("--dns-search", action="append", default=[])
    p.add_argument("--dns-option", action="append", default=[])
    p.add_argument("--add-host", action="append", default=[], metavar="HOST:IP")
    p.add_argument("-p", "--publish", action="append", default=[],
                   metavar="[IP:][HOSTPORT:]PORT[/PROTO]",
                   help="publish a container port (ranges: 8000-8099:8000-8099); no IP: on "
                   "every host address of both families, 0.0.0.0 on IPv4's only, [::] on "
                   "IPv6's only, [2001:db8::1]:8080:80 on one IPv6 address")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-w", "--workdir")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    p.add_argument("--help", action="help", help="show this help message and exit")
    p.set_defaults(func=run)

    p = sub.add_parser(
        "ps",
        help="list containers",
        description="List running containers and the attachments container runtimes made "
        "through netbay (CNI, podman's netavark interface, Docker's plugin), each named as "
        "its runtime names it (RUNTIME: netbay, cni, podman or docker). A runtime's "
        "attachment is listed without -a: its runtime runs the process, and whatever that "
        "process does, the attachment holds its addresses, ports and names until the "
        "runtime removes it.",
    )
    p.add_argument("-a", "--all", action="store_true", help="also stopped netbay containers")
    p.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", help="table (default), json (with Runtime and RuntimeID: "
                   "the runtime's id, IPAddresses: both families'), or a {{.Field}} template")
    p.set_defaults(func=ps)

    p = sub.add_parser("exec", help="run a command inside a running container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    p.set_defaults(func=exec_)

    p = sub.add_parser("stop", help="stop containers (SIGTERM, then SIGKILL)")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-t", "--time", type=float, default=10.0, help="seconds before SIGKILL")
    p.set_defaults(func=stop)

    p = sub.add_parser("rm", help="remove containers and their endpoints")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.add_argument("-f", "--force", action="store_true", help="stop running ones first")
    p.set_defaults(func=rm)

    p = sub.add_parser("port", help="list a container's published ports")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("port", nargs="?", metavar="PORT[/PROTO]")
    p.set_defaults(func=port)

    p = sub.add_parser("inspect", help="show containers or networks as JSON")
    p.add_argument("objects", nargs="+", metavar="NAME")
    p.add_argument("-f", "--format", help="a {{.Field}} template")
    p.set_defaults(func=inspect)


def _command(args: argparse.Namespace) -> list[str]:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    return command


def run(client: Client, args: argparse.Namespace) -> int:
    command = _command(args)
    if not command:
        print(
            "Error: invalid command '': a command to run is required (netbay run ... -- CMD)",
            file=sys.stderr,
        )
        return 125
    networks = args.network or ["bridge"]
    body = {
        "Name": args.name,
        "Hostname": args.hostname,
        "Cmd": command,
        "Networks": [
            {
                "Network": n,
                "IPv4Address": args.ip if i == 0 else None,
                "IPv6Address": args.ip6 if i == 0 else None,
                "Aliases": args.alias if i == 0 else [],
            }
            for i, n in enumerate(networks)
        ],
        "Dns": args.dns,
        "DnsSearch": args.dns_search,
        "DnsOptions": args.dns_option,
        "ExtraHosts": args.add_host,
        "Env": args.env,
        "WorkingDir": args.workdir,
        "Publish": args.publish,
    }
    cid = client.post("/containers/create", body)["Id"]
    if args.detach:
        client.post(path_of("containers", cid, "start"))
        print(cid)
        return 0
    return _run_foreground(client, cid, remove=args.rm)


def _run_foreground(client: Client, cid: str, remove: bool) -> int:
    """The client itself runs the process, with this terminal's stdio, and reports back."""
    from ..runtime import process

    info = client.get(path_of("containers", cid, "json"))
    spec = _launch_spec(info)
    child = process.spawn(spec)
    client.post(path_of("containers", cid, "started"), {"Pid": child.pid})
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: child.send_signal(s))
    code = child.wait()
    code = 128 - code if code < 0 else code
    client.post(path_of("containers", cid, "exited"), {"ExitCode": code})
    if remove:
        client.delete(path_of("containers", cid), force=1)
    return code


def _launch_spec(info: dict[str, Any]) -> dict[str, Any]:
    from ..paths import Paths

    directory = Paths.from_env().container_dir(info["Id"])
    mode = info["HostConfig"]["NetworkMode"]
    return {
        "netns": info["NetworkSettings"]["SandboxKey"] or None,
        "hostname": "" if mode == "host" else info["Config"]["Hostname"],
        "files": {f"/etc/{f}": str(directory / f) for f in ("hosts", "hostname", "resolv.conf")},
        "command": info["Config"]["Cmd"],
        "env": dict(e.split("=", 1) for e in info["Config"]["Env"]),
        "workdir": None,
    }


def _status(c: dict[str, Any]) -> str:
    state: dict[str, Any] = c["State"]
    if state["Status"] == "running":
        return "Up"
    if state["Status"] == "exited":
        code = state["ExitCode"]
        return f"Exited ({code if code is not None else '?'})"
    return str(state["Status"]).capitalize()


def ps(client: Client, args: argparse.Namespace) -> int:
    items = client.get("/containers/json", all=1 if args.all else None)
    width = None if args.no_trunc else 12
    if args.quiet:
        for c in items:
            print(c["Id"][:width])
        return 0
    rows = []
    for c in items:
        command = " ".join(c["Config"]["Cmd"])
        runtime = c["Runtime"]
        rows.append(
            {
                "ID": c["Id"][:width],
                "Command": command,
                "CreatedAt": c["Created"],
                "RunningFor": render.ago(c["Created"]),
                "Status": _status(c) if runtime["Name"] == "netbay" else "Attached",
                "Names": runtime["ContainerName"],
                "Networks": ",".join(c["NetworkSettings"]["Networks"]),
                "IPAddresses": ",".join(_addresses(c)),
                "Pid": c["State"]["Pid"],
                "Runtime": runtime["Name"],
                "RuntimeID": runtime["ContainerID"],
            }
        )

    def short(cmd: str) -> str:
        return f'"{cmd[:19]}…"' if len(cmd) > 20 and width else f'"{cmd}"'

    render.emit(
        rows,
        args.format,
        ("CONTAINER ID", "COMMAND", "CREATED", "STATUS", "NETWORKS", "RUNTIME", "NAMES"),
        lambda r: (
            r["ID"],
            short(r["Command"]),
            r["RunningFor"],
            r["Status"],
            r["Networks"],
            r["Runtime"],
            r["Names"],
        ),
    )
    return 0


def _addresses(c: dict[str, Any]) -> list[str]:
    """The container's addresses on its networks, each network's IPv4 one first."""
    found = []
    for settings in c["NetworkSettings"]["Networks"].values():
        found += [settings.get(k) for k in ("IPAddress", "GlobalIPv6Address")]
    return [a for a in found if a]


def exec_(client: Client, args: argparse.Namespace) -> int:
    """Join the container's net, uts and mount namespaces and exec (no helper process)."""
    from .. import _linux

    command = _command(args)
    if not command:
        print("Error: invalid command '': a command to run is required", file=sys.stderr)
        return 125
    info = client.get(path_of("containers", args.container, "json"))
    if not info["State"]["Running"]:
        print(f"Error: container {args.container} is not running", file=sys.stderr)
        return 126
    pid = info["State"]["Pid"]
    flags = {"net": _linux.CLONE_NEWNET, "uts": _linux.CLONE_NEWUTS, "mnt": _linux.CLONE_NEWNS}
    fds = {ns: os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY) for ns in flags}
    for ns, fd in fds.items():
        _linux.setns(fd, flags[ns])
        os.close(fd)
    try:
        os.execvp(command[0], command)
    except FileNotFoundError:
        print(f"Error: {command[0]}: command not found", file=sys.stderr)
        return 127
    return 0


def port(client: Client, args: argparse.Namespace) -> int:
    """As `docker port`: '80/tcp -> 0.0.0.0:8080', one line per binding."""
    ports = client.get(path_of("containers", args.container, "json"))["NetworkSettings"]["Ports"]
    wanted = args.port if not args.port or "/" in args.port else f"{args.port}/tcp"
    for key, bindings in sorted(ports.items(), key=lambda kv: int(kv[0].split("/")[0])):
        if wanted and key != wanted:
            continue
        for b in bindings:
            print(f"{key} -> {b['HostIp']}:{b['HostPort']}" if not wanted
                  else f"{b['HostIp']}:{b['HostPort']}")
    return 0


def stop(client: Client, args: argparse.Namespace) -> int:
    return render.each(
        args.containers, lambda ref: client.post(path_of("containers", ref, "stop"), t=args.time)
    )


def rm(client: Client, args: argparse.Namespace) -> int:
    return render.each(
        args.containers,
        lambda ref: client.delete(path_of("containers", ref), force=1 if args.force else None),
    )


def inspect(client: Client, args: argparse.Namespace) -> int:
    """Containers first, then networks, as `docker inspect` does."""
    found, failed = [], 0
    for ref in args.objects:
        for parts in (("containers", ref, "json"), ("networks", ref)):
            try:
                found.append(client.get(path_of(*parts)))
                break
            except ApiError as exc:
                if exc.http_status != 404:
                    raise
        else:
            print(f"Error: no such object: {ref}", file=sys.stderr)
            failed = 1
    render.inspected(found, args.format)
    return failed
