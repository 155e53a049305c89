"""`netbay cluster ...`: this node in a cluster of netbay hosts on etcd."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from urllib.parse import quote

from ..client import Client
from . import render

# typing costs ~4 ms of start-up the CLI does not need at run time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def add_parser(sub: Any) -> None:
    c = sub.add_parser("cluster", help="join a cluster of netbay hosts (etcd), list its nodes",
                       description="This node in a cluster of netbay hosts sharing an etcd: "
                       "overlay (-d overlay) and routed (-d routed) networks span every node that "
                       "joined.")
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
    add_bgp_parser(verbs)


def add_bgp_parser(verbs: Any) -> None:
    b = verbs.add_parser("bgp", help="route reflectors and external BGP peers (routed networks)",
                         description="The cluster's BGP configuration, applied by every "
                         "node's netbayd within seconds. By default the nodes peer in a full "
                         "iBGP mesh.")
    kinds = b.add_subparsers(dest="kind", metavar="COMMAND", required=True)
    p = kinds.add_parser("reflector", help="make a node a route reflector (no NODE: list them)",
                         description="With at least one reflector, the full mesh is replaced: "
                         "every other node peers with the reflectors only, and the reflectors "
                         "with each other. Reflected routes keep the next hop of the node they "
                         "came from. Make two, so that one lost leaves the routes in place.")
    p.add_argument("node", nargs="?", metavar="NODE", help="the node's name")
    p.add_argument("--remove", action="store_true", help="NODE is a reflector no more")
    p.add_argument("--format", help="the listing: table (default), json, or a template")
    p.set_defaults(func=reflector)
    peer = kinds.add_parser("peer", help="routers outside the cluster (a top-of-rack switch)")
    actions = peer.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser("add", help="peer with a router by eBGP",
                           description="The nodes announce their blocks to it (and nothing "
                           "else) and take its routes. The router must be on a network of "
                           "the node's interfaces: checked here when the peer is for this node "
                           "(or for every node); a node given with --node checks it itself, "
                           "and logs and leaves out a peer it cannot reach directly.")
    p.add_argument("--address", required=True, help="the router's IPv4 address")
    p.add_argument("--asn", required=True, type=int, help="the router's AS number")
    p.add_argument("--node", help="only this node peers with it (default: every node); "
                   "one given for a node takes precedence over one at the same address for all")
    p.set_defaults(func=peer_add)
    p = actions.add_parser("rm", help="stop peering with a router")
    p.add_argument("--address", required=True, help="the router's IPv4 address")
    p.add_argument("--node", help="the node it was added for (default: the one for every node)")
    p.set_defaults(func=peer_rm)
    p = actions.add_parser("ls", help="list the external peers")
    p.add_argument("--format", help="table (default), json, or a {{.Field}} template")
    p.set_defaults(func=peer_ls)


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


def reflector(client: Client, args: argparse.Namespace) -> int:
    if args.node is None:
        if args.remove:
            print("Error: --remove needs NODE", file=sys.stderr)
            return 1
        found = client.get("/netbay/cluster/bgp/reflectors")
        render.emit(found, args.format, ("NAME", "ADDRESS", "STATE"),
                    lambda n: (n["Name"], n["Address"], n["State"]))
        return 0
    path = f"/netbay/cluster/bgp/reflectors/{quote(args.node, safe='')}"
    if args.remove:
        client.delete(path)
        print(f"{args.node} is no route reflector any more")
    else:
        client.post(path)
        print(f"{args.node} is a route reflector")
    return 0


def peer_add(client: Client, args: argparse.Namespace) -> int:
    client.post("/netbay/cluster/bgp/peers",
                {"Address": args.address, "ASN": args.asn, "Node": args.node})
    print(f"peering with {args.address} (AS {args.asn}) on "
          + (f"node {args.node}" if args.node else "every node"))
    return 0


def peer_rm(client: Client, args: argparse.Namespace) -> int:
    client.delete(f"/netbay/cluster/bgp/peers/{quote(args.address, safe='')}", node=args.node)
    print(f"no longer peering with {args.address} on "
          + (f"node {args.node}" if args.node else "every node"))
    return 0


def peer_ls(client: Client, args: argparse.Namespace) -> int:
    found = client.get("/netbay/cluster/bgp/peers")
    render.emit(found, args.format, ("ADDRESS", "ASN", "NODE"),
                lambda p: (p["Address"], str(p["ASN"]), p["Node"] or "(every node)"))
    return 0


def leave(client: Client, args: argparse.Namespace) -> int:
    client.post("/netbay/cluster/leave")
    print("left the cluster")
    return 0


def _seen(stamp: str | None, state: str) -> str:
    if state in ("ready", "routing"):  # routing: alive, its BGP routes not all in yet
        return "now"
    if not stamp:
        return "unknown"
    since = (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds()
    return "just now" if since < 1 else f"{render.duration(since)} ago"


def held_blocks(node: dict[str, Any]) -> str:
    """Each network with every block the node holds there ("calico 10.0.0.0/26,10.0.0.64/26,
    podnet 10.5.1.0/24"); a daemon of before "Blocks" gives its first block only."""
    blocks = dict(node.get("Blocks") or {k: [v] for k, v in node["Subnets"].items()})
    for network, blocks6 in (node.get("Blocks6") or {}).items():  # a dual-stack network's
        blocks[network] = [*blocks.get(network, []), *blocks6]
    return ", ".join(f"{k} {','.join(v)}" for k, v in blocks.items()) or "-"


def _addresses(node: dict[str, Any]) -> str:
    """The node's underlay address, and its IPv6 one where it has one."""
    return " ".join(a for a in (node["Address"], node.get("Address6")) if a)


def nodes(client: Client, args: argparse.Namespace) -> int:
    found = client.get("/netbay/cluster/nodes")
    render.emit(
        found, args.format,
        ("NAME", "ADDRESS", "STATE", "SUBNETS", "VTEP MAC", "LAST SEEN"),
        lambda n: (n["Name"], _addresses(n), n["State"], held_blocks(n),
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
