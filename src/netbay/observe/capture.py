"""`netbay capture CONTAINER|NETWORK`: which interface to listen on, and tcpdump there.

The daemon names the interface (a container's veth host end, or its own interface inside its
namespace when it has no host end, as on macvlan/ipvlan; a network's bridge or parent); the
CLI then joins the daemon's network namespace (or the container's) with setns and execs
tcpdump itself: the capture streams to the user's terminal, Ctrl-C stops it, and `-w FILE`
lands where the user is, with nothing relayed through the daemon."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError, NotFoundError

Json = dict[str, Any]


def target_for_network(network: Json) -> Json:
    """{interface, netns, what} of a network record as the daemon reports it."""
    device = network.get("device")
    if not device:
        raise ConfigError("capture", network["name"], f"the {network['driver']} network has no "
                          "interface of its own: capture on a host interface with tcpdump -i")
    from ..drivers import capabilities  # the daemon's side: the CLI never loads the drivers

    role = "bridge" if capabilities(network["driver"]).host_bridge else "parent"
    return {"interface": device, "netns": "",
            "what": f"{role} {device} of network {network['name']}"}


def target_for_endpoint(container: str, endpoint: Json, netns: str) -> Json:
    if endpoint.get("host_ifname"):
        return {"interface": endpoint["host_ifname"], "netns": "",
                "what": f"veth {endpoint['host_ifname']} (host end of {container}:"
                        f"{endpoint['ifname']}, network {endpoint['network']})"}
    if not netns:
        raise NotFoundError(f"container {container} has no namespace to capture in")
    return {"interface": endpoint["ifname"], "netns": netns,
            "what": f"{container}:{endpoint['ifname']} inside the container (network "
                    f"{endpoint['network']} has no host end)"}


def tcpdump_argv(interface: str, expression: Sequence[str], write: str | None,
                 count: int | None, binary: str | None = None) -> list[str]:
    tcpdump = binary or shutil.which("tcpdump")
    if tcpdump is None:
        raise ConfigError("capture", "tcpdump", "not installed (apt-get install tcpdump)")
    argv = [tcpdump, "-i", interface, "-n"]
    if write:
        argv += ["-w", write, "-U"]  # -U: each packet written as it comes
    else:
        argv.append("-l")  # line-buffered: a pipe sees each packet as it comes
    if count:
        argv += ["-c", str(count)]
    return argv + list(expression)


def enter_and_exec(netns_path: str, argv: list[str]) -> None:
    """Join NETNS_PATH's network namespace (when it is not ours already) and exec ARGV."""
    from .. import _linux

    mine = os.stat("/proc/self/ns/net")
    theirs = os.stat(netns_path)
    if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _linux.setns(fd, _linux.CLONE_NEWNET)
        finally:
            os.close(fd)
    os.execv(argv[0], argv)
