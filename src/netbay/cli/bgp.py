"""`netbay bgp status`: the BGP sessions of this node's BIRD (routed networks), or of another
node of the cluster as it published them."""

from __future__ import annotations

import argparse
import time

from ..client import Client
from . import render

# typing costs ~4 ms of start-up the CLI does not need at run time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

HEADERS = ("PEER", "ADDRESS", "ASN", "STATE", "UPTIME", "ROUTES")


def add_parser(sub: Any) -> None:
    b = sub.add_parser("bgp", help="the BGP sessions of routed networks",
                       description="Each node of a routed network (-d routed) runs BIRD: its "
                       "BGP sessions with the other nodes and with external peers.")
    verbs = b.add_subparsers(dest="verb", metavar="COMMAND", required=True)
    p = verbs.add_parser("status", help="each session: peer, state, uptime, routes",
                         description="Without --node: this node's sessions, read from its "
                         "BIRD now. With --node: what that node published in the cluster "
                         "record at its last sync (every 5 s).")
    p.add_argument("--node", help="a node of the cluster (name or id)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=status)


def status(client: Client, args: argparse.Namespace) -> int:
    found = client.get("/netbay/bgp/status", node=args.node)  # None: left out
    if args.format == "json":
        render.dump_json(found)
    else:
        print(status_text(found, time.time()))
    return 0


def status_text(found: Mapping[str, Any], now: float) -> str:
    """The answer of /netbay/bgp/status for people: a table of the sessions, or why there
    is none."""
    if not found["Running"]:
        if found["Live"]:
            return f"bird is not running on {found['Node']}: no routed network here"
        return f"{found['Node']} publishes no BGP sessions: its bird is not running"
    return render.table(HEADERS, [
        (s["Peer"], s["Address"], str(s["Asn"] or "-"), s["State"],
         render.duration(now - s["Since"]), f"{s['Imported']}/{s['Exported']}")
        for s in found["Sessions"]
    ])
