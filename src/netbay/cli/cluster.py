"""`netbay cluster ...`: this node in a cluster of netbay hosts on etcd."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from ..client import Client
from . import render

# typing costs ~4 ms of start-up the CLI does not need at run time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def add_parser(sub: Any) -> None:
    c = sub.add_parser("cluster", help="join a cluster of netbay hosts (etcd), list its nodes",
                       description="This node in a cluster of netbay hosts sharing an etcd: "
                       "overlay networks (-d overlay) span every node that joined.")
    verbs = c.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    p = verbs.add_parser("join", help="join the cluster whose record is in etcd",
                         description="Join now and at every daemon start after (the settings "
                         "are kept in the state root) until `cluster leave`.")
    p.add_argument("--etcd", required=True, metavar="URL[,URL...]",
                   help="etcd client URLs, e.g. http://10.0.0.5:2379 (several: commas)")
    p.add_argument("--node", help="this node's name (default: the hostname)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--address", help="this node's underlay address (default: the source "
                       "address of the route towards the first etcd endpoint)")
    where.add_argument("--interface", metavar="IFACE",
                       help="take the underlay address from this link")
    p.add_argument("--etcd-ca", metavar="FILE", help="CA bundle of etcd's certificates")
    p.add_argument("--etcd-cert", metavar="FILE", help="client certificate for etcd")
    p.add_argument("--etcd-key", metavar="FILE", help="the client certificate's key")
    p.add_argument("--ttl", type=int, help="seconds without renewal until a node is lost "
                   "(default 15)")
    p.add_argument("--grace", type=int, help="seconds a lost node's subnets stay reserved "
                   "for it (default 3600)")
    p.set_defaults(func=join)
    p = verbs.add_parser("leave", help="leave the cluster, releasing what this node holds")
    p.set_defaults(func=leave)
    for verb, helptext, func in (("nodes", "list the cluster's nodes", nodes),
                                 ("status", "etcd's health and how current this node is",
                                  status)):
        p = verbs.add_parser(verb, help=helptext)
        p.add_argument("--format", help="table (default), json, or a {{.Field}} template")
        p.set_defaults(func=func)


def join(client: Client, args: argparse.Namespace) -> int:
    from pathlib import Path

    body: dict[str, Any] = {"Etcd": args.etcd.split(","), "Node": args.node,
                            "Address": args.address, "Interface": args.interface,
                            "TTL": args.ttl, "Grace": args.grace}
    for field, value in (("EtcdCA", args.etcd_ca), ("EtcdCert", args.etcd_cert),
                         ("EtcdKey", args.etcd_key)):
        if value:
            body[field] = str(Path(value).resolve())  # the daemon's directory is not ours
    node = client.post("/netbay/cluster/join", body)
    print(f"joined as {node['Name']} ({node['Address']}), node id {node['Id']}")
    return 0


def leave(client: Client, args: argparse.Namespace) -> int:
    client.post("/netbay/cluster/leave")
    print("left the cluster")
    return 0


def _seen(stamp: str | None, state: str) -> str:
    if state == "ready":
        return "now"
    if not stamp:
        return "unknown"
    since = (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds()
    return "just now" if since < 1 else f"{render.duration(since)} ago"


def nodes(client: Client, args: argparse.Namespace) -> int:
    found = client.get("/netbay/cluster/nodes")
    render.emit(
        found, args.format,
        ("NAME", "ADDRESS", "STATE", "SUBNETS", "VTEP MAC", "LAST SEEN"),
        lambda n: (n["Name"], n["Address"], n["State"],
                   ", ".join(f"{k} {v}" for k, v in n["Subnets"].items()) or "-",
                   ", ".join(sorted(set(n["VtepMacs"].values()))) or "-",
                   _seen(n["LastSeen"], n["State"])),
    )
    return 0


def status(client: Client, args: argparse.Namespace) -> int:
    found = client.get("/netbay/cluster/status")
    if args.format and args.format != "table":
        render.emit([found], args.format, (), lambda s: ())
        return 0
    healthy = sum(1 for e in found["Endpoints"] if e["Healthy"])
    print(f"node {found['Node']}: revision seen {found['Seen']}, etcd at {found['Revision']} "
          f"(lag {found['Lag']}), watch {'connected' if found['Watching'] else 'reconnecting'}")
    lease = found["Lease"]
    renewal = lease["LastRenewal"]
    print(f"lease: last renewed {_seen(renewal, 'lost') if renewal else 'never'}"
          + (f", {lease['Failures']} renewal(s) failed: {lease['Error']}" if lease["Failures"]
             else ""))
    rows = [(e["Url"], "healthy" if e["Healthy"] else "unreachable",
             "leader" if e["Leader"] else "", e["Version"], str(e["Revision"] or ""),
             e["Error"]) for e in found["Endpoints"]]
    print(render.table(("ENDPOINT", "HEALTH", "ROLE", "VERSION", "REVISION", "ERROR"), rows))
    if not healthy:
        print("no etcd endpoint answers: the data plane keeps its last state", file=sys.stderr)
    return 0 if healthy else 1
