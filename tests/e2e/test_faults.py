"""SIGKILL of the daemon at injected points (NETBAY_FAULT=<point>[@<n-th time>], see
src/netbay/faults.py), on the real host:
- netbay's own create/attach/detach/remove of containers and networks;
- the runtimes' paths, driven as test_cni.py and test_netavark.py drive them: CNI ADD, DEL
  and GC, netavark setup and teardown.
After a restart the record and the kernel agree and nothing is orphaned (no veth, netns, lease,
nft element or store row that the record does not back); the runtime's own answer to its
failed call (DEL after an ADD, teardown after a setup, the call again) then leaves what the
call would have; removing everything leaves the host as it was."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from helpers import Env, link_names, netns_files, sh, snapshot, wait_until
from netbay import _linux
from netbay.model import CREATING, REMOVING, Container, Endpoint, Network
from netbay.store.sqlite import SQLiteStore
from runtimes import Cni, Invoked, NetavarkCli, netavark_options

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

SETUP = [
    ("network", "create", "--subnet", "10.70.0.0/24", "asgard"),
    ("run", "-d", "--name", "env1", "--network", "asgard", "--", "sleep", "infinity"),
]
ENV2 = ("run", "-d", "--name", "env2", "--network", "asgard", "--", "sleep", "infinity")

FAULTS = [
    ("network:recorded", ("network", "create", "--subnet", "10.71.0.0/24", "late")),
    ("network:removing", ("network", "rm", "empty")),
    ("container:recorded", ENV2),
    ("container:netns", ENV2),
    ("attach:recorded", ENV2),
    ("attach:kernel", ENV2),
    ("attach:kernel", ("network", "connect", "empty", "env1")),
    ("detach:marked", ("network", "disconnect", "asgard", "env1")),
    ("detach:kernel", ("network", "disconnect", "asgard", "env1")),
    ("detach:marked", ("rm", "-f", "env1")),
    ("container:removing", ("rm", "-f", "env1")),
]


def records(db: Path) -> tuple[list[Network], list[Container], list[Endpoint]]:
    """The record (read-only: the daemon is running)."""
    with contextlib.closing(SQLiteStore(db, read_only=True)) as store:
        return store.networks(), store.containers(), store.endpoints()


def nft_elements(family: str, name: str) -> set[str]:
    """The elements of one of netbay's nft sets or maps, as `key : value` text."""
    listed = json.loads(sh(f"nft -j list set {family} netbay {name}").stdout
                        if name in ("endpoints", "ports") else
                        sh(f"nft -j list map {family} netbay {name}").stdout)
    body = next(o for o in listed["nftables"] if "set" in o or "map" in o)
    out = set()
    for element in (body.get("set") or body["map"]).get("elem", []):
        parts = element if isinstance(element, list) else [element]
        out.add(" : ".join(" . ".join(map(str, p["concat"])) if isinstance(p, dict) else str(p)
                           for p in parts))
    return out


def assert_consistent(env: Env) -> None:
    """Every record is settled, every kernel object is recorded and vice versa."""
    assert env.run("system", "audit", check=False).stdout == ""
    networks, containers, endpoints = records(env.paths.db)
    states = [r.state for r in networks] + [r.state for r in containers + endpoints]
    assert not {CREATING, REMOVING} & set(states)
    owned = [c for c in containers if c.config.get("netns_owned", True)]  # not a runtime's
    assert netns_files(env.paths) == {Path(c.netns).name for c in owned if c.netns}
    assert {p.name for p in env.paths.containers.iterdir()} == {c.id for c in owned}
    recorded_veths = {e.host_ifname for e in endpoints}
    assert {name for name in link_names() if name.startswith("nbv")} == recorded_veths
    bridges = json.loads(sh("ip -j link show type bridge").stdout)
    assert {b["ifname"] for b in bridges} <= {n.device for n in networks}
    # the anti-spoofing elements are exactly the recorded endpoints' (ifname . MAC . address)
    assert nft_elements("bridge", "endpoints") == {
        f"{e.host_ifname} . {e.mac} . {e.address.ip}" for e in endpoints if e.address
    }


def kill_during(env: Env, point: str, call: Callable[[], Any]) -> Any:
    """CALL while the daemon runs armed with POINT: it must die there. CALL's result."""
    env.stop_daemon()
    env.environ["NETBAY_FAULT"] = point
    env.run("daemon", "start")
    pid = env.daemon_pid()
    assert pid is not None
    start = _linux.process_start_time(pid)
    outcome = call()
    # its connection closes as the kill tears the process down, a moment before it is gone
    # (a thread in a conntrack dump finishes the dump first)
    wait_until(lambda: not _linux.process_alive(pid, start), 5,
               "the daemon to die at " + point)
    del env.environ["NETBAY_FAULT"]
    env.run("daemon", "start")  # start-up repairs from the record
    return outcome


@pytest.mark.parametrize(
    ("point", "command"), FAULTS, ids=[f"{p}-{c[0]}-{c[1]}" for p, c in FAULTS]
)
def test_daemon_killed_mid_operation_is_repaired(
    env: Env, point: str, command: tuple[str, ...]
) -> None:
    for step in SETUP:
        env.run(*step)
    env.run("network", "create", "--subnet", "10.72.0.0/24", "empty")
    result = kill_during(env, point, lambda: env.run(*command, check=False))
    assert result.returncode != 0 and "netbayd closed the connection" in result.stderr
    assert_consistent(env)

    # and the survivors can be removed completely
    for name in env.run("ps", "-a", "-q", "--no-trunc").stdout.split():
        env.run("rm", "-f", name)
    env.run("network", "prune", "-f")
    assert_consistent(env)
    assert netns_files(env.paths) == set()
    assert {n for n in link_names() if n.startswith(("nbv", "br-"))} == set()
    assert records(env.paths.db)[2] == []


# --- the runtimes' paths ----------------------------------------------------------------------
def cni_conf(name: str = "cninet", **fields: Any) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": name, "type": "netbay", **fields}


def port(host: int) -> dict[str, Any]:
    return {"runtimeConfig": {"portMappings": [
        {"hostPort": host, "containerPort": 80, "protocol": "tcp"}]}}


ASGARD = cni_conf(network="asgard")
SELF = cni_conf("cnself", bridge="nbself0", subnet="10.73.0.0/24")
PODNET = {"subnet": "10.88.7.0/24", "gateway": "10.88.7.1", "device": "podman7"}
PODNET2 = {"subnet": "10.88.8.0/24", "gateway": "10.88.8.1", "device": "podman8"}
PODNET3 = {"subnet": "10.88.9.0/24", "gateway": "10.88.9.1", "device": "podman9"}
LOCAL_PORT = [{"host_ip": "127.0.0.1", "container_port": 80, "host_port": 18402, "range": 1,
               "protocol": "tcp"}]


@dataclass
class Runtimes:
    """A CNI runtime and podman on the real host, with what they attached (to undo it all)."""

    env: Env
    cni: Cni
    nv: NetavarkCli
    make_ns: Callable[[str], Path]
    namespaces: dict[str, Path] = field(default_factory=dict)
    added: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    set_up: dict[str, dict[str, Any]] = field(default_factory=dict)

    def ns(self, cid: str) -> Path:
        if cid not in self.namespaces:
            self.namespaces[cid] = self.make_ns(cid)
            sh(f"nsenter --net={self.namespaces[cid]} ip link set lo up")
        return self.namespaces[cid]

    def add(self, cid: str, conf: dict[str, Any], ifname: str = "eth0") -> Invoked:
        self.added[(cid, ifname)] = conf
        return self.cni.call("ADD", conf, cid, self.ns(cid), ifname)

    def delete(self, cid: str, ifname: str = "eth0") -> Invoked:
        return self.cni.call("DEL", self.added[(cid, ifname)], cid, self.ns(cid), ifname)

    def gc(self, *keep: str) -> Invoked:
        valid = [{"containerID": cid, "ifname": "eth0"} for cid in keep]
        return self.cni.call("GC", {**ASGARD, "cni.dev/valid-attachments": valid}, None, None,
                             None)

    def setup(self, cid: str, *networks: tuple[str, dict[str, Any]]) -> Invoked:
        ports = LOCAL_PORT if cid == "nv1" else []
        self.set_up[cid] = netavark_options(cid, cid, list(networks), ports)
        return self.nv.setup(self.ns(cid), self.set_up[cid])

    def teardown(self, cid: str) -> Invoked:
        return self.nv.teardown(self.ns(cid), self.set_up[cid])

    def undo_all(self) -> None:
        for cid, ifname in list(self.added):
            assert self.delete(cid, ifname).code == 0
        for cid in self.set_up:
            assert self.teardown(cid).code == 0
        assert self.gc().code == 0

    def state(self) -> dict[str, Any]:
        """What the runtimes' containers have, in the record and in the kernel, by name."""
        networks, containers, endpoints = records(self.env.paths.db)
        names = {n.id: n.name for n in networks}
        ids = {c.id: c.config.get("external_id") for c in containers}
        interfaces = {}
        for cid, path in self.namespaces.items():
            for link in json.loads(sh(f"nsenter --net={path} ip -j -4 addr").stdout):
                for a in link["addr_info"]:
                    if link["ifname"] != "lo":
                        interfaces[(cid, link["ifname"])] = f"{a['local']}/{a['prefixlen']}"
        return {
            "attachments": {(ids[e.container_id], e.ifname): (names[e.network_id], str(e.address))
                            for e in endpoints if ids.get(e.container_id)},
            "interfaces": interfaces,
            "published": nft_elements("inet", "pub_any") | nft_elements("inet", "pub_ip"),
            "networks": set(names.values()),
        }


def without(state: dict[str, Any], gone: set[str], networks: set[str]) -> dict[str, Any]:
    """STATE once the runtimes' containers GONE and the NETWORKS made for them are removed."""
    lost = {a for (cid, _), (_, a) in state["attachments"].items() if cid in gone}
    return {
        "attachments": {k: v for k, v in state["attachments"].items() if k[0] not in gone},
        "interfaces": {k: v for k, v in state["interfaces"].items() if k[0] not in gone},
        "published": {e for e in state["published"]
                      if not any(f": {a.split('/')[0]} ." in e for a in lost)},
        "networks": state["networks"] - networks,
    }


def record_matches_kernel(state: dict[str, Any]) -> None:
    attached = {key: address for key, (_, address) in state["attachments"].items()}
    assert attached == state["interfaces"]
    targets = {e.split(" : ")[1].split(" . ")[0] for e in state["published"]}
    assert targets <= {a.split("/")[0] for a in attached.values()}


# (the call, the runtime's answer to its failure, the containers it removes, and networks)
Op = tuple[Callable[[Runtimes], Invoked], Callable[[Runtimes], Invoked], set[str], set[str]]
OPS: dict[str, Op] = {
    "add": (lambda r: r.add("late", {**ASGARD, **port(18403)}),
            lambda r: r.delete("late"), set(), set()),
    "add-made-network": (lambda r: r.add("late", cni_conf("cnnew", bridge="nbnew0",
                                                          subnet="10.74.0.0/24")),
                         lambda r: r.delete("late"), set(), set()),
    "add-second-interface": (lambda r: r.add("keep", {**cni_conf(network="asgard2"),
                                                      **port(18404)}, "eth1"),
                             lambda r: r.delete("keep", "eth1"), set(), set()),
    "del": (lambda r: r.delete("victim"), lambda r: r.delete("victim"), {"victim"}, set()),
    "del-last": (lambda r: r.delete("solo"), lambda r: r.delete("solo"), {"solo"}, {"cnself"}),
    "gc": (lambda r: r.gc("keep", "solo"), lambda r: r.gc("keep", "solo"),
           {"victim", "stale"}, set()),
    "setup": (lambda r: r.setup("nv2", ("podnet", {**PODNET, "ip": "10.88.7.3"}),
                                ("podnet3", {**PODNET3, "ip": "10.88.9.3"})),
              lambda r: r.teardown("nv2"), set(), set()),
    "teardown": (lambda r: r.teardown("nv1"), lambda r: r.teardown("nv1"),
                 {"nv1"}, {"podnet", "podnet2"}),
}
RUNTIME_FAULTS = [
    *[(p, "add") for p in ("sandbox:claimed", "attach:recorded", "attach:kernel",
                           "sandbox:attached", "sandbox:cni-added")],
    *[(p, "add-made-network") for p in ("network:recorded", "attach:kernel")],
    *[(p, "add-second-interface") for p in ("sandbox:claimed", "sandbox:published",
                                            "attach:kernel", "sandbox:cni-added")],
    *[(p, "del") for p in ("detach:marked", "detach:kernel", "sandbox:detached",
                           "sandbox:removing")],
    *[(p, "del-last") for p in ("sandbox:removing", "network:removing")],
    *[(p, "gc") for p in ("detach:kernel", "sandbox:detached@2")],
    *[(p, "setup") for p in ("network:recorded", "attach:kernel", "sandbox:attached@2",
                             "sandbox:netavark-set-up")],
    *[(p, "teardown") for p in ("detach:kernel", "detach:marked@2", "sandbox:removing",
                                "network:removing")],
]


@pytest.fixture
def runtimes(env: Env, tmp_path: Path, namespaces: Callable[[str], Path]) -> Runtimes:
    return Runtimes(env, Cni(tmp_path / "bin", env.environ, env.enter),
                    NetavarkCli(tmp_path / "nvbin", env.environ, env.enter), namespaces)


def runtime_world(r: Runtimes) -> None:
    """keep, victim, stale on asgard (two publishing), solo on a network made for it; nv1 on
    two podman networks, publishing on 127.0.0.1."""
    for cid, conf in (("keep", {**ASGARD, **port(18400)}), ("victim", {**ASGARD, **port(18401)}),
                      ("stale", ASGARD), ("solo", SELF)):
        assert r.add(cid, conf).code == 0
    assert r.setup("nv1", ("podnet", {**PODNET, "ip": "10.88.7.2"}),
                   ("podnet2", {**PODNET2, "ip": "10.88.8.2"})).code == 0


@pytest.mark.parametrize(("point", "op"), RUNTIME_FAULTS,
                         ids=[f"{op}-{point}" for point, op in RUNTIME_FAULTS])
def test_daemon_killed_in_a_runtime_call_is_repaired(
    env: Env, runtimes: Runtimes, point: str, op: str
) -> None:
    for network in (("10.70.0.0/24", "asgard"), ("10.75.0.0/24", "asgard2")):
        env.run("network", "create", "--subnet", *network)
    env.run("daemon", "start")
    host_before, nft_before = snapshot(env.paths), sh("nft list ruleset").stdout
    runtime_world(runtimes)
    before = runtimes.state()
    call, answer, gone, networks = OPS[op]

    failed = kill_during(env, point, lambda: call(runtimes))
    assert failed.code != 0, failed
    assert_consistent(env)
    record_matches_kernel(runtimes.state())

    assert answer(runtimes).code == 0  # the runtime's answer to the failure
    assert_consistent(env)
    after = runtimes.state()
    record_matches_kernel(after)
    assert after == without(before, gone, networks)

    runtimes.undo_all()
    assert_consistent(env)
    assert runtimes.state()["interfaces"] == {}
    assert snapshot(env.paths) == host_before
    assert sh("nft list ruleset").stdout == nft_before
    for path in runtimes.namespaces.values():  # only their loopback left in them
        out = subprocess.run(["nsenter", f"--net={path}", "ip", "-o", "link"],
                             capture_output=True, text=True, check=True).stdout
        assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]
