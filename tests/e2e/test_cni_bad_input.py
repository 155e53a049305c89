"""Bad input to the CNI plugin and the netavark backend: the spec's error code and message on
stdout, exit 1, no traceback, and nothing changed (links, namespaces, record, nftables).
Hypothesis fuzzes stdin and checks the same three properties (a configuration that happens
to be valid is added and deleted again, which must leave nothing either)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import Env, sh, snapshot
from runtimes import Cni, Invoked, NetavarkCli, netavark_options

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]
SPEC_CODES = {1, 2, 3, 4, 5, 6, 7, 11, 50, 51, 100, 101, 102, 103, 104}


@pytest.fixture
def world(env: Env, tmp_path: Path) -> Iterator[tuple[Cni, Path]]:
    """A daemon with network asgard (10.50.0.0/24) and one container namespace."""
    from netbay.kernel import netns

    env.run("network", "create", "--subnet", "10.50.0.0/24", "asgard")
    ns = tmp_path / "ns-c1"
    netns.create(ns)
    try:
        yield Cni(tmp_path / "bin", env.environ, env.enter), ns
    finally:
        netns.delete(ns)


def state(env: Env) -> dict[str, Any]:
    out = snapshot(env.paths)
    out["nft"] = sh("nft list ruleset").stdout
    out["iptables"] = sh("iptables-save | grep -v '^#' || true").stdout
    return out


def assert_error(out: Invoked, code: int, msg: str) -> None:
    assert out.code == 1, out
    assert "Traceback" not in out.stdout + out.stderr
    assert isinstance(out.json, dict), out
    assert out.json["code"] == code, out.json
    assert msg in out.json["msg"] + " " + out.json.get("details", ""), out.json
    assert out.json["cniVersion"]


def asgard(version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": "cninet", "type": "netbay", "network": "asgard", **extra}


def test_each_bad_input_is_refused_with_the_spec_code(env: Env, world: tuple[Cni, Path]) -> None:
    cni, ns = world
    good = json.dumps(asgard())
    cases: list[tuple[dict[str, str], str, int, str]] = [
        (cni.env("ADD", "c1", ns), "{not json", 6, "error decoding network config"),
        (cni.env("ADD", "c1", ns), "[1, 2]", 6, "not a JSON object"),
        (cni.env("ADD", "c1", ns), "", 6, "error decoding network config"),
        (cni.env("ADD", "c1", None), good, 4, "required env variables [CNI_NETNS] missing"),
        ({k: v for k, v in cni.env("ADD", "c1", ns).items() if k != "CNI_COMMAND"}, good, 4,
         "required env variables [CNI_COMMAND] missing"),
        (cni.env("ADD", None, ns, None), good, 4,
         "required env variables [CNI_CONTAINERID,CNI_IFNAME] missing"),
        (cni.env("FROB", "c1", ns), good, 4, "unknown CNI_COMMAND: FROB"),
        (cni.env("ADD", "bad/id", ns), good, 4, "invalid characters in containerID"),
        (cni.env("ADD", "-lead", ns), good, 4, "invalid characters in containerID"),
        (cni.env("ADD", "c1", ns, "averyveryverylongname"), good, 4, "interface name is too long"),
        (cni.env("ADD", "c1", ns, "a/b"), good, 4, "interface name contains"),
        (cni.env("ADD", "c1", ns, args="FOO=1"), good, 4, "CNI_ARGS: unknown args ['FOO']"),
        (cni.env("ADD", "c1", ns, args="novalue"), good, 4, "CNI_ARGS: invalid pair"),
        (cni.env("ADD", "c1", ns), json.dumps(asgard("9.9.9")), 1, "incompatible CNI versions"),
        (cni.env("ADD", "c1", ns), json.dumps({**asgard(), "cniVersion": 1}), 6,
         "cniVersion is not a string"),
        (cni.env("ADD", "c1", ns), json.dumps({k: v for k, v in asgard().items() if
                                               k != "cniVersion"}), 1, "config is '0.1.0'"),
        (cni.env("CHECK", "c1", ns), json.dumps(asgard("0.3.1")), 1,
         "config version does not allow CHECK"),
        (cni.env("GC", None, None, None), json.dumps(asgard("1.0.0")), 1,
         "config version does not allow GC"),
        (cni.env("ADD", "c1", ns), json.dumps({**asgard(), "name": ""}), 7,
         "missing network name"),
        (cni.env("ADD", "c1", ns), json.dumps({**asgard(), "name": "a b"}), 7,
         "invalid characters found in network name"),
        (cni.env("ADD", "c1", ns), json.dumps({**asgard(), "network": "nosuch"}), 7,
         "network nosuch not found"),
        (cni.env("ADD", "c1", ns),
         json.dumps({"cniVersion": "1.0.0", "name": "clash", "type": "netbay",
                     "subnet": "10.50.0.128/25"}), 7, "overlaps 10.50.0.0/24 of network asgard"),
        (cni.env("ADD", "c1", ns),
         json.dumps({"cniVersion": "1.0.0", "name": "v6", "type": "netbay",
                     "ranges": [[{"subnet": "fd00::/64"}], [{"subnet": "fd01::/64"}]]}), 2,
         "unsupported field ranges: 2 range sets of IPv6"),
        (cni.env("ADD", "c1", ns),
         json.dumps({"cniVersion": "1.0.0", "name": "two", "type": "netbay",
                     "ranges": [[{"subnet": "10.70.0.0/24"}], [{"subnet": "10.71.0.0/24"}]]}),
         2, "unsupported field ranges"),
        (cni.env("ADD", "c1", ns), json.dumps({**asgard(), "subnet": "10.72.0.0/24"}), 7,
         "'network' names an existing network"),
        (cni.env("ADD", "c1", ns), json.dumps(asgard(runtimeConfig={"ips": ["10.9.9.9"]})), 7,
         "not inside the network's subnets"),
        (cni.env("ADD", "c1", ns), json.dumps(asgard(runtimeConfig={"ips": ["10.50.0.1"]})), 103,
         "reserved"),
        (cni.env("ADD", "c1", ns), json.dumps(asgard(runtimeConfig={"mac": "01:00:5e:00:00:01"})),
         7, "multicast"),
        (cni.env("ADD", "c1", ns), json.dumps(asgard(runtimeConfig={"portMappings": [
            {"hostPort": 0, "containerPort": 80}]})), 7, "hostPort"),
        (cni.env("ADD", "c1", ns), json.dumps({**asgard(), "network": None, "driver": "warp"}), 2,
         "unsupported field driver"),
        (cni.env("ADD", "c1", "/nonexistent/netns"), good, 3, "does not exist"),
        (cni.env("GC", None, None, None), json.dumps(asgard("1.1.0")), 7,
         "cni.dev/valid-attachments"),
    ]
    before = state(env)
    for environ, stdin, code, msg in cases:
        assert_error(cni.run("netbay", environ, stdin), code, msg)
    assert state(env) == before


def test_the_address_in_use_and_the_port_in_use(env: Env, world: tuple[Cni, Path],
                                               tmp_path: Path) -> None:
    from netbay.kernel import netns

    cni, ns = world
    config = asgard(runtimeConfig={"ips": ["10.50.0.9"], "portMappings": [
        {"hostPort": 18111, "containerPort": 80, "protocol": "tcp"}]})
    assert cni.run("netbay", cni.env("ADD", "c1", ns), json.dumps(config)).code == 0
    other = tmp_path / "ns-c2"
    netns.create(other)
    try:
        before = state(env)
        ip_only = asgard(runtimeConfig={"ips": ["10.50.0.9"]})
        taken_ip = cni.run("netbay", cni.env("ADD", "c2", other), json.dumps(ip_only))
        assert_error(taken_ip, 103, "already in use")
        port_only = asgard(runtimeConfig={"portMappings": [
            {"hostPort": 18111, "containerPort": 80, "protocol": "tcp"}]})
        taken_port = cni.run("netbay", cni.env("ADD", "c2", other), json.dumps(port_only))
        assert_error(taken_port, 103, "host port already published")
        again = cni.run("netbay", cni.env("ADD", "c1", ns), json.dumps(asgard()))
        assert_error(again, 103, "already exists")
        assert state(env) == before
    finally:
        netns.delete(other)
    assert cni.run("netbay", cni.env("DEL", "c1", ns), json.dumps(asgard())).code == 0


def test_refused_before_the_daemon_is_started(env: Env, tmp_path: Path) -> None:
    """Syntax, environment and version errors never start (or reach) the daemon."""
    cni = Cni(tmp_path / "bin", env.environ, env.enter)
    for stdin, environ in (
        ("{", cni.env("ADD", "c1", tmp_path)),
        (json.dumps(asgard("0.2.0")), cni.env("ADD", "c1", tmp_path)),
        (json.dumps(asgard()), cni.env("ADD", "c/1", tmp_path)),
    ):
        assert cni.run("netbay", environ, stdin).code == 1
    assert not env.paths.socket.exists() and env.daemon_pid() is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
keys = st.sampled_from([
    "cniVersion", "name", "type", "network", "subnet", "ranges", "gateway", "bridge", "ipMasq",
    "isGateway", "mtu", "driver", "master", "mode", "ipam", "runtimeConfig", "prevResult",
    "dns", "args", "socket", "routes",
])
field_values = st.one_of(
    json_values,
    st.sampled_from(["0.4.0", "1.0.0", "1.1.0", "9.9.9", "asgard", "nosuch", "cninet",
                     "10.50.0.0/24", "10.80.0.0/24", "10.80.0.1", "fd00::/64", "macvlan",
                     "bridge", "br-fuzz", "eth0", "x" * 20]),
    st.just({"portMappings": [{"hostPort": 18200, "containerPort": 80}]}),
    st.just({"ips": ["10.50.0.77/24"]}),
    st.just([[{"subnet": "10.81.0.0/24", "rangeStart": "10.81.0.5"}]]),
)
configs = st.one_of(
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    json_values.map(json.dumps),
    st.dictionaries(keys, field_values, max_size=8).map(
        lambda d: json.dumps({"cniVersion": "1.0.0", "name": "fuzz", "type": "netbay", **d})
    ),
)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(stdin=configs, command=st.sampled_from(["ADD", "ADD", "DEL", "CHECK", "STATUS"]))
def test_fuzzed_stdin(env: Env, world: tuple[Cni, Path], stdin: str, command: str) -> None:
    cni, ns = world
    before = state(env)
    out = cni.run("netbay", cni.env(command, "fuzz1", ns), stdin)
    assert "Traceback" not in out.stdout + out.stderr
    if out.code:
        assert out.code == 1 and isinstance(out.json, dict), out
        assert out.json["code"] in SPEC_CODES and isinstance(out.json["msg"], str), out
        assert state(env) == before, out.json
        return
    if command == "ADD":  # a valid configuration after all: its DEL leaves nothing
        assert out.json["ips"] and out.json["interfaces"]
        deleted = cni.run("netbay", cni.env("DEL", "fuzz1", ns), stdin)
        assert deleted.code == 0, deleted
    assert state(env) == before


def test_netavark_bad_input(env: Env, world: tuple[Cni, Path], tmp_path: Path) -> None:
    _, ns = world
    nv = NetavarkCli(tmp_path / "nvbin", env.environ, env.enter)
    good = netavark_options("a" * 64, "web", [("asgard", {"subnet": "10.50.0.0/24",
                                                          "gateway": "10.50.0.1",
                                                          "ip": "10.50.0.5"})])
    cases: list[tuple[tuple[str, ...], Any, str]] = [
        (("setup", str(ns)), "{oops", "JSON Decoding error"),
        (("setup", str(ns)), {k: v for k, v in good.items() if k != "container_id"},
         "missing field `container_id`"),
        (("setup", "/nonexistent/netns"), good, "invalid namespace path"),
        (("setup",), good, "needs the network namespace path"),
        (("frob", str(ns)), good, "unsupported command"),
        (("setup", str(ns)), {**good, "container_id": "bad/id"}, "invalid container id"),
        (("setup", str(ns)), netavark_options("b" * 64, "web", [(
            "v6", {"subnet": "fd00::/64", "gateway": "10.0.0.1"})]),
         "is not of subnet fd00::/64's address family"),
        (("setup", str(ns)), netavark_options("b" * 64, "web", [(
            "clash", {"subnet": "10.50.0.0/25", "gateway": "10.50.0.1", "ip": "10.50.0.6"})]),
         "overlaps 10.50.0.0/24 of network asgard"),
        (("setup", str(ns)), netavark_options("b" * 64, "web", [(
            "asgard", {"subnet": "10.51.0.0/24", "gateway": "10.51.0.1", "ip": "10.51.0.6"})]),
         "exists with other settings"),
        (("setup", str(ns)), netavark_options("b" * 64, "web", [(
            "warp", {"driver": "warp", "subnet": "10.52.0.0/24", "gateway": "10.52.0.1"})]),
         "unsupported driver warp"),
        (("--rootless=true", "setup", str(ns)), good, "rootful podman only"),
    ]
    before = state(env)
    for args, stdin, msg in cases:
        out = nv.run(*args, stdin=stdin if isinstance(stdin, str) else json.dumps(stdin))
        assert out.code == 1, out
        assert "Traceback" not in out.stdout + out.stderr
        assert set(out.json) == {"error"} and msg in out.json["error"], out
    assert state(env) == before
