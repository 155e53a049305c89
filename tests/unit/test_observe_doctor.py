"""doctor: each check on synthetic facts, clean and faulty; pure."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Network
from typing import Any

from netbay.observe.doctor import DoctorFacts, ForwardChain, check, check_dns, render
from netbay.observe.health import forward_chains


def network(name: str = "neta", **kw: Any) -> dict[str, Any]:
    net = {"name": name, "driver": "bridge", "internal": False, "subnets": ["10.91.0.0/24"],
           "device": {"name": "br-a", "mtu": 1500, "present": True, "problems": [],
                      "role": "bridge"},
           "shim": None, "ports": [], "members": [], "problems": []}
    net.update(kw)
    return net


def clean(**kw: Any) -> DoctorFacts:
    base = DoctorFacts(
        ip_forward="1", bridge_nf={"bridge-nf-call-iptables": "1"},
        rp_filter={"all": 0, "br-a": 0}, forward_chains=[],
        routes=[(IPv4Network("10.91.0.0/24"), "br-a"), (IPv4Network("198.51.100.0/24"), "ext0")],
        uplink_mtu=None, topology={"networks": [network()], "interfaces": [], "problems": []},
        audit=[], daemon={"pid": 1, "version": "0.1.0", "uptime": 3, "firewall": True},
        dns=None,
    )
    return dataclasses.replace(base, **kw)


def dns_health(**kw: Any) -> dict[str, Any]:
    """DnsSupervisor.health() of a server that answers on 10.91.0.1 (network neta)."""
    report = {"phase": "running", "pid": 4242, "alive": True, "answered": True, "uptime": 9.5,
              "wanted": {"10.91.0.1": "neta"}, "listening": ["10.91.0.1"], "failed": {},
              "restarts": 0, "retry_in": None, "last_exit": None,
              "log": "/var/lib/netbay/netbayd.log", "healthy": True}
    report.update(kw)
    return report


def dns_text(**kw: Any) -> str:
    return render([check_dns(clean(dns=dns_health(**kw))).as_json()])


def statuses(facts: DoctorFacts) -> dict[str, str]:
    out: dict[str, str] = {}
    for finding in check(facts):
        if out.get(finding.check) not in ("fail", "warn"):
            out[finding.check] = finding.status
    return out


def test_a_clean_host_is_clean_and_dns_without_a_server_is_skipped_with_a_note() -> None:
    findings = check(clean())
    assert {f.check: f.status for f in findings} == {
        "daemon": "ok", "ip_forward": "ok", "br_netfilter": "ok", "rp_filter": "ok",
        "forward policy": "ok", "mtu": "ok", "subnet overlap": "ok", "record vs kernel": "ok",
        "dns": "skip"}
    text = render([f.as_json() for f in findings])
    assert text.endswith("no problems found")
    assert "[skip] dns: this netbayd runs no DNS server: DNS not checked" in text


def test_each_fault_is_flagged_with_its_fix() -> None:
    faults = {
        "ip_forward": clean(ip_forward="0"),
        "br_netfilter": clean(bridge_nf={"bridge-nf-call-iptables": None}),
        "forward policy": clean(forward_chains=[ForwardChain("inet", "fw", "fwd", "drop", 0)]),
        "mtu": clean(uplink_mtu=("ext0", 1400)),
        "subnet overlap": clean(routes=[(IPv4Network("10.0.0.0/8"), "ext0")]),
        "record vs kernel": clean(topology={"networks": [network()], "interfaces": [],
                                            "problems": ["interface nbvx: named like ..."]}),
        "daemon": clean(daemon={"pid": 1, "version": "0.1.0", "firewall": False}),
        "dns": clean(dns=dns_health(phase="starting", pid=None, alive=False, answered=False,
                                    listening=[], healthy=False)),
    }
    for name, facts in faults.items():
        got = statuses(facts)
        assert got[name] in ("fail", "warn"), (name, got)
        assert all(v in ("ok", "skip") for k, v in got.items() if k != name), (name, got)
        finding = next(f for f in check(facts) if f.check == name)
        assert finding.fix, name
    text = render([f.as_json() for f in check(faults["forward policy"])])
    assert "[FAIL] forward policy: table inet fw chain fwd has policy drop" in text
    assert "fix: nft insert rule inet fw fwd iifname { br-a } accept" in text
    orphan = next(f for f in check(faults["record vs kernel"]) if f.check == "record vs kernel")
    assert "ip link del nbvx" in orphan.fix


def test_forward_chains_from_the_json_ruleset() -> None:
    ruleset = [
        {"chain": {"family": "inet", "table": "netbay", "name": "forward", "hook": "forward",
                   "policy": "accept"}},
        {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "hook": "forward",
                   "policy": "drop"}},
        {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "hook": "input",
                   "policy": "drop"}},
        {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD",
                  "expr": [{"match": {"left": {"meta": {"key": "iifname"}}, "right": "br-a"}}]}},
    ]
    assert forward_chains(ruleset, ["br-a", "br-b"]) == [
        ForwardChain("ip", "filter", "FORWARD", "drop", 1, ("br-a",))]
    facts = clean(forward_chains=forward_chains(ruleset, ["br-a"]))
    assert statuses(facts)["forward policy"] == "warn"


def test_iptables_legacy_forward_chain() -> None:
    from netbay.observe.health import legacy_forward

    chain = legacy_forward("-P FORWARD DROP\n-A FORWARD -i br-a -j ACCEPT\n", ["br-a", "br-b"])
    assert chain == ForwardChain("iptables-legacy", "filter", "FORWARD", "drop", 1, ("br-a",))
    assert legacy_forward("", ["br-a"]) is None
    dropping = clean(forward_chains=[ForwardChain("iptables-legacy", "filter", "FORWARD", "drop",
                                                  0)])
    finding = next(f for f in check(dropping) if f.check == "forward policy")
    assert finding.status == "fail"
    assert finding.fix.startswith("iptables-legacy -I FORWARD -i br-a -j ACCEPT")


def test_a_vxlan_port_without_room_for_its_header() -> None:
    vxlan = {"name": "vx42", "kind": "vxlan", "mtu": 1500, "details": {"vni": "42",
                                                                         "dev": "ext0"},
             "problems": []}
    topo = {"networks": [network(ports=[vxlan])], "problems": [],
            "interfaces": [{"name": "ext0", "kind": "veth", "mtu": 1500, "problems": []}]}
    finding = next(f for f in check(clean(topology=topo)) if f.check == "mtu")
    assert (finding.status, finding.fix) == ("warn", "ip link set vx42 mtu 1450")
    vxlan["mtu"] = 1450
    assert statuses(clean(topology=topo))["mtu"] == "ok"


def test_dns_running_and_answering() -> None:
    assert dns_text() == ("[ok  ] dns: DNS server running (pid 4242), answering on 1 address "
                          "(10.91.0.1)\nno problems found")
    two = dns_text(wanted={"10.91.0.1": "neta", "10.92.0.1": "netb"},
                   listening=["10.91.0.1", "10.92.0.1"])
    assert "answering on 2 addresses (10.91.0.1, 10.92.0.1)" in two
    idle = check_dns(clean(dns=dns_health(phase="idle", pid=None, alive=False, answered=False,
                                          wanted={}, listening=[])))
    assert (idle.status, idle.message) == (
        "ok", "DNS server not started: no network has containers to answer yet")


def test_dns_server_killed_and_not_yet_back() -> None:
    text = dns_text(phase="backoff", pid=None, alive=False, answered=False, listening=[],
                    healthy=False, restarts=3, retry_in=1.6,
                    last_exit={"pid": 4242, "how": "was killed by SIGKILL", "ago": 0.21})
    assert text.splitlines() == [
        "[FAIL] dns: DNS server not running: pid 4242 was killed by SIGKILL 0.2 s ago; netbayd "
        "starts it again in 1.6 s (restart 3; the wait doubles while it keeps dying young); "
        "meanwhile names do not resolve on neta",
        "       fix: run netbay doctor again in a few seconds; if it keeps dying, see "
        "/var/lib/netbay/netbayd.log",
        "1 problem(s) found"]


def test_dns_server_restarted_recently_is_a_warning() -> None:
    text = dns_text(pid=4343, restarts=1,
                    last_exit={"pid": 4242, "how": "was killed by SIGKILL", "ago": 12.0})
    assert text.splitlines()[:2] == [
        "[WARN] dns: DNS server running (pid 4343), answering on 1 address (10.91.0.1); "
        "restarted after pid 4242 was killed by SIGKILL 12.0 s ago",
        "       fix: why it died: /var/lib/netbay/netbayd.log (and dmesg, if the OOM killer did "
        "it)"]
    long_ago = dns_text(last_exit={"pid": 4242, "how": "exited with status 1", "ago": 3600.0})
    assert long_ago.startswith("[ok  ] dns: DNS server running (pid 4242)")


def test_dns_server_missing_an_address_or_not_answering() -> None:
    missing = check_dns(clean(dns=dns_health(
        wanted={"10.91.0.1": "neta", "10.92.0.1": "netb"}, listening=["10.91.0.1"],
        failed={"10.92.0.1": "udp 10.92.0.1:53: Address already in use"}, healthy=False)))
    assert (missing.status, missing.message) == (
        "fail", "DNS server (pid 4242) does not answer on 10.92.0.1 (network netb): udp "
        "10.92.0.1:53: Address already in use: containers there cannot resolve names")
    assert "ss -lunp 'sport = :53'" in missing.fix
    hung = check_dns(clean(dns=dns_health(answered=False, listening=[], healthy=False)))
    assert (hung.status, hung.fix) == (
        "fail", "kill -KILL 4242 (netbayd starts a new one); if it hangs again, see "
        "/var/lib/netbay/netbayd.log")
    assert "runs but did not answer netbayd within 1 s" in hung.message
