"""IPv6 at the CLI (issue 17): `network create --ipv6/--ipv4=false/--subnet` of both families,
`run --ip6`, `network connect --ip6`, `network ls` and `ps`, and `daemon start --ipv6`,
each through the daemon's Api in this process on the fakes; bad input refused with one line
naming the field and the value, and nothing recorded."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netbay.cli.main import bridge_options, main
from netbay.cli.network import ipam_config
from netbay.client import ApiError
from netbay.daemon.api import Api
from netbay.daemon.reaper import Reaper
from netbay.errors import ConfigError, NetbayError
from netbay.testing import FakeHost, fake_host

V6 = "fd12:3456::/64"


class ApiClient:
    """The CLI's Client, answered by the daemon's Api in this process (the start of a
    container is only noted: the fakes run no process)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.sent: list[tuple[str, str, Any]] = []

    def request(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        pairs = [f"{k}={v}" for k, v in query.items() if v is not None]
        target = path + ("?" + "&".join(pairs) if pairs else "")
        self.sent.append((method, target, body))
        if target.endswith("/start"):
            return None
        try:
            status, payload = self.api.dispatch(method, target, body)
        except NetbayError as exc:  # what the daemon's server answers for it
            raise ApiError(getattr(exc, "http_status", 500), str(exc)) from None
        assert status < 300, payload
        return payload

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, **query)

    def post(self, path: str, body: Any = None, **query: Any) -> Any:
        return self.request("POST", path, body if body is not None else {}, **query)

    def delete(self, path: str, **query: Any) -> Any:
        return self.request("DELETE", path, **query)

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing held."""


@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    return fake_host(tmp_path)


@pytest.fixture
def client(fake: FakeHost) -> Iterator[ApiClient]:
    reaper = Reaper(lambda *_: None)
    yield ApiClient(Api(fake.host, reaper))
    reaper.close()


@pytest.fixture
def netbay(client: ApiClient, monkeypatch: pytest.MonkeyPatch,
           capsys: pytest.CaptureFixture[str]) -> Any:
    """`netbay ARGS...` against the fake host: (exit code, stdout lines, stderr)."""
    monkeypatch.setattr("netbay.cli.main.Client", lambda **_: client)

    def run(*args: str) -> tuple[int, list[str], str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out.splitlines(), out.err

    return run


def inspect(netbay: Any, *refs: str) -> Any:
    code, out, err = netbay("inspect", *refs)
    assert code == 0, err
    return json.loads("\n".join(out))


def test_dual_stack_create_pairs_each_field_with_its_family(netbay: Any) -> None:
    code, _, err = netbay(
        "network", "create", "--ipv6", "--subnet", "10.7.0.0/24", "--subnet", V6,
        "--gateway", "fd12:3456::fe", "--gateway", "10.7.0.254",
        "--ip-range", "fd12:3456::100/120", "--aux-address", "r6=fd12:3456::5",
        "--aux-address", "r4=10.7.0.5", "net6")
    assert code == 0, err
    net = inspect(netbay, "net6")[0]
    assert (net["EnableIPv4"], net["EnableIPv6"]) == (True, True)
    assert net["IPAM"]["Config"] == [
        {"Subnet": "10.7.0.0/24", "Gateway": "10.7.0.254",
         "AuxiliaryAddresses": {"r4": "10.7.0.5"}},
        {"Subnet": V6, "IPRange": "fd12:3456::100/120", "Gateway": "fd12:3456::fe",
         "AuxiliaryAddresses": {"r6": "fd12:3456::5"}},
    ]


def test_ipv6_alone_gets_a_ula_64_and_the_ipv4_default(netbay: Any) -> None:
    assert netbay("network", "create", "--ipv6", "net6")[0] == 0  # the name is not --ipv6's
    config = inspect(netbay, "net6")[0]["IPAM"]["Config"]
    assert [c["Subnet"].endswith("/64") and c["Subnet"].startswith("fd") for c in config] \
        == [False, True]


@pytest.mark.parametrize("flag", ["--ipv4=false", "--ipv4=0", "--ipv4=False"])
def test_ipv6_only_network(netbay: Any, flag: str) -> None:
    assert netbay("network", "create", "--ipv6", flag, "--subnet", V6, "net6")[0] == 0
    net = inspect(netbay, "net6")[0]
    assert (net["EnableIPv4"], net["EnableIPv6"]) == (False, True)
    assert net["IPAM"]["Config"] == [{"Subnet": V6, "Gateway": "fd12:3456::1"}]


def test_ipv6_false_and_no_flags_stay_ipv4(netbay: Any) -> None:
    for name, flags in (("a", ["--ipv6=false"]), ("b", [])):
        assert netbay("network", "create", *flags, "--subnet", f"10.8.{len(flags)}.0/24",
                      name)[0] == 0
        assert inspect(netbay, name)[0]["EnableIPv6"] is False


def test_run_and_connect_with_ip6_show_both_families(netbay: Any, client: ApiClient) -> None:
    netbay("network", "create", "--ipv6", "--subnet", "10.7.0.0/24", "--subnet", V6, "net6")
    netbay("network", "create", "--ipv6", "--ipv4=false", "--subnet", "fd12:9::/64", "only6")
    code, _, err = netbay("run", "-d", "--name", "c1", "--network", "net6", "--ip6",
                          "fd12:3456::10", "--", "sleep", "9")
    assert code == 0, err
    create = next(b for m, t, b in client.sent if t == "/containers/create")
    assert create["Networks"] == [{"Network": "net6", "IPv4Address": None,
                                   "IPv6Address": "fd12:3456::10", "Aliases": []}]
    code, _, err = netbay("network", "connect", "--ip6", "fd12:9::7", "only6", "c1")
    assert code == 0, err
    networks = inspect(netbay, "c1")[0]["NetworkSettings"]["Networks"]
    net6, only6 = networks["net6"], networks["only6"]
    assert (net6["IPAddress"], net6["GlobalIPv6Address"], net6["GlobalIPv6PrefixLen"],
            net6["Gateway"], net6["IPv6Gateway"]) == (
        "10.7.0.2", "fd12:3456::10", 64, "10.7.0.1", "fd12:3456::1")
    assert net6["IPAMConfig"] == {"IPv6Address": "fd12:3456::10"}
    assert (only6["IPAddress"], only6["IPPrefixLen"], only6["GlobalIPv6Address"],
            only6["IPAMConfig"]) == ("", 0, "fd12:9::7", {"IPv6Address": "fd12:9::7"})
    members = inspect(netbay, "only6")[0]["Containers"]
    assert [(m["IPv4Address"], m["IPv6Address"]) for m in members.values()] == [
        ("", "fd12:9::7/64")]
    # disconnect forgets what was asked there
    assert netbay("network", "disconnect", "only6", "c1")[0] == 0
    assert netbay("network", "connect", "only6", "c1")[0] == 0
    assert inspect(netbay, "c1")[0]["NetworkSettings"]["Networks"]["only6"]["IPAMConfig"] \
        is None


def test_ps_json_carries_both_families(netbay: Any, fake: FakeHost) -> None:
    netbay("network", "create", "--ipv6", "--subnet", "10.7.0.0/24", "--subnet", V6, "net6")
    netbay("run", "-d", "--name", "c1", "--network", "net6", "--", "sleep", "9")
    fake.host.mark_started("c1", 1)  # as the reaper would see it: ps lists running ones
    code, out, _ = netbay("ps", "--format", "json")
    assert code == 0
    assert json.loads(out[0])["IPAddresses"] == "10.7.0.2,fd12:3456::2"
    assert netbay("ps", "--format", "{{.IPAddresses}}")[1] == ["10.7.0.2,fd12:3456::2"]


def test_ls_shows_the_ipv6_column_only_when_a_network_has_ipv6(netbay: Any) -> None:
    _, table, _ = netbay("network", "ls")
    assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    netbay("network", "create", "--ipv6", "--subnet", V6, "net6")
    _, table, _ = netbay("network", "ls")
    assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE", "IPV4", "IPV6"]
    rows = {line.split()[1]: line.split()[-2:] for line in table[1:]}
    assert rows["net6"] == ["true", "true"] and rows["bridge"] == ["true", "false"]
    _, out, _ = netbay("network", "ls", "--format", "{{.Name}} {{.IPv4}} {{.IPv6}}")
    assert "net6 true true" in out and "bridge true false" in out
    _, out, _ = netbay("network", "ls", "--format", "json")
    assert {(r["Name"], r["EnableIPv6"], r["IPv6"]) for r in map(json.loads, out)} >= {
        ("net6", True, "true"), ("bridge", False, "false")}


BAD = [
    (("network", "create", "--subnet", "fd12::zz/64", "x"),
     "invalid subnet 'fd12::zz/64': not an IPv4 or IPv6 subnet in CIDR form"),
    (("network", "create", "--subnet", "fd12::1/64", "x"),
     "invalid subnet 'fd12::1/64': host bits set (the subnet is fd12::/64)"),
    (("network", "create", "--ipv6", "--subnet", V6, "--gateway", "fd99::1", "x"),
     "invalid gateway 'fd99::1': not inside any --subnet"),
    (("network", "create", "--subnet", "10.7.0.0/24", "--gateway", "fd12:3456::1", "x"),
     "invalid gateway 'fd12:3456::1': not inside any --subnet"),
    (("network", "create", "--subnet", V6, "--gateway", "fd12:3456::1", "--gateway",
      "fd12:3456::2", "x"),
     "invalid gateway 'fd12:3456::2': subnet fd12:3456::/64 has a gateway already"),
    (("network", "create", "--subnet", V6, "--ip-range", "10.7.0.0/25", "x"),
     "invalid ip-range '10.7.0.0/25': not inside any --subnet"),
    (("network", "create", "--subnet", V6, "--aux-address", "r=fd12:3456:1::1", "x"),
     "invalid aux-address 'r=fd12:3456:1::1': not inside any --subnet"),
    (("network", "create", "--ipv4=false", "--subnet", "10.7.0.0/24", "x"),
     "invalid subnet '10.7.0.0/24': an IPv4 subnet, but IPv4 is off (--ipv4=false)"),
    (("network", "create", "--ipv4=false", "x"),
     "invalid ipv4 False: a network needs IPv4 or IPv6 (add --ipv6)"),
    (("network", "create", "--subnet", "fd12::/127", "x"),
     "invalid subnet 'fd12::/127': too small for containers (at most /126)"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_network_input_refused_with_one_line(
    netbay: Any, fake: FakeHost, args: tuple[str, ...], message: str
) -> None:
    before = [n.name for n in fake.host.networks()]
    code, _, err = netbay(*args)
    assert code != 0
    assert err.splitlines() == [f"Error: {message}"]
    assert [n.name for n in fake.host.networks()] == before


@pytest.mark.parametrize(("args", "message"), [
    (("run", "-d", "--network", "net6", "--ip6", "fd99::5", "--", "true"),
     "invalid ip6 'fd99::5': not inside the network's subnets (fd12:3456::/64)"),
    (("run", "-d", "--network", "v4", "--ip6", "fd12:3456::5", "--", "true"),
     "invalid ip6 'fd12:3456::5': network v4 has no IPv6 subnet"),
    (("run", "-d", "--network", "net6", "--ip6", "10.7.0.5", "--", "true"),
     "invalid ip6 '10.7.0.5': not an IPv6 address"),
    (("run", "-d", "--network", "net6", "--ip", "fd12:3456::5", "--", "true"),
     "invalid ip 'fd12:3456::5': not an IPv4 address"),
    (("run", "-d", "--network", "net6", "--ip6", "fd12:3456::1", "--", "true"),
     "invalid ip6 'fd12:3456::1': reserved in subnet fd12:3456::/64"),
    (("network", "connect", "--ip6", "fd12:3456::zz", "net6", "c0"),
     "invalid ip6 'fd12:3456::zz': not an IPv6 address"),
])
def test_bad_address_refused_with_one_line(
    netbay: Any, fake: FakeHost, args: tuple[str, ...], message: str
) -> None:
    netbay("network", "create", "--ipv6", "--subnet", "10.7.0.0/24", "--subnet", V6, "net6")
    netbay("network", "create", "--subnet", "10.9.0.0/24", "v4")
    netbay("run", "-d", "--name", "c0", "--network", "v4", "--", "sleep", "9")
    before = (fake.host.containers(), fake.host.endpoints())
    code, _, err = netbay(*args)
    assert code != 0
    assert err.splitlines() == [f"Error: {message}"]
    assert (fake.host.containers(), fake.host.endpoints()) == before


def _daemon_args(ipv6: bool, fixed: str | None) -> argparse.Namespace:
    return argparse.Namespace(ipv6=ipv6, fixed_cidr_v6=fixed)


def test_daemon_start_options() -> None:
    assert bridge_options(_daemon_args(False, None)) == []
    assert bridge_options(_daemon_args(True, None)) == ["--ipv6"]
    assert bridge_options(_daemon_args(True, "fd00:bb::/64")) == [
        "--ipv6", "--fixed-cidr-v6", "fd00:bb::/64"]
    for args, message in (
        (_daemon_args(False, "fd00:bb::/64"), "invalid fixed-cidr-v6 'fd00:bb::/64': needs "
         "--ipv6 (the default bridge is IPv4 only without it)"),
        (_daemon_args(True, "10.0.0.0/24"), "invalid fixed-cidr-v6 '10.0.0.0/24': not an IPv6 "
         "subnet in CIDR form"),
        (_daemon_args(True, "fd00:bb::/127"), "invalid subnet 'fd00:bb::/127': too small for "
         "containers (at most /126)"),
    ):
        with pytest.raises(ConfigError) as err:
            bridge_options(args)
        assert str(err.value) == message


def test_ipam_config_pairs_without_a_daemon() -> None:
    args = argparse.Namespace(subnet=[V6, "10.1.0.0/24"], gateway=["10.1.0.9", "fd12:3456::9"],
                              ip_range=[], aux_address=[])
    assert ipam_config(args) == [{"Subnet": V6, "Gateway": "fd12:3456::9"},
                                 {"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.9"}]
