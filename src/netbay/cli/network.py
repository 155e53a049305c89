"""`netbay network ...`: Docker's flags and output shapes."""

from __future__ import annotations

import argparse
import sys
from ipaddress import IPv4Address, IPv4Network

from ..client import Client, path_of
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
    p.add_argument("--subnet", action="append", default=[], help="subnet in CIDR form")
    p.add_argument("--gateway", action="append", default=[], help="gateway of a subnet")
    p.add_argument("--ip-range", action="append", default=[], help="allocate from a sub-range")
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
    p.add_argument("--alias", action="append", default=[], help="network-scoped alias")
    p.set_defaults(func=connect)

    p = verbs.add_parser("disconnect", help="disconnect a container from a network")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("-f", "--force", action="store_true")
    p.set_defaults(func=disconnect)


def key_values(field: str, items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(field, item, "expected KEY=VALUE")
        out[key] = value
    return out


def _cidr(field: str, value: str) -> IPv4Network:
    try:
        return IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ConfigError(field, value, f"not an IPv4 CIDR ({exc})") from None


def ipam_config(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Pair each --gateway/--ip-range/--aux-address with the --subnet that contains it."""
    subnets = [_cidr("subnet", s) for s in args.subnet]
    configs: list[dict[str, Any]] = [{"Subnet": str(s)} for s in subnets]

    def owner(field: str, value: str, contains: Any) -> dict[str, Any]:
        for subnet, config in zip(subnets, configs, strict=True):
            if contains(subnet):
                return config
        raise ConfigError(field, value, "not inside any --subnet")

    for gw in args.gateway:
        try:
            address = IPv4Address(gw)
        except ValueError:
            raise ConfigError("gateway", gw, "not an IPv4 address") from None
        config = owner("gateway", gw, lambda s, a=address: a in s)
        if "Gateway" in config:
            raise ConfigError("gateway", gw, f"subnet {config['Subnet']} has a gateway already")
        config["Gateway"] = gw
    for rng in args.ip_range:
        network = _cidr("ip-range", rng)
        config = owner("ip-range", rng, lambda s, n=network: n.subnet_of(s))
        if "IPRange" in config:
            raise ConfigError("ip-range", rng, f"subnet {config['Subnet']} has an ip-range already")
        config["IPRange"] = rng
    for name, value in key_values("aux-address", args.aux_address).items():
        try:
            address = IPv4Address(value)
        except ValueError:
            raise ConfigError("aux-address", f"{name}={value}", "not an IPv4 address") from None
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
    rows = [{**n, "ID": n["Id"][:width]} for n in nets]
    render.emit(
        rows,
        args.format,
        ("NETWORK ID", "NAME", "DRIVER", "SCOPE"),
        lambda n: (n["ID"], n["Name"], n["Driver"], n["Scope"]),
    )
    return 0


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
    if args.ip:
        config["IPAMConfig"] = {"IPv4Address": args.ip}
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
