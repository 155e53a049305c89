"""Seeing the network, end to end in a throwaway host namespace: topology (text, DOT, JSON,
PNG/SVG, HTML in a real browser), trace with real probes and nftrace, capture with tcpdump,
doctor with injected faults, RPS masks as the kernel reports them, inspect's routes and
neighbours."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from helpers import PROBE, Env, Lan, api_get, sh, snapshot, wait_until
from pngcheck import PNG_MAGIC, pcap_packets, png_stats
from topoparse import dot_objects, text_objects

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

SERVE = ["sh", "-c",
         f"{sys.executable} {PROBE} udp-serve 80 & exec {sys.executable} {PROBE} tcp-serve 80"]
BRIDGE_OPT = "com.docker.network.bridge.name"
DNSPROBE = str(Path(__file__).parents[1] / "dnsprobe.py")


def inspect(env: Env, name: str) -> dict[str, Any]:
    return dict(env.json("inspect", name)[0])


def ip_of(env: Env, name: str, network: str) -> str:
    return str(inspect(env, name)["NetworkSettings"]["Networks"][network]["IPAddress"])


def pid_of(env: Env, name: str) -> int:
    return env.host_pid(int(inspect(env, name)["State"]["Pid"]))


def wait_tcp(argv: list[str]) -> None:
    wait_until(lambda: subprocess.run(argv, capture_output=True, timeout=20).returncode == 0,
               10, f"an answer from {argv}", interval=0.1)


@pytest.fixture
def world(env: Env, lan: Lan) -> dict[str, str]:
    """Two bridge networks with known bridge names; a1, a2 (publishing 8080) on neta, b1 on
    netb, ab on both; a LAN machine at 198.51.100.2 serving TCP 80."""
    env.run("network", "create", "--subnet", "10.91.0.0/24", "-o", f"{BRIDGE_OPT}=nbta", "neta")
    env.run("network", "create", "--subnet", "10.92.0.0/24", "-o", f"{BRIDGE_OPT}=nbtb", "netb")
    for name, nets, extra in (("a1", ["neta"], []), ("a2", ["neta"], ["-p", "8080:80"]),
                              ("b1", ["netb"], []), ("ab", ["neta", "netb"], [])):
        flags = [x for n in nets for x in ("--network", n)]
        env.run("run", "-d", "--name", name, "--hostname", name, *flags, *extra, "--", *SERVE)
    lan.serve("tcp-serve", 80)
    addresses = {n: ip_of(env, n, net) for n, net in
                 (("a1", "neta"), ("a2", "neta"), ("b1", "netb"), ("ab", "neta"))}
    for address in addresses.values():
        wait_tcp([sys.executable, PROBE, "tcp", address, "80"])
    wait_tcp(lan.argv(sys.executable, PROBE, "tcp", "198.51.100.2", "80"))
    return addresses


def host_ends(env: Env) -> dict[str, str]:
    """veth host end -> container name, from inspect."""
    out = {}
    for name in ("a1", "a2", "b1", "ab"):
        for settings in inspect(env, name)["NetworkSettings"]["Networks"].values():
            out[settings["HostInterface"]] = name
    return out


# --- topology ------------------------------------------------------------------------------
def test_topology_of_a_known_setup_contains_exactly_its_objects(
    env: Env, world: dict[str, str]
) -> None:
    ends = host_ends(env)
    assert len(ends) == 5
    result = env.run("topology")
    objects = text_objects(result.stdout)
    assert objects == {
        "interface": {"ext0"},
        "network": {"bridge", "host", "none", "neta", "netb"},
        "bridge": {"nbta", "nbtb"},  # not netbay0: no container uses the default bridge
        "veth": set(ends),
        "port": {"tcp 0.0.0.0:8080"},
        "container": {"a1", "a2", "ab", "b1"},
    }, result.stdout
    assert "problems" not in result.stdout
    for line in result.stdout.splitlines():  # each veth names the container at its other end
        for veth, container in ends.items():
            if f"veth {veth}" in line:
                assert f"⇄ container {container} eth" in line, line
    assert f"port tcp 0.0.0.0:8080 -> a2 {world['a2']}:80" in result.stdout
    assert "network neta  bridge  10.91.0.0/24  gw 10.91.0.1  nat masquerade" in result.stdout

    nodes, edges = dot_objects(env.run("topology", "--format", "dot").stdout)
    assert nodes == {
        "host": {"host"}, "interface": {"ext0"},
        "network": {"bridge", "host", "none", "neta", "netb"},
        "mode": {"host", "none", "bridge"}, "bridge": {"nbta", "nbtb"}, "veth": set(ends),
        "container": {"a1", "a2", "ab", "b1"}, "port": {"tcp:0.0.0.0:8080"},
    }
    assert {(a, b) for a, b in edges if a.startswith("veth:")} == {
        (f"veth:{veth}", f"container:{c}") for veth, c in ends.items()}
    assert {(a, b) for a, b in edges if b.startswith("veth:")} == {
        (f"bridge:{'nbta' if ip_in(env, c, veth, 'neta') else 'nbtb'}", f"veth:{veth}")
        for veth, c in ends.items()}

    topo = json.loads(env.run("topology", "--format", "json").stdout)
    assert topo["problems"] == []
    ab = next(c for c in topo["containers"] if c["name"] == "ab")
    assert sorted(i["network"] for i in ab["interfaces"]) == ["neta", "netb"]


def ip_in(env: Env, container: str, veth: str, network: str) -> bool:
    settings = inspect(env, container)["NetworkSettings"]["Networks"].get(network)
    return bool(settings and settings["HostInterface"] == veth)


def test_topology_marks_where_record_and_kernel_disagree(env: Env, world: dict[str, str]) -> None:
    gone = next(v for v, c in host_ends(env).items() if c == "a1")
    sh(f"ip link del {gone}")
    sh("ip link add nbvdeadbeef0001 type veth peer name nbvpeer0001 && "
       "ip link set nbvdeadbeef0001 master nbta up")
    sh("ip link add vx42 type vxlan id 42 dstport 4789 local 198.51.100.1 dev ext0 && "
       "ip link set vx42 master nbtb up")
    result = env.run("topology", check=False)
    assert result.returncode == 1
    problems = result.stdout.split("problems (record and kernel disagree)")[1]
    assert f"network neta: {gone}: {gone} in the record but not in the kernel" in problems
    assert "network neta: nbvdeadbeef0001: a port of netbay's bridge that netbay's record " \
        "lacks" in problems
    assert "interface nbvpeer0001: named like a netbay link" in problems
    vxlan = next(ln for ln in result.stdout.splitlines() if "vx42" in ln)
    assert vxlan.lstrip("│├└─ ").startswith("vxlan vx42  mtu 1450  up  [! a port of netbay's")
    topo = json.loads(env.run("topology", "--format", "json", check=False).stdout)
    port = next(p for n in topo["networks"] for p in n["ports"] if p["name"] == "vx42")
    assert port["details"] == {"vni": "42", "local": "198.51.100.1", "dstport": "4789",
                               "dev": "ext0"}
    marked = [ln for ln in result.stdout.splitlines() if "nbvdeadbeef0001" in ln and "[!" in ln]
    assert marked and marked[0].lstrip("│├└─ ").startswith("veth nbvdeadbeef0001")
    dot = env.run("topology", "--format", "dot", check=False).stdout
    assert '"veth:nbvdeadbeef0001" [label="veth nbvdeadbeef0001\\n! a port' in dot
    assert 'color="#c0392b"' in dot


def test_topology_images_render_and_the_page_shows_in_a_browser(
    env: Env, world: dict[str, str], tmp_path: Path
) -> None:
    png, svg, page = tmp_path / "t.png", tmp_path / "t.svg", tmp_path / "t.html"
    env.run("topology", "--format", "png", "-o", str(png))
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 20_000
    width, height, colours, drawn = png_stats(png)
    assert width > 600 and height > 200 and colours > 8 and drawn > 0.01
    env.run("topology", "--format", "svg", "-o", str(svg))
    text = svg.read_text()
    assert "<svg" in text and "container a1" in text and "bridge nbta" in text
    env.run("topology", "--format", "html", "-o", str(page))
    html = page.read_text()
    assert html.count("<svg") == 1 and "network neta" in html
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (scripts/install.sh --test installs it)")
    shot = tmp_path / "shot.png"
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--window-size=1400,1500",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )
    width, height, colours, drawn = png_stats(shot)
    assert (width, height) == (1400, 1500)
    assert colours > 20 and drawn > 0.05, (colours, drawn)
    keep = os.environ.get("NETBAY_TEST_SHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "topology-html.png")
        shutil.copy(png, Path(keep) / "topology.png")


# --- trace ---------------------------------------------------------------------------------
def trace(env: Env, *args: str) -> tuple[int, dict[str, Any]]:
    result = env.run("trace", *args, "--format", "json", check=False)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def rules_of(result: dict[str, Any], where: str) -> list[tuple[str, str, str]]:
    hop = next(h for h in result["hops"] if h["where"] == where)
    return [(f"{r['family']} {r['table']} {r['chain']}", r["rule"] or r["kind"], r["verdict"])
            for r in hop["rules"]]


def test_trace_an_allowed_path_shows_each_hop(env: Env, world: dict[str, str]) -> None:
    before = sh("nft list ruleset").stdout
    code, result = trace(env, "a1", "a2", "--port", "80")
    assert code == 0 and result["outcome"]["status"] == "connected"
    assert [h["where"] for h in result["hops"]] == [
        "a1", "into the host", "ingress bridge", "host", "egress", "a2"]
    a1_end = next(v for v, c in host_ends(env).items() if c == "a1")
    a2_end = next(v for v, c in host_ends(env).items() if c == "a2")
    assert result["hops"][0]["text"] == f"route {world['a2']} dev eth0 src {world['a1']}"
    assert result["hops"][1]["text"] == (
        f"veth a1:eth0 ⇄ {a1_end} (host end), a port of bridge nbta (network neta)")
    assert rules_of(result, "ingress bridge") == [
        ("bridge netbay prerouting",
         "meta pkttype other iifname . ether saddr . ip saddr @endpoints notrack accept",
         "accept")]  # to another container's MAC: untracked
    assert result["hops"][3]["text"] == "bridged on nbta (same network: no routing)"
    assert ("inet netbay forward", "iifname . oifname @same_bridge accept", "accept") in \
        rules_of(result, "host")
    assert rules_of(result, "egress") == [("bridge netbay forward", "policy", "accept")]
    assert result["hops"][5]["text"] == (
        f"bridge nbta (network neta) -> port {a2_end} ⇄ veth a2:eth0 {world['a2']}/24")
    assert result["reply"] and result["drop"] is None
    text = env.run("trace", "a1", "a2", "--port", "80").stdout
    assert "✓ a2 got it: the TCP handshake completed" in text

    # routed to the LAN machine: the host's routing decision, and the masquerade
    code, result = trace(env, "a1", "198.51.100.2", "--port", "80")
    assert code == 0, result
    host = next(h for h in result["hops"] if h["where"] == "host")
    assert host["text"].startswith("route 198.51.100.2 dev ext0")
    assert any(n.startswith(f"SNAT {world['a1']}:") and "-> 198.51.100.1:" in n
               for n in result["nat"]), result["nat"]
    assert ("inet netbay postrouting", "oifname != @bridges ip saddr @masq_nets masquerade",
            "accept") in rules_of(result, "host")
    assert sh("nft list ruleset").stdout == before  # the trace chains are gone


def test_trace_a_path_blocked_by_isolation_names_the_dropping_rule(
    env: Env, world: dict[str, str]
) -> None:
    for extra in (["--port", "80"], []):
        code, result = trace(env, "a1", "b1", *extra)
        assert code == 1 and not result["outcome"]["delivered"]
        assert result["drop"]["where"] == "inet netbay forward"
        assert result["drop"]["rule"] == "rule `oifname @bridges drop`"
        assert result["drop"]["why"].startswith("network isolation")
        assert rules_of(result, "host")[-1] == ("inet netbay forward", "oifname @bridges drop",
                                                "drop")
        host = next(h for h in result["hops"] if h["where"] == "host")
        assert host["text"] == f"route {world['b1']} dev nbtb (arriving on nbta)"
    text = env.run("trace", "a1", "b1", check=False).stdout
    assert "✗ dropped (request) at inet netbay forward: rule `oifname @bridges drop`" in text
    # ab is on both networks: it reaches b1
    code, _ = trace(env, "ab", "b1", "--port", "80")
    assert code == 0
    assert "trace_" not in sh("nft list ruleset").stdout


def test_trace_a_published_port_shows_the_dnat_rewrite(env: Env, world: dict[str, str]) -> None:
    code, result = trace(env, "b1", "198.51.100.1", "--port", "8080")
    assert code == 0 and result["reached"] == "a2"
    assert result["dst"]["kind"] == "host"
    assert result["nat"][0] == (
        f"DNAT 198.51.100.1:8080 -> {world['a2']}:80 (by inet netbay prerouting: fib daddr type "
        "local dnat ip to meta l4proto . th dport map @pub_any)")
    assert any(n.startswith(f"SNAT {world['b1']}:") for n in result["nat"])
    assert ("inet netbay forward", "ct status dnat oifname @bridges accept", "accept") in \
        rules_of(result, "host")
    assert result["hops"][-1]["where"] == "a2"
    # from the host itself, through its output hook
    code, result = trace(env, "host", "127.0.0.1", "--port", "8080")
    assert code == 0 and result["reached"] == "a2", result
    assert result["nat"][0].startswith(f"DNAT 127.0.0.1:8080 -> {world['a2']}:80 (by inet "
                                       "netbay output")


def test_trace_refuses_what_it_cannot_probe(env: Env, world: dict[str, str]) -> None:
    for args, message in (
        (("a1", "nosuch"), "Error: no container nosuch (a destination is a container, `host` "
                           "or an IP address)"),
        (("203.0.113.9", "a1"), "Error: invalid source '203.0.113.9': not an address of a "
                                "running container or of the host: a probe must start somewhere"
                                " netbay can enter"),
        (("a1", "a2", "--proto", "udp"), "Error: invalid port '': a udp probe needs --port"),
    ):
        result = env.run("trace", *args, check=False)
        assert result.returncode == 1 and result.stderr.strip() == message, result.stderr


# --- capture -------------------------------------------------------------------------------
def ping_from(env: Env, who: str, address: str) -> None:
    subprocess.run(["nsenter", "-t", str(pid_of(env, who)), "-n", "ping", "-c", "1", "-W", "2",
                    address], check=True, capture_output=True, timeout=20)


def start_capture(env: Env, *args: str) -> subprocess.Popen[bytes]:
    """`netbay capture ARGS` in the background, once tcpdump says it is listening."""
    proc = subprocess.Popen([*env.enter, sys.executable, "-m", "netbay", "capture", *args],
                            env=env.environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    env.cleanups.append(lambda: (proc.poll() is None and proc.kill(), proc.wait()))
    assert proc.stderr is not None
    stderr, seen = proc.stderr.fileno(), bytearray()

    def done_reading() -> bool:
        """tcpdump said it listens, or it is gone (then the assert below shows what it said)."""
        ready, _, _ = select.select([stderr], [], [], 0.1)
        chunk = os.read(stderr, 4096) if ready else None
        seen.extend(chunk or b"")
        return b"listening on" in seen or chunk == b""

    wait_until(done_reading, 20, "tcpdump to say it is listening", interval=0)
    assert b"listening on" in seen, bytes(seen)
    return proc


def test_capture_sees_a_ping_it_provokes(env: Env, world: dict[str, str], tmp_path: Path) -> None:
    pcap = tmp_path / "a1.pcap"
    proc = start_capture(env, "a1", "-c", "2", "-w", str(pcap), "icmp")
    ping_from(env, "a2", world["a1"])
    assert proc.wait(timeout=20) == 0
    frames = pcap_packets(pcap)
    assert len(frames) == 2
    seen = []
    for frame in frames:
        assert struct.unpack_from("!H", frame, 12)[0] == 0x0800
        ip = frame[14:]
        seen.append((str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20])),
                     ip[9], ip[(ip[0] & 0x0F) * 4]))
    assert seen == [(world["a2"], world["a1"], 1, 8), (world["a1"], world["a2"], 1, 0)]

    proc = start_capture(env, "neta", "-c", "1", "icmp")  # the bridge, printed as text
    ping_from(env, "a1", world["a2"])
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert f"{world['a1']} > {world['a2']}: ICMP echo request" in out.decode()

    result = env.run("capture", "host", check=False)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        "Error: invalid capture 'host': the host network has no interface of its own: capture "
        "on a host interface with tcpdump -i"]


# --- doctor --------------------------------------------------------------------------------
def doctor(env: Env) -> tuple[int, dict[str, str], list[dict[str, str]]]:
    result = env.run("doctor", "--format", "json", check=False)
    findings = json.loads(result.stdout)
    worst: dict[str, str] = {}
    for f in findings:
        if worst.get(f["check"]) not in ("fail", "warn"):
            worst[f["check"]] = f["status"]
    return result.returncode, worst, findings


# ip_forward=0 is not here: netbayd's reconciler turns it back on within a second, before
# doctor could see it (tests/e2e/test_drift.py); doctor's check of it is unit-tested.
FAULTS = {
    "forward policy": (
        "nft add table inet other && nft add chain inet other gate "
        "'{ type filter hook forward priority 0; policy drop; }'",
        "nft delete table inet other", "table inet other chain gate has policy drop"),
    "legacy forward policy": (
        "iptables-legacy -w -P FORWARD DROP", "iptables-legacy -w -P FORWARD ACCEPT",
        "table iptables-legacy filter chain FORWARD has policy drop"),
    "record vs kernel": (
        "ip link add nbvdeadbeef0001 type veth peer name nbvpeer0001 && "
        "ip link set nbvdeadbeef0001 master nbta",
        "ip link del nbvdeadbeef0001",
        "nbvdeadbeef0001: a port of netbay's bridge that netbay's record lacks"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_doctor_flags_each_injected_fault_and_is_clean_otherwise(
    env: Env, fault: str
) -> None:
    env.run("network", "create", "--subnet", "10.91.0.0/24", "-o", f"{BRIDGE_OPT}=nbta", "neta")
    env.run("run", "-d", "--name", "a1", "--network", "neta", "--", "sleep", "inf")
    code, worst, findings = doctor(env)
    assert code == 0, findings
    assert {v for k, v in worst.items() if k != "docker plugin"} == {"ok"} and worst["dns"] == "ok"
    text = env.run("doctor").stdout
    assert text.endswith("no problems found\n")
    inject, undo, message = FAULTS[fault]
    check = "forward policy" if fault.endswith("forward policy") else fault
    sh(inject)
    try:
        code, worst, findings = doctor(env)
        assert code == 1
        assert worst[check] == "fail", findings
        assert {k for k, v in worst.items() if v in ("warn", "fail")} == {check}
        finding = next(f for f in findings if f["check"] == check and f["status"] == "fail")
        assert message in finding["message"] and finding["fix"]
        assert f"[FAIL] {check}: " in env.run("doctor", check=False).stdout
    finally:
        sh(undo)
    assert doctor(env)[0] == 0


def test_doctor_fix_for_an_orphan_port_works(env: Env) -> None:
    env.run("network", "create", "--subnet", "10.91.0.0/24", "-o", f"{BRIDGE_OPT}=nbta", "neta")
    sh("ip link add nbvdeadbeef0001 type veth peer name nbvpeer0001 && "
       "ip link set nbvdeadbeef0001 master nbta")
    _, _, findings = doctor(env)
    finding = next(f for f in findings if f["check"] == "record vs kernel")
    assert finding["fix"].startswith("netbay system gc")
    env.run("system", "gc")
    assert doctor(env)[0] == 0


def dns_finding(env: Env) -> dict[str, str]:
    return next(f for f in doctor(env)[2] if f["check"] == "dns")


def dns_health(env: Env) -> dict[str, Any]:
    return dict(api_get(env.paths, "/netbay/dns/health")[1])


def test_doctor_dns_answers_on_each_network_in_use(env: Env) -> None:
    for name, subnet in (("neta", "10.91.0.0/24"), ("netb", "10.92.0.0/24")):
        env.run("network", "create", "--subnet", subnet, name)
    env.run("network", "create", "--subnet", "10.93.0.0/24", "empty")  # no container: no need
    env.run("run", "-d", "--name", "a1", "--network", "neta", "--", "sleep", "inf")
    env.run("run", "-d", "--name", "b1", "--network", "netb", "--", "sleep", "inf")
    pid = int((env.paths.root / "netbay-dns.pid").read_text())
    assert dns_finding(env) == {
        "check": "dns", "status": "ok", "fix": "",
        "message": f"DNS server running (pid {pid}), answering on 2 addresses (10.91.0.1, "
                   "10.92.0.1)"}
    status, report = api_get(env.paths, "/netbay/dns/health")
    assert (status, report["healthy"], report["failed"]) == (200, True, {})
    assert report["wanted"] == {"10.91.0.1": "neta", "10.92.0.1": "netb"}
    # what the health check says is what a container gets
    answer = subprocess.run(
        ["nsenter", "-t", str(pid_of(env, "a1")), "-n", sys.executable, DNSPROBE, "query",
         "10.91.0.1", "a1"], capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(answer.stdout)["answers"] == [ip_of(env, "a1", "neta")]


def test_doctor_dns_names_an_address_it_cannot_serve(env: Env) -> None:
    env.run("network", "create", "--subnet", "10.91.0.0/24", "neta")
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # another program's port 53
    env.cleanups.append(squatter.close)
    squatter.bind(("10.91.0.1", 53))
    env.run("run", "-d", "--name", "a1", "--network", "neta", "--", "sleep", "inf")
    finding = dns_finding(env)
    assert (finding["status"], finding["message"]) == (
        "fail", f"DNS server (pid {dns_health(env)['pid']}) does not answer on 10.91.0.1 "
        "(network neta): udp 10.91.0.1:53: Address already in use: containers there cannot "
        "resolve names"), finding
    assert "ss -lunp 'sport = :53'" in finding["fix"]
    squatter.close()  # the server tries again every 0.5 s
    wait_until(lambda: dns_health(env)["healthy"], 10, "the DNS server to take 10.91.0.1:53")
    assert dns_finding(env)["status"] == "ok"


def answering_dns_pid(env: Env) -> int | None:
    report = dns_health(env)
    return int(report["pid"]) if report["answered"] else None


def dns_after_death(env: Env, pid: int) -> dict[str, Any] | None:
    """The DNS health report once netbayd has seen server PID die; None before."""
    report = dns_health(env)
    return report if report["phase"] != "running" or report["pid"] != pid else None


def kill_dns_until_its_restart_waits(env: Env, seconds: float) -> int:
    """SIGKILL the DNS server each time netbayd brings it back, until netbayd waits SECONDS or
    more before the next start (the wait doubles while the server keeps dying young): so
    what doctor sees next is a server that is down. The pid killed last."""
    for _ in range(10):
        pid = wait_until(partial(answering_dns_pid, env), 10, "the DNS server to answer")
        os.kill(env.host_pid(pid), signal.SIGKILL)
        report = wait_until(partial(dns_after_death, env, pid), 10,
                            f"netbayd to see that DNS server {pid} died", interval=0.01)
        if report["phase"] == "backoff" and report["retry_in"] >= seconds:
            return pid
    raise AssertionError(f"netbayd never waited {seconds} s to restart the DNS server")


def test_doctor_dns_fails_while_the_killed_server_is_down(env: Env) -> None:
    env.run("network", "create", "--subnet", "10.91.0.0/24", "neta")
    env.run("run", "-d", "--name", "a1", "--network", "neta", "--", "sleep", "inf")
    killed = kill_dns_until_its_restart_waits(env, 2.5)
    down = dns_finding(env)
    assert down["status"] == "fail", down
    assert re.fullmatch(
        rf"DNS server not running: pid {killed} was killed by SIGKILL \d+\.\d s ago; netbayd "
        r"starts it again in \d+\.\d s \(restart \d+; the wait doubles while it keeps dying "
        r"young\); meanwhile names do not resolve on neta", down["message"]), down
    assert down["fix"] == ("run netbay doctor again in a few seconds; if it keeps dying, see "
                           f"{env.paths.daemon_log}")
    assert api_get(env.paths, "/netbay/dns/health")[0] == 503
    # back: answering again, and doctor still tells of the death
    new = wait_until(partial(answering_dns_pid, env), 10, "the DNS server to be back")
    back = dns_finding(env)
    assert back["status"] == "warn", back
    assert back["message"].startswith(
        f"DNS server running (pid {new}), answering on 1 address (10.91.0.1); restarted after "
        f"pid {killed} was killed by SIGKILL ")
    assert back["fix"].startswith(f"why it died: {env.paths.daemon_log}")


# --- rps -----------------------------------------------------------------------------------
def sysfs_read(path: str, pid: int | None = None) -> str:
    """PATH under the host's /sys (the real host's shows its own namespace) or under a sysfs
    mounted afresh in PID's namespace: what the kernel says."""
    if pid is None:
        return Path("/sys", path).read_text().strip()
    argv = ["nsenter", "-t", str(pid), "-n", "unshare", "-m", "sh", "-c",
            f"mount -t sysfs sysfs /sys && cat /sys/{path}"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def online() -> str:
    return Path("/sys/devices/system/cpu/online").read_text().strip()


def all_cpus_mask() -> str:
    cpus: set[int] = set()
    for item in online().split(","):
        low, _, high = item.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return f"{sum(1 << c for c in cpus):x}"


def rps_report(env: Env, *target: str) -> dict[str, Any]:
    report = env.json("rps", "show", *target, "--format", "json")
    report.pop("softnet")
    return dict(report)


def test_rps_set_writes_the_masks_the_kernel_then_reports(env: Env, world: dict[str, str]) -> None:
    report = env.json("rps", "set", "neta", "--cpus", "1", "--flows", "2048", "--format", "json")
    rows = {(e["namespace"], e["name"]): e["rx"] for e in report["interfaces"]}
    ends = {v: c for v, c in host_ends(env).items() if ip_in(env, c, v, "neta")}
    assert set(rows) == {("host", v) for v in ends} | {(c, "eth0") for c in ("a1", "a2", "ab")}
    assert all(rx == [{"queue": "rx-0", "cpus": "1", "flow_cnt": 2048}] for rx in rows.values())
    assert any("rps_sock_flow_entries" in note for note in report["notes"])
    for veth in ends:  # the kernel, read independently: host ends here, container ends inside
        assert sysfs_read(f"class/net/{veth}/queues/rx-0/rps_cpus") == "2"
        assert sysfs_read(f"class/net/{veth}/queues/rx-0/rps_flow_cnt") == "2048"
    for name in ("a1", "a2", "ab"):
        assert sysfs_read("class/net/eth0/queues/rx-0/rps_cpus", pid_of(env, name)) == "2"
    b1 = sysfs_read("class/net/eth0/queues/rx-0/rps_cpus", pid_of(env, "b1"))
    assert b1 == "0"  # netb was not named
    text = env.run("rps", "show", "a1").stdout
    assert "container end: a1 on neta" in text and "CPU" in text and "PROCESSED" in text

    # `lo` exists here and in every container: only the host's lo changes
    a1_lo = sysfs_read("class/net/lo/queues/rx-0/rps_cpus", pid_of(env, "a1"))
    env.run("rps", "set", "lo", "--cpus", "0")
    assert sysfs_read("class/net/lo/queues/rx-0/rps_cpus") == "1"
    assert sysfs_read("class/net/lo/queues/rx-0/rps_cpus", pid_of(env, "a1")) == a1_lo
    env.run("rps", "set", "lo", "--cpus", "none")
    assert sysfs_read("class/net/lo/queues/rx-0/rps_cpus") == "0"
    result = env.run("rps", "set", "eth0", "--cpus", "0", check=False)  # root's, not ours
    assert result.stderr.strip() == "Error: no network, container or host interface eth0"


def test_network_option_rps_auto_steers_every_endpoint(env: Env) -> None:
    env.run("network", "create", "--subnet", "10.93.0.0/24", "-o", "rps=auto",
            "-o", "rps_flows=1024", "fast")
    env.run("run", "-d", "--name", "f1", "--network", "fast", "--", "sleep", "inf")
    settings = inspect(env, "f1")["NetworkSettings"]["Networks"]["fast"]
    mask = all_cpus_mask()
    assert sysfs_read(f"class/net/{settings['HostInterface']}/queues/rx-0/rps_cpus") == mask
    assert sysfs_read(f"class/net/{settings['HostInterface']}/queues/rx-0/rps_flow_cnt") == "1024"
    pid = pid_of(env, "f1")
    assert sysfs_read("class/net/eth0/queues/rx-0/rps_cpus", pid) == mask
    assert sysfs_read("class/net/eth0/queues/rx-0/rps_flow_cnt", pid) == "1024"
    report = rps_report(env, "fast")
    assert {e["rx"][0]["cpus"] for e in report["interfaces"]} == {online()}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--cpus", "4095"), "invalid cpus '4095': CPU 4095 does not exist (online: {online})"),
        (("--cpus", "abc"), "invalid cpus 'abc': expected a CPU list like 0-3,6, 'auto' or "
                            "'none'"),
        (("--cpus", "1-0"), "invalid cpus '1-0': range 1-0 runs backwards"),
        (("--cpus", "0", "--flows", "-5"), "invalid flows '-5': out of range 0-1048576"),
        (("--cpus", "0", "--flows", "many"), "invalid flows 'many': expected a whole number"),
    ],
)
def test_bad_cpu_lists_are_refused_cleanly(
    env: Env, world: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    before = rps_report(env)
    result = env.run("rps", "set", "neta", *args, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["Error: " + message.format(online=online())]
    assert rps_report(env) == before


def test_a_bad_rps_network_option_is_refused_before_anything_is_made(env: Env) -> None:
    env.run("network", "ls")  # the daemon and its built-in networks first
    before = snapshot(env.paths)
    result = env.run("network", "create", "-o", "rps=0-4095", "fast", check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"Error: invalid opt rps '0-4095': CPU {first_missing()} does not exist "
        f"(online: {online()})"]
    assert snapshot(env.paths) == before


def first_missing() -> int:
    cpus: set[int] = set()
    for item in online().split(","):
        low, _, high = item.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return min(set(range(4096)) - cpus)


# --- inspect -------------------------------------------------------------------------------
def test_inspect_shows_routes_and_neighbours(env: Env, world: dict[str, str]) -> None:
    ping_from(env, "a1", world["a2"])
    settings = inspect(env, "a1")["NetworkSettings"]
    assert {"Destination": "default", "Gateway": "10.91.0.1", "Interface": "eth0",
            "Source": "", "Type": "unicast"} in settings["Routes"]
    assert {"Destination": "10.91.0.0/24", "Gateway": "", "Interface": "eth0",
            "Source": world["a1"], "Type": "unicast"} in settings["Routes"]
    a2_mac = inspect(env, "a2")["NetworkSettings"]["Networks"]["neta"]["MacAddress"]
    neighbour = next(n for n in settings["Neighbors"] if n["IPAddress"] == world["a2"])
    assert neighbour["MacAddress"] == a2_mac and neighbour["Interface"] == "eth0"
    assert neighbour["State"] in ("reachable", "stale", "delay", "probe")



# --- macvlan: no bridge, no host end ------------------------------------------------------
def test_macvlan_network_in_topology_capture_and_trace(env: Env, tmp_path: Path) -> None:
    sh("ip link add phys0 type veth peer name phys0p && ip link set phys0 up && "
       "ip link set phys0p up")
    env.run("network", "create", "-d", "macvlan", "--subnet", "10.94.0.0/24", "-o",
            "parent=phys0", "mv")
    for name in ("m1", "m2"):
        env.run("run", "-d", "--name", name, "--network", "mv", "--", "sleep", "inf")
    m1, m2 = ip_of(env, "m1", "mv"), ip_of(env, "m2", "mv")
    result = env.run("topology")
    objects = text_objects(result.stdout)
    assert objects["parent"] == {"phys0"} and objects["macvlan"] == {"m1:eth0", "m2:eth0"}
    assert "interface" not in objects or "phys0" not in objects["interface"]
    assert "problems" not in result.stdout
    pcap = tmp_path / "m1.pcap"
    proc = start_capture(env, "m1", "-w", str(pcap), "-c", "2", "icmp")
    ping_from(env, "m2", m1)
    assert proc.wait(timeout=20) == 0
    assert len(pcap_packets(pcap)) == 2
    code, traced = trace(env, "m2", "m1")
    assert code == 0 and traced["outcome"]["status"] == "answered"
    assert [h["where"] for h in traced["hops"]] == ["m2", "on the parent", "m1"]
    assert traced["hops"][0]["text"] == f"route {m1} dev eth0 src {m2}"
    assert [h["text"] for h in traced["hops"][1:]] == [
        f"macvlan {n}:eth0 on parent phys0 (network mv): no host hop in between"
        for n in ("m2", "m1")]
