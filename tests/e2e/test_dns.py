"""Name resolution with real packets: netbay's DNS server answers containers by name, alias
and hostname on the networks they share, forwards other names to a fake upstream the test
runs on its LAN machine (nothing leaves the test's namespaces), refuses what is not ours."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import Env, Lan, snapshot, wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

DNSPROBE = str(Path(__file__).parents[1] / "dnsprobe.py")
UPSTREAM = "198.51.100.2"  # the LAN machine
OTHER_UPSTREAM = "198.51.100.3"  # a second resolver on it, for --dns


class World:
    def __init__(self, env: Env) -> None:
        self.env = env
        self._pids: dict[str, int] = {}

    def run(self, name: str, *args: str) -> str:
        self.env.run("run", "-d", "--name", name, *args, "--", "sleep", "infinity")
        return name

    def info(self, name: str) -> dict[str, Any]:
        return dict(self.env.json("inspect", name)[0])

    def ip(self, name: str, network: str) -> str:
        return str(self.info(name)["NetworkSettings"]["Networks"][network]["IPAddress"])

    def pid(self, name: str) -> int:
        if name not in self._pids:
            self._pids[name] = self.env.host_pid(int(self.info(name)["State"]["Pid"]))
        return self._pids[name]

    def resolv_conf(self, name: str) -> str:
        return (self.env.paths.container_dir(self.info(name)["Id"]) / "resolv.conf").read_text()

    def nameserver(self, name: str) -> str:
        lines = [ln.split() for ln in self.resolv_conf(name).splitlines()]
        return next(parts[1] for parts in lines if parts[:1] == ["nameserver"])

    def ask(
        self, who: str, qname: str, qtype: str = "A", *, tcp: bool = False,
        server: str | None = None, timeout: float = 2.0,
    ) -> dict[str, Any]:
        """A query from inside container WHO to its nameserver (or SERVER)."""
        argv = [
            sys.executable, DNSPROBE, "query", server or self.nameserver(who), qname, qtype,
            "--timeout", str(timeout), *(["--tcp"] if tcp else []),
        ]
        if who != "host":
            argv = ["nsenter", "-t", str(self.pid(who)), "-n", *argv]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
        return dict(json.loads(out.stdout))

    def addresses(self, who: str, qname: str, **kw: Any) -> list[str]:
        answer = self.ask(who, qname, **kw)
        assert answer.get("rcode") == "NOERROR", (who, qname, answer)
        return list(answer["answers"])

    def rcode(self, who: str, qname: str, **kw: Any) -> str:
        answer = self.ask(who, qname, **kw)
        return str(answer.get("rcode") or answer.get("error"))


@pytest.fixture
def world(env: Env) -> World:
    return World(env)


def start_upstream(env: Env, lan: Lan, address: str, *zone: str) -> Path:
    """A fake resolver on the LAN machine; returns the file that logs what it was asked."""
    log = env.tmp / f"upstream-{address}.log"
    log.write_text("")
    if address != UPSTREAM:
        lan.sh(f"ip addr add {address}/24 dev lan0")
    server = subprocess.Popen(lan.argv(sys.executable, DNSPROBE, "serve", address, str(log), *zone))
    env.cleanups.append(lambda: (server.kill(), server.wait()))

    def answers() -> bool:
        out = subprocess.run(
            [sys.executable, DNSPROBE, "query", address, "ready.check", "--timeout", "0.3"],
            capture_output=True, text=True,
        )
        return '"rcode"' in out.stdout

    wait_until(answers, 10, f"the fake upstream on {address} to answer", interval=0.1)
    log.write_text("")
    return log


def use_host_resolver(env: Env, *servers: str) -> None:
    """What the host's resolv.conf says (the `paths` fixture points netbay at this file)."""
    Path(os.environ["NETBAY_RESOLV_CONF"]).write_text(
        "".join(f"nameserver {s}\n" for s in servers)
    )


def asked(log: Path) -> list[str]:
    return log.read_text().splitlines()


# --- resolution ---------------------------------------------------------------------------
def test_name_alias_and_hostname_on_a_user_defined_network(world: World) -> None:
    env = world.env
    env.run("network", "create", "--subnet", "10.81.0.0/24", "asgard")
    world.run("env1", "--network", "asgard", "--hostname", "odin", "--network-alias", "db")
    world.run("env2", "--network", "asgard")
    ip1 = world.ip("env1", "asgard")

    assert world.nameserver("env2") == "10.81.0.1"
    assert "options ndots:0" in world.resolv_conf("env2")
    for name in ("env1", "ENV1", "odin", "db", "env1.asgard", "db.asgard"):
        assert world.addresses("env2", name) == [ip1], name
    answer = world.ask("env2", "env1")
    assert {"aa", "ra"} <= set(answer["flags"])
    # AAAA for a container name: no data, not NXDOMAIN (glibc asks both at once)
    assert world.ask("env2", "env1", "AAAA")["rcode"] == "NOERROR"
    assert world.ask("env2", "env1", "AAAA")["answers"] == []
    reverse = ".".join(reversed(ip1.split("."))) + ".in-addr.arpa"
    assert world.addresses("env2", reverse, qtype="PTR") == ["env1.asgard"]
    assert world.rcode("env2", "10.0.81.10.in-addr.arpa", qtype="PTR") == "NXDOMAIN"
    # the same over TCP
    assert world.addresses("env2", "odin", tcp=True) == [ip1]
    # and through the C library, as programs resolve: /etc/resolv.conf in the container
    hosts = env.in_container("env2", "getent", "hosts", "db").stdout.split()
    assert hosts[0] == ip1


def test_names_on_the_default_bridge(world: World) -> None:
    world.run("b1")
    world.run("b2", "--hostname", "second")
    ip2 = world.ip("b2", "bridge")
    assert world.addresses("b1", "b2") == [ip2]
    assert world.addresses("b1", "second") == [ip2]
    assert world.addresses("b1", "b2.bridge") == [ip2]
    ping = world.env.in_container("b1", "ping", "-c1", "-W2", "b2", check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert f"({ip2})" in ping.stdout


def test_two_networks_and_isolation(world: World, lan: Lan) -> None:
    env = world.env
    log = start_upstream(env, lan, UPSTREAM)
    use_host_resolver(env, UPSTREAM)
    env.run("network", "create", "--subnet", "10.82.0.0/24", "front")
    env.run("network", "create", "--subnet", "10.83.0.0/24", "back")
    env.run("network", "create", "--subnet", "10.84.0.0/24", "lone")
    world.run("app", "--network", "front")
    env.run("network", "connect", "--alias", "api", "back", "app")
    world.run("web", "--network", "front")
    world.run("db", "--network", "back")
    world.run("hermit", "--network", "lone")

    # app is on both: it resolves its neighbours on each
    assert world.addresses("app", "web") == [world.ip("web", "front")]
    assert world.addresses("app", "db") == [world.ip("db", "back")]
    # ... and itself on both networks, asked through either gateway
    both = [world.ip("app", "front"), world.ip("app", "back")]
    assert world.addresses("app", "app") == both
    assert world.addresses("app", "app", server="10.83.0.1") == both
    # the alias is scoped to the network it was given on
    assert world.addresses("db", "api") == [world.ip("app", "back")]
    assert world.rcode("web", "api") == "NXDOMAIN"
    # names of networks one does not share are NXDOMAIN, and never asked upstream
    assert world.rcode("web", "db") == "NXDOMAIN"
    assert world.rcode("db", "web") == "NXDOMAIN"
    assert world.rcode("app", "hermit") == "NXDOMAIN"
    assert world.rcode("hermit", "app") == "NXDOMAIN"
    assert world.rcode("web", "db.back") == "NXDOMAIN"
    reverse = ".".join(reversed(world.ip("db", "back").split("."))) + ".in-addr.arpa"
    assert world.rcode("web", reverse, qtype="PTR") == "NXDOMAIN"
    assert asked(log) == []


# --- forwarding -----------------------------------------------------------------------------
def test_other_names_go_to_the_hosts_resolver_over_udp_and_tcp(world: World, lan: Lan) -> None:
    env = world.env
    log = start_upstream(env, lan, UPSTREAM, "outside.test=192.0.2.7")
    # a loopback resolver first: asked from the host's namespace (nothing listens there in
    # the test's namespace, so it is skipped at once)
    use_host_resolver(env, "127.0.0.53", UPSTREAM)
    env.run("network", "create", "--subnet", "10.85.0.0/24", "asgard")
    world.run("c1", "--network", "asgard")

    assert "forwarded to: the host's resolvers" in world.resolv_conf("c1")
    assert world.addresses("c1", "outside.test") == ["192.0.2.7"]
    assert world.addresses("c1", "outside.test", tcp=True) == ["192.0.2.7"]
    assert world.rcode("c1", "nowhere.test") == "NXDOMAIN"
    assert asked(log) == ["udp outside.test 1", "tcp outside.test 1", "udp nowhere.test 1"]
    getent = env.in_container("c1", "getent", "ahostsv4", "outside.test").stdout
    assert getent.split()[0] == "192.0.2.7"


def test_dns_servers_of_a_container_are_its_upstream(world: World, lan: Lan) -> None:
    env = world.env
    host_log = start_upstream(env, lan, UPSTREAM, "outside.test=192.0.2.7")
    own_log = start_upstream(env, lan, OTHER_UPSTREAM, "outside.test=192.0.2.99")
    use_host_resolver(env, UPSTREAM)
    world.run("c1", "--dns", OTHER_UPSTREAM, "--dns-search", "example.test",
              "--dns-option", "ndots:2", "--dns-option", "timeout:3")
    resolv = world.resolv_conf("c1")
    assert "options ndots:2 timeout:3\n" in resolv  # the user's ndots, not netbay's ndots:0
    gateway = world.info("c1")["NetworkSettings"]["Networks"]["bridge"]["Gateway"]
    assert world.nameserver("c1") == gateway
    assert f"forwarded to: {OTHER_UPSTREAM}" in resolv and "search example.test" in resolv
    assert world.addresses("c1", "outside.test") == ["192.0.2.99"]
    assert asked(own_log) == ["udp outside.test 1"]
    assert asked(host_log) == []


def test_no_forwarding_from_internal_networks(world: World, lan: Lan) -> None:
    env = world.env
    log = start_upstream(env, lan, UPSTREAM, "outside.test=192.0.2.7")
    use_host_resolver(env, UPSTREAM)
    env.run("network", "create", "--internal", "--subnet", "10.86.0.0/24", "vault")
    world.run("i1", "--network", "vault")
    world.run("i2", "--network", "vault", "--dns", UPSTREAM)
    assert "forwarded to: none (internal network)" in world.resolv_conf("i1")
    assert world.addresses("i1", "i2") == [world.ip("i2", "vault")]
    assert world.rcode("i1", "outside.test") == "REFUSED"
    assert world.rcode("i2", "outside.test") == "REFUSED"
    assert world.rcode("i2", "outside.test", tcp=True) == "REFUSED"
    assert asked(log) == []


# --- changes, failures, strangers -------------------------------------------------------------
def test_changes_are_visible_at_the_next_query(world: World) -> None:
    env = world.env
    env.run("network", "create", "--subnet", "10.87.0.0/24", "asgard")
    env.run("network", "create", "--subnet", "10.88.0.0/24", "vanir")
    world.run("asker", "--network", "asgard")
    assert world.rcode("asker", "late") == "NXDOMAIN"
    world.run("late", "--network", "asgard")
    assert world.addresses("asker", "late") == [world.ip("late", "asgard")]
    # a container elsewhere, then connected with an alias, then disconnected
    world.run("far", "--network", "vanir")
    assert world.rcode("asker", "far") == "NXDOMAIN"
    env.run("network", "connect", "--alias", "near", "asgard", "far")
    assert world.addresses("asker", "far") == [world.ip("far", "asgard")]
    assert world.addresses("asker", "near") == [world.ip("far", "asgard")]
    env.run("network", "disconnect", "asgard", "far")
    assert world.rcode("asker", "near") == "NXDOMAIN"
    assert world.rcode("asker", "far") == "NXDOMAIN"
    env.run("rm", "-f", "late")
    assert world.rcode("asker", "late") == "NXDOMAIN"
    # the first container on a new network is answered at once too
    env.run("network", "create", "--subnet", "10.89.0.0/24", "fresh")
    world.run("f1", "--network", "fresh")
    world.run("f2", "--network", "fresh")
    assert world.addresses("f1", "f2") == [world.ip("f2", "fresh")]


def dns_pid(env: Env) -> int:
    return int((env.paths.root / "netbay-dns.pid").read_text())


def test_server_killed_is_restarted_and_serves_current_names(world: World) -> None:
    env = world.env
    env.run("network", "create", "--subnet", "10.90.0.0/24", "asgard")
    world.run("a1", "--network", "asgard")
    world.run("a2", "--network", "asgard")
    assert world.addresses("a1", "a2") == [world.ip("a2", "asgard")]
    old = dns_pid(env)
    os.kill(env.host_pid(old), signal.SIGKILL)
    env.run("rm", "-f", "a2")  # changes while it is down
    world.run("a3", "--network", "asgard")
    wait_until(lambda: world.ask("a1", "a3", timeout=0.5).get("rcode") == "NOERROR", 10,
               "the restarted DNS server to answer a1's query for a3", interval=0)
    assert dns_pid(env) != old
    assert world.addresses("a1", "a3") == [world.ip("a3", "asgard")]
    assert world.rcode("a1", "a2") == "NXDOMAIN"
    log = env.paths.daemon_log.read_text()
    assert f"netbay-dns (pid {old}) exited" in log


def test_the_server_lives_from_the_first_user_defined_bridge_to_the_daemons_end(
    world: World,
) -> None:
    env = world.env
    world.run("h", "--network", "host")
    world.run("n", "--network", "none")
    pid_file = env.paths.root / "netbay-dns.pid"
    assert not pid_file.exists()  # nothing needs it yet
    # a user-defined bridge network starts it in the background: its first container does
    # not wait for the server's process to start
    env.run("network", "create", "--subnet", "10.95.0.0/24", "asgard")
    wait_until(pid_file.exists, 10, "netbay-dns to start with the network")
    world.run("b1", "--network", "asgard")
    pid = world.env.host_pid(dns_pid(world.env))
    assert _state(pid) != "Z"
    world.env.stop_daemon(signal.SIGKILL)
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or "Z" in _state(pid), 5,
               "netbay-dns to die with its daemon")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


def test_queries_from_outside_netbay_are_not_answered(world: World, lan: Lan) -> None:
    env = world.env
    env.run("network", "create", "--subnet", "10.91.0.0/24", "asgard")
    world.run("c1", "--network", "asgard")
    world.run("c2", "--network", "asgard")
    assert world.addresses("c1", "c2") == [world.ip("c2", "asgard")]
    # a LAN machine that routes to the gateway: no answer, over UDP or TCP
    lan.sh("ip route add 10.91.0.0/24 via 198.51.100.1")
    # (no socket listens for packets that came in any other way than the network's bridge:
    # the kernel answers "port unreachable")
    argv = lan.argv(sys.executable, DNSPROBE, "query", "10.91.0.1", "c2", "--timeout", "1")
    for extra in ((), ("--tcp",)):
        out = subprocess.run([*argv, *extra], capture_output=True, text=True).stdout
        assert json.loads(out) == {"error": "Connection refused"}, extra
    # nor the host itself, from its own address
    assert "rcode" not in world.ask("host", "c2", server="10.91.0.1", timeout=1)
    # nor a container of another network asking this network's gateway
    env.run("network", "create", "--subnet", "10.92.0.0/24", "other")
    world.run("o1", "--network", "other")
    assert world.ask("o1", "c2", server="10.91.0.1", timeout=1) == {
        "error": "Connection refused"
    }
    assert world.addresses("c1", "c2") == [world.ip("c2", "asgard")]


# --- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("network", "connect", "--alias", "env1", "asgard", "env2"),
            "alias 'env1' is the name of container env1 on network asgard",
        ),
        (
            ("network", "connect", "--alias", "no way", "asgard", "env2"),
            "invalid alias 'no way': not a DNS name",
        ),
        (
            ("run", "-d", "--network", "asgard", "--network-alias", "ENV1", "--", "true"),
            "alias 'ENV1' is the name of container env1 on network asgard",
        ),
        (
            ("run", "-d", "--name", "wotan", "--network", "asgard", "--", "true"),
            "the container name 'wotan' is an alias of container env1 on network asgard",
        ),
        (("run", "-d", "--network-alias=-x-", "--", "true"), "invalid alias '-x-'"),
        (("run", "-d", "--dns", "10.0.0.256", "--", "true"), "invalid dns '10.0.0.256'"),
    ],
)
def test_bad_names_are_refused_and_nothing_changes(
    world: World, args: tuple[str, ...], message: str
) -> None:
    env = world.env
    env.run("network", "create", "--subnet", "10.93.0.0/24", "asgard")
    world.run("env1", "--network", "asgard", "--network-alias", "wotan")
    world.run("env2")
    before = snapshot(env.paths)
    result = env.run(*args, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert message in lines[0]
    assert snapshot(env.paths) == before


def test_shared_alias_answers_with_every_holder(world: World) -> None:
    """Several containers may share an alias (Docker's DNS round robin)."""
    world.env.run("network", "create", "--subnet", "10.94.0.0/24", "asgard")
    world.run("s1", "--network", "asgard", "--network-alias", "search")
    world.run("s2", "--network", "asgard", "--network-alias", "search")
    world.run("client", "--network", "asgard")
    got = world.addresses("client", "search")
    assert sorted(got) == sorted([world.ip("s1", "asgard"), world.ip("s2", "asgard")])


def test_host_and_none_modes_keep_plain_resolv_conf(world: World) -> None:
    world.run("h", "--network", "host")
    world.run("n", "--network", "none")
    for name in ("h", "n"):
        resolv = world.resolv_conf(name)
        assert "nameserver 10.99.99.53" in resolv and "127.0.0.53" not in resolv
        assert "ndots" not in resolv
