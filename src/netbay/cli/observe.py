"""`netbay topology|trace|capture|doctor|rps`: seeing the network. Thin: the daemon reads the
kernel and its record; this module draws what it answers (and, for capture, joins the
daemon's namespace and execs tcpdump so the packets stream to this terminal)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..client import Client, path_of
from ..errors import ConfigError, NetbayError
from . import render

# typing costs ~4 ms of start-up the CLI does not need at run time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FORMATS = ("text", "dot", "svg", "png", "html", "json")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("topology", help="the host's networks, bridges, veths and containers",
                       description="Networks, bridges (and macvlan/ipvlan parents), veth pairs "
                       "with both ends, containers, published ports and NAT, read from the "
                       "kernel and marked where netbay's record disagrees.")
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="text (a tree, default), dot, svg/png (Graphviz), html, json")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(func=topology)

    p = sub.add_parser("trace", help="send a probe and show its path hop by hop",
                       description="SRC and DST are containers, `host` or addresses (IPv4 or "
                       "IPv6). Sends a real probe (ICMP echo, ICMPv6's over IPv6, or TCP/UDP "
                       "with --port) and shows the routes, interfaces, bridges and the "
                       "nftables rules it passed, NAT, and where and why it was dropped.")
    p.add_argument("source", metavar="SRC")
    p.add_argument("destination", metavar="DST")
    p.add_argument("--port", type=str, help="TCP/UDP port (then the probe is TCP by default)")
    p.add_argument("--proto", choices=("tcp", "udp", "icmp"),
                   help="icmp (the default without --port) is ICMPv6 over IPv6")
    family = p.add_mutually_exclusive_group()
    family.add_argument("--family", choices=("4", "6"),
                        help="probe containers at their IPv4 or IPv6 address (default: an "
                        "address given decides, else IPv4 where a container has it)")
    family.add_argument("-4", dest="family", action="store_const", const="4",
                        help="same as --family 4")
    family.add_argument("-6", dest="family", action="store_const", const="6",
                        help="same as --family 6")
    p.add_argument("--timeout", type=str, default="1", help="seconds to wait for an answer")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=trace)

    p = sub.add_parser("capture", help="tcpdump on a container's or network's interface",
                       description="Runs tcpdump on the container's veth host end (or inside "
                       "it when it has none) or the network's bridge, in the daemon's "
                       "network namespace.")
    p.add_argument("target", metavar="CONTAINER|NETWORK")
    _capture_options(p)
    p.add_argument("expression", nargs=argparse.REMAINDER, metavar="FILTER",
                   help="a tcpdump filter (options may come before or after it; tcpdump's "
                   "own flags after --)")
    p.set_defaults(func=capture)

    p = sub.add_parser("doctor", help="check what commonly breaks container networking")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=doctor)

    p = sub.add_parser("rps", help="receive packet steering: show or set CPU masks")
    verbs = p.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    s = verbs.add_parser("show", help="rps_cpus, rps_flow_cnt, xps_cpus and per-CPU counts")
    s.add_argument("target", nargs="?", metavar="IFACE|NETWORK|CONTAINER")
    s.add_argument("--format", choices=("text", "json"), default="text")
    s.set_defaults(func=rps_show)
    s = verbs.add_parser("set", help="set the RPS CPUs (and RFS flows) of interfaces")
    s.add_argument("target", metavar="IFACE|NETWORK|CONTAINER")
    s.add_argument("--cpus", required=True, help="a CPU list (0-3,6), auto (all) or none")
    s.add_argument("--flows", help="rps_flow_cnt per receive queue (RFS); default 4096")
    s.add_argument("--format", choices=("text", "json"), default="text")
    s.set_defaults(func=rps_set)


def _capture_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-w", "--write", metavar="FILE", help="write packets to a pcap file")
    parser.add_argument("-c", "--count", type=int, help="stop after this many packets")
    parser.add_argument("--network", help="which of the container's networks")


def _capture_args(args: argparse.Namespace) -> argparse.Namespace:
    """Options given after CONTAINER (`capture a1 -c 2 icmp`) are read here: argparse stops
    at the first word of the filter otherwise."""
    words = list(args.expression)
    raw = words[words.index("--") + 1:] if "--" in words else []  # tcpdump's own, as given
    words = words[:words.index("--")] if "--" in words else words
    rest = argparse.ArgumentParser(prog="netbay capture", add_help=False)
    _capture_options(rest)
    rest.add_argument("expression", nargs="*")
    late = rest.parse_intermixed_args(words)
    late.expression += raw
    for key in ("write", "count", "network"):
        if getattr(late, key) is None:
            setattr(late, key, getattr(args, key))
    late.target = args.target
    return late


def _write(data: bytes, output: str | None) -> None:
    if output:
        Path(output).write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def topology(client: Client, args: argparse.Namespace) -> int:
    from ..observe import draw
    from ..observe.topology import render_text

    if args.format == "png" and not args.output and sys.stdout.isatty():
        raise ConfigError("format", "png", "binary output: give -o FILE (or redirect stdout)")
    topo = client.get("/netbay/topology")
    if args.format == "json":
        data = json.dumps(topo, indent=2).encode() + b"\n"
    elif args.format == "text":
        data = render_text(topo).encode() + b"\n"
    elif args.format == "dot":
        data = draw.to_dot(topo).encode()
    elif args.format in ("svg", "png"):
        data = draw.graphviz(draw.to_dot(topo), args.format)
    else:
        svg = None
        try:
            svg = draw.graphviz(draw.to_dot(topo), "svg").decode()
        except ConfigError:
            print("note: Graphviz's dot is missing: the page has no graph", file=sys.stderr)
        data = draw.to_html(topo, svg).encode()
    _write(data, args.output)
    return 1 if topo["problems"] else 0


def trace(client: Client, args: argparse.Namespace) -> int:
    from ..observe.hops import render as render_trace

    result = client.post("/netbay/trace", {
        "Source": args.source, "Destination": args.destination, "Port": args.port,
        "Proto": args.proto, "Timeout": args.timeout, "Family": args.family,
    })
    if args.format == "json":
        render.dump_json(result)
    else:
        print(render_trace(result))
    return 0 if result["outcome"]["delivered"] else 1


def capture(client: Client, args: argparse.Namespace) -> int:
    from ..observe.capture import enter_and_exec, tcpdump_argv

    args = _capture_args(args)
    if args.count is not None and args.count < 1:
        raise ConfigError("count", args.count, "expected 1 or more packets")
    target = client.get(path_of("netbay", "capture", args.target), network=args.network)
    argv = tcpdump_argv(target["interface"], args.expression, args.write, args.count)
    netns = target["netns"] or f"/proc/{target['daemon_pid']}/ns/net"
    print(f"capturing on {target['what']}", file=sys.stderr, flush=True)
    client.close()
    try:
        enter_and_exec(netns, argv)
    except OSError as exc:
        raise NetbayError(f"cannot run tcpdump in {netns}: {exc.strerror or exc} (capture "
                          "joins the daemon's network namespace: it needs root)") from None
    return 0  # not reached


def doctor(client: Client, args: argparse.Namespace) -> int:
    from ..observe.doctor import render as render_doctor

    findings = client.get("/netbay/doctor")["Findings"]
    if args.format == "json":
        render.dump_json(findings)
    else:
        print(render_doctor(findings))
    return 1 if any(f["status"] in ("warn", "fail") for f in findings) else 0


def _rps_print(report: dict[str, Any], fmt: str) -> None:
    from ..observe import rps

    if fmt == "json":
        render.dump_json(report)
        return
    print(render.table(rps.INTERFACE_HEADERS, rps.interface_rows(report)))
    print()
    print(render.table(rps.SOFTNET_HEADERS, rps.softnet_rows(report)))
    entries = report["sock_flow_entries"]
    print(f"\nonline CPUs {report['online']}; rps_sock_flow_entries "
          f"{entries if entries is not None else 'not visible here (global: root namespace)'}")
    for note in report["notes"]:
        print(note)


def rps_show(client: Client, args: argparse.Namespace) -> int:
    _rps_print(client.get("/netbay/rps", target=args.target), args.format)
    return 0


def rps_set(client: Client, args: argparse.Namespace) -> int:
    report = client.post("/netbay/rps",
                         {"Target": args.target, "Cpus": args.cpus, "Flows": args.flows})
    _rps_print(report, args.format)
    return 0
