"""netbayd's default bridge with IPv6 (issue 17; Docker's daemon.json `ipv6` and
`fixed-cidr-v6`): `netbay daemon start --ipv6 --fixed-cidr-v6 CIDR`, then a container on
the default bridge has an address of each family, on the kernel too; a running netbayd
refuses settings it was not started with; a bad setting is one line, and no daemon."""

from __future__ import annotations

import pytest

from helpers import Env

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]


def test_default_bridge_dual_stack(env: Env) -> None:
    started = env.run("daemon", "start", "--ipv6", "--fixed-cidr-v6", "fd00:b::/64")
    assert started.stdout.startswith("netbayd running")
    bridge = env.json("network", "inspect", "bridge")[0]
    assert bridge["EnableIPv6"] is True
    assert [c["Subnet"] for c in bridge["IPAM"]["Config"]] == ["172.17.0.0/16", "fd00:b::/64"]
    env.run("run", "-d", "--name", "c1", "--", "sleep", "infinity")
    settings = env.json("inspect", "c1")[0]["NetworkSettings"]["Networks"]["bridge"]
    assert (settings["GlobalIPv6Address"], settings["IPv6Gateway"]) == ("fd00:b::2", "fd00:b::1")
    shown = env.in_container("c1", "ip", "-6", "-o", "addr", "show", "dev", "eth0").stdout
    assert "inet6 fd00:b::2/64" in shown, shown
    routes = env.in_container("c1", "ip", "-6", "route", "show", "default").stdout
    assert routes.startswith("default via fd00:b::1 dev eth0"), routes

    # the same settings again: fine; others: refused while it runs, nothing changed
    assert env.run("daemon", "start", "--ipv6").returncode == 0
    refused = env.run("daemon", "start", "--ipv6", "--fixed-cidr-v6", "fd00:c::/64",
                      check=False)
    assert refused.returncode != 0
    assert refused.stderr.splitlines() == [
        "Error: invalid fixed-cidr-v6 'fd00:c::/64': netbayd runs with fd00:b::/64: netbay "
        "daemon stop, then start with it"]
    assert env.json("network", "inspect", "bridge")[0]["IPAM"]["Config"][1]["Subnet"] \
        == "fd00:b::/64"


@pytest.mark.parametrize(("args", "message"), [
    (("--fixed-cidr-v6", "fd00:b::/64"),
     "invalid fixed-cidr-v6 'fd00:b::/64': needs --ipv6 (the default bridge is IPv4 only "
     "without it)"),
    (("--ipv6", "--fixed-cidr-v6", "fd00:b::1/64"),
     "invalid fixed-cidr-v6 'fd00:b::1/64': not an IPv6 subnet in CIDR form"),
])
def test_bad_settings_refused_before_any_daemon(
    env: Env, args: tuple[str, ...], message: str
) -> None:
    refused = env.run("daemon", "start", *args, check=False)
    assert refused.returncode != 0
    assert refused.stderr.splitlines() == [f"Error: {message}"]
    assert not env.paths.socket.exists()
    assert env.run("daemon", "status", check=False).returncode == 3
