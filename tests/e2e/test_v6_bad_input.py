"""IPv6 input refused (issue 17), the real CLI against a real netbayd in the test's throwaway
namespace: one line naming the field and the value, a non-zero exit, and nothing changed (the
links, addresses and routes of both families, the namespaces, the record)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from helpers import Env, snapshot

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

CASES = [
    (("network", "create", "--ipv6", "--subnet", "fd50::/80", "other"),
     "invalid subnet 'fd50::/80': overlaps fd50::/64 of network asgard6"),
    (("network", "create", "--subnet", "fd50:0:0:0:8000::/65", "other"),
     "invalid subnet 'fd50::8000:0:0:0/65': overlaps fd50::/64 of network asgard6"),
    (("run", "-d", "--network", "asgard6", "--ip6", "fd99::5", "--", "true"),
     "invalid ip6 'fd99::5': not inside the network's subnets (fd50::/64)"),
    (("run", "-d", "--network", "asgard6", "--ip6", "fd50::7", "--", "true"),
     "invalid ip6 'fd50::7': already in use"),
    (("run", "-d", "--network", "asgard6", "--ip6", "fd50::1", "--", "true"),
     "invalid ip6 'fd50::1': reserved in subnet fd50::/64"),
    (("run", "-d", "--network", "asgard6", "--ip6", "nope", "--", "true"),
     "invalid ip6 'nope': not an IPv6 address"),
    (("run", "-d", "--network", "asgard6", "--ip6", "10.50.0.9", "--", "true"),
     "invalid ip6 '10.50.0.9': not an IPv6 address"),
    (("run", "-d", "--network", "midgard", "--ip6", "fd50::9", "--", "true"),
     "invalid ip6 'fd50::9': network midgard has no IPv6 subnet"),
    (("network", "connect", "--ip6", "fd50::9", "midgard", "env1"),
     "invalid ip6 'fd50::9': network midgard has no IPv6 subnet"),
    (("network", "connect", "--ip6", "fd51::9", "only6", "env1"),
     "invalid ip6 'fd51::9': not inside the network's subnets (fd52::/64)"),
    (("network", "create", "--ipv6", "--ipv4=false", "-d", "overlay", "x"),
     "invalid ipv4 False: a cluster-wide network needs IPv4: its nodes reach each other over "
     "the IPv4 underlay"),
    (("network", "create", "--ipv4=false", "--subnet", "10.53.0.0/24", "x"),
     "invalid subnet '10.53.0.0/24': an IPv4 subnet, but IPv4 is off (--ipv4=false)"),
    (("network", "create", "--ipv4=false", "x"),
     "invalid ipv4 False: a network needs IPv4 or IPv6 (add --ipv6)"),
    (("network", "create", "--ipv6", "--subnet", "fd53::zz/64", "x"),
     "invalid subnet 'fd53::zz/64': not an IPv4 or IPv6 subnet in CIDR form"),
    (("network", "create", "--ipv6", "--subnet", "fd53::1/64", "x"),
     "invalid subnet 'fd53::1/64': host bits set (the subnet is fd53::/64)"),
    (("network", "create", "--ipv6", "--subnet", "fd53::/64", "--gateway", "fd54::1", "x"),
     "invalid gateway 'fd54::1': not inside any --subnet"),
    (("network", "create", "--ipv6", "--subnet", "fd53::/64", "--gateway", "fd53::", "x"),
     "invalid gateway 'fd53::': not a host address of subnet fd53::/64"),
    (("network", "create", "--ipv6", "--subnet", "fd53::/64", "--ip-range", "fd54::/80", "x"),
     "invalid ip-range 'fd54::/80': not inside any --subnet"),
    (("network", "create", "--ipv6", "--subnet", "fd53::/127", "x"),
     "invalid subnet 'fd53::/127': too small for containers (at most /126)"),
]


def kernel_v6_and_v4() -> dict[str, Any]:
    """The namespace's addresses and routes of both families, as the kernel lists them."""
    def ip(*args: str) -> Any:
        out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True)
        return json.loads(out.stdout or "[]")

    addresses = sorted((a["ifname"], i["local"], i["prefixlen"])
                       for a in ip("addr", "show") for i in a.get("addr_info", []))
    routes = sorted(json.dumps(r, sort_keys=True)
                    for family in ("-4", "-6") for r in ip(family, "route", "show", "table", "all"))
    return {"addresses": addresses, "routes": routes}


@pytest.fixture
def prepared(env: Env) -> Env:
    env.run("network", "create", "--ipv6", "--subnet", "10.50.0.0/24", "--subnet", "fd50::/64",
            "asgard6")
    env.run("network", "create", "--subnet", "10.51.0.0/24", "midgard")
    env.run("network", "create", "--ipv6", "--ipv4=false", "--subnet", "fd52::/64", "only6")
    env.run("run", "-d", "--name", "env1", "--network", "asgard6", "--ip6", "fd50::7", "--",
            "sleep", "infinity")
    return env


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_refused_with_one_line_and_nothing_changed(
    prepared: Env, args: tuple[str, ...], message: str
) -> None:
    before = (snapshot(prepared.paths), kernel_v6_and_v4())
    result = prepared.run(*args, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"Error: {message}"]
    assert (snapshot(prepared.paths), kernel_v6_and_v4()) == before


def test_the_prepared_state_is_what_the_cases_refuse_against(prepared: Env) -> None:
    """The cases above could fail for the wrong reason: the networks and the container's
    static IPv6 address are in place, on the kernel too."""
    nets = {n["Name"]: n for n in map(json.loads, prepared.run(
        "network", "ls", "--format", "json").stdout.splitlines())}
    assert [(nets[n]["EnableIPv4"], nets[n]["EnableIPv6"])
            for n in ("asgard6", "midgard", "only6")] == [(True, True), (True, False),
                                                        (False, True)]
    settings = prepared.json("inspect", "env1")[0]["NetworkSettings"]["Networks"]["asgard6"]
    assert (settings["GlobalIPv6Address"], settings["IPAMConfig"]) == (
        "fd50::7", {"IPv6Address": "fd50::7"})
    shown = prepared.in_container("env1", "ip", "-6", "-o", "addr", "show", "dev", "eth0").stdout
    assert "inet6 fd50::7/64" in shown
