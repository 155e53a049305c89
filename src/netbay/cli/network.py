"""`netbay network ...`: Docker's flags and output shapes."""

from __future__ import annotations

import argparse
import sys

from ..client import Client, path_of
from ..daemon import addresses
from ..errors import ConfigError
from . import render

# typing costs ~4 ms of start-up the CLI does not need at run time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def add_parser(sub: Any) -> None:
    net = sub.add_parser("network", help="manage networks", description="Manage networks")
    verbs = net.add_subparsers(dest="verb", metavar="COMMAND", required=True)

    p = verbs.add_parser("create", help="create a network")
    p.add_argument("name", metavar="NETWORK")
    p.add_argument("-d", "--driver", default="bridge",
                   help="bridge (default), macvlan, ipvlan; cluster-wide: overlay (-o "
                   "backend=auto|vxlan|host-gw, -o vni=N, -o vxlan_port=P, -o subnet_size=N) "
                   "or routed (BGP, no bridge: -o encap=cross-subnet|always|never, "
                   "-o block_size=N, -o asn=N)")
    p.add_argument("--subnet", action="append", default=[],
                   help="subnet in CIDR form, IPv4 or IPv6 (repeat for several, of both "
                   "families for dual stack)")
    p.add_argument("--gateway", action="append", default=[],
                   help="gateway of a subnet (goes to the --subnet of its family holding it)")
    p.add_argument("--ip-range", action="append", default=[], help="allocate from a sub-range")
    add_bool_flag(p, "ipv6", False, "IPv6 too (dual stack); without an IPv6 --subnet, a /64 "
                  "of this host's ULA /48")
    add_bool_flag(p, "ipv4", True, "IPv4 (default true; --ipv4=false with --ipv6: IPv6 only)")
    p.add_argument(
        "--aux-address",
        action="append",
        default=[],
        metavar="NAME=IP",
        help="addresses IPAM must not hand out",
    )
    p.add_argument("--internal", action="store_true", help="no access to or from outside")
    p.add_argument("--attachable", action="store_true", help="accepted for compatibility")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "-o",
        "--opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="driver option, e.g. com.docker.network.bridge.name=br0",
    )
    p.set_defaults(func=create)

    p = verbs.add_parser("ls", aliases=["list"], help="list networks")
    p.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="driver, id, label, name, scope, type (custom|builtin), dangling",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", help="table (default), json, or a {{.Field}} template")
    p.set_defaults(func=ls)

    p = verbs.add_parser("inspect", help="show networks as JSON")
    p.add_argument("networks", nargs="+", metavar="NETWORK")
    p.add_argument("-f", "--format", help="a {{.Field}} template")
    p.set_defaults(func=inspect)

    p = verbs.add_parser("rm", aliases=["remove"], help="remove networks")
    p.add_argument("networks", nargs="+", metavar="NETWORK")
    p.set_defaults(func=rm)

    p = verbs.add_parser("prune", help="remove networks no container uses")
    p.add_argument("-f", "--force", action="store_true", help="do not ask")
    p.set_defaults(func=prune)

    p = verbs.add_parser("connect", help="connect a container to a network")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("--ip", help="IPv4 address")
    p.add_argument("--ip6", help="IPv6 address")
    p.add_argument("--alias", action="append", default=[], help="network-scoped alias")
    p.set_defaults(func=connect)

    p = verbs.add_parser("disconnect", help="disconnect a container from a network")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("-f", "--force", action="store_true")
    p.set_defaults(func=disconnect)


_TRUE = ("1", "t", "T", "true", "TRUE", "True")  # what docker's bool flags take after '='
_FALSE = ("0", "f", "F", "false", "FALSE", "False")


def add_bool_flag(p: Any, name: str, default: bool, help: str) -> None:
    """--NAME, or --NAME=true|false, as docker's bool flags: never a value of its own after
    a space (it would take the network's name)."""
    p.add_argument(f"--{name}", dest=name, action="store_true", default=default, help=help)
    for words, action in ((_TRUE, "store_true"), (_FALSE, "store_false")):
        for word in words:
            p.add_argument(f"--{name}={word}", dest=name, action=action, help=argparse.SUPPRESS)


def key_values(field: str, items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(field, item, "expected KEY=VALUE")
        out[key] = value
    return out


def ipam_config(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Pair each --gateway/--ip-range/--aux-address with the --subnet of its family that
    contains it (docker's pairing: IPv4 and IPv6 subnets may be given together)."""
    subnets = [addresses.subnet("subnet", s) for s in args.subnet]
    configs: list[dict[str, Any]] = [{"Subnet": str(s)} for s in subnets]

    def owner(field: str, value: str, contains: Any) -> dict[str, Any]:
        for subnet, config in zip(subnets, configs, strict=True):
            if contains(subnet):
                return config
        raise ConfigError(field, value, "not inside any --subnet")

    for gw in args.gateway:
        address = addresses.address("gateway", gw)
        config = owner("gateway", gw, lambda s, a=address: a in s)
        if "Gateway" in config:
            raise ConfigError("gateway", gw, f"subnet {config['Subnet']} has a gateway already")
        config["Gateway"] = gw
    for rng in args.ip_range:
        network = addresses.subnet("ip-range", rng)
        config = owner("ip-range", rng,
                       lambda s, n=network: s.version == n.version and n.subnet_of(s))
        if "IPRange" in config:
            raise ConfigError("ip-range", rng, f"subnet {config['Subnet']} has an ip-range already")
        config["IPRange"] = rng
    for name, value in key_values("aux-address", args.aux_address).items():
        address = addresses.address("aux-address", value)
        config = owner("aux-address", f"{name}={value}", lambda s, a=address: a in s)
        config.setdefault("AuxiliaryAddresses", {})[name] = value
    return configs


def create(client: Client, args: argparse.Namespace) -> int:
    body = {
        "Name": args.name,
        "CheckDuplicate": True,
        "Driver": args.driver,
        "Internal": args.internal,
        "Attachable": args.attachable,
        "EnableIPv6": args.ipv6,
        "EnableIPv4": args.ipv4,
        "IPAM": {"Driver": "default", "Config": ipam_config(args), "Options": {}},
        "Options": key_values("opt", args.opt),
        "Labels": key_values("label", args.label),
    }
    print(client.post("/networks/create", body)["Id"])
    return 0


def ls(client: Client, args: argparse.Namespace) -> int:
    filters: dict[str, dict[str, bool]] = {}
    for item in args.filter:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("filter", item, "expected KEY=VALUE")
        filters.setdefault(key, {})[value] = True
    import json

    nets = client.get("/networks", filters=json.dumps(filters) if filters else None)
    nets.sort(key=lambda n: n["Name"])
    width = None if args.no_trunc else 12
    if args.quiet:
        for n in nets:
            print(n["Id"][:width])
        return 0
    # docker's ls fields IPv4 and IPv6 ("true"/"false"); the table shows IPV6 only when
    # some network has it, so an IPv4-only host's table stays as docker's
    rows = [{**n, "ID": n["Id"][:width], "IPv4": _flag(n.get("EnableIPv4", True)),
             "IPv6": _flag(n.get("EnableIPv6"))} for n in nets]
    headers: tuple[str, ...] = ("NETWORK ID", "NAME", "DRIVER", "SCOPE")
    if any(n.get("EnableIPv6") for n in nets):
        headers += ("IPV4", "IPV6")
    render.emit(
        rows,
        args.format,
        headers,
        lambda n: (n["ID"], n["Name"], n["Driver"], n["Scope"], n["IPv4"], n["IPv6"])[
            : len(headers)],
    )
    return 0


def _flag(value: object) -> str:
    return "true" if value else "false"


def inspect(client: Client, args: argparse.Namespace) -> int:
    found, failed = [], 0
    for ref in args.networks:
        try:
            found.append(client.get(path_of("networks", ref)))
        except Exception as exc:
            print(f"Error: {exc}", file=sys.stderr)
            failed = 1
    render.inspected(found, args.format)
    return failed


def rm(client: Client, args: argparse.Namespace) -> int:
    return render.each(args.networks, lambda ref: client.delete(path_of("networks", ref)))


def prune(client: Client, args: argparse.Namespace) -> int:
    if not args.force:
        print("WARNING! This will remove all custom networks not used by at least one container.")
        answer = input("Are you sure you want to continue? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    deleted = client.post("/networks/prune").get("NetworksDeleted") or []
    if deleted:
        print("Deleted Networks:")
        print("\n".join(deleted))
    return 0


def connect(client: Client, args: argparse.Namespace) -> int:
    config: dict[str, Any] = {"Aliases": args.alias}
    static = {"IPv4Address": args.ip, "IPv6Address": args.ip6}
    if args.ip or args.ip6:
        config["IPAMConfig"] = {k: v for k, v in static.items() if v}
    client.post(
        path_of("networks", args.network, "connect"),
        {"Container": args.container, "EndpointConfig": config},
    )
    return 0


def disconnect(client: Client, args: argparse.Namespace) -> int:
    client.post(
        path_of("networks", args.network, "disconnect"),
        {"Container": args.container, "Force": args.force},
    )
    return 0
