"""Reading CNI invocations into netbay's terms, and CNI results from records. Pure."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netbay.cni import asks, results
from netbay.cni import config as cfg
from netbay.cni.plugin import CniError
from netbay.model import Endpoint, Network, SubnetConfig
from netbay.plan.ports import Mapping

SPEC_CODES = {1, 2, 3, 4, 5, 6, 7, 11, 50, 51}


def inv(config: dict[str, Any], command: str = "ADD", args: str = "",
        kind: str = "netbay") -> cfg.Invocation:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/c1",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}
    if args:
        env["CNI_ARGS"] = args
    full = {"cniVersion": "1.0.0", "name": "net1", "type": kind, **config}
    return cfg.invocation({"kind": kind, "env": env, "config": full}, command)


def code_of(config: dict[str, Any], reader: Any = cfg.interface_network, **kw: Any) -> int:
    with pytest.raises(CniError) as caught:
        reader(inv(config, **kw))
    return caught.value.code


def test_existing_and_self_contained_networks() -> None:
    assert cfg.interface_network(inv({"network": "asgard"})) == cfg.NetworkChoice("asgard")
    choice = cfg.interface_network(inv({
        "bridge": "cni0", "subnet": "10.1.0.0/24", "gateway": "10.1.0.254", "ipMasq": False,
        "mtu": 1400,
    }))
    spec = choice.spec
    assert choice.name == "net1" and spec is not None
    assert spec.driver == "bridge" and not spec.internal
    assert spec.subnets == (SubnetConfig(IPv4Network("10.1.0.0/24"), IPv4Address("10.1.0.254")),)
    assert spec.options == {
        "com.docker.network.bridge.name": "cni0",
        "com.docker.network.bridge.enable_ip_masquerade": "false",
        "com.docker.network.driver.mtu": "1400"}
    assert cfg.interface_network(inv({"isGateway": False})).spec.internal  # type: ignore[union-attr]
    ranged = cfg.interface_network(inv({"ipam": {"type": "netbay-ipam", "ranges": [[
        {"subnet": "10.2.0.0/16", "rangeStart": "10.2.1.0", "rangeEnd": "10.2.1.255"},
        {"subnet": "10.3.0.0/24"}]]}})).spec
    assert ranged is not None and [s.ip_range for s in ranged.subnets] == [
        IPv4Network("10.2.1.0/24"), None]
    mac = cfg.interface_network(inv({"driver": "macvlan", "master": "eth1", "mode": "vepa",
                                     "subnet": "192.0.2.0/24"})).spec
    assert mac is not None and mac.options == {"parent": "eth1", "macvlan_mode": "vepa"}
    ipam = cfg.ipam_network(inv({"ipam": {"type": "netbay-ipam", "subnet": "10.4.0.0/24"}},
                                kind="netbay-ipam"))
    assert ipam.spec is not None and ipam.spec.driver == "external"
    assert cfg.ipam_network(inv({"ipam": {"type": "netbay-ipam", "network": "leases"}},
                                kind="netbay-ipam")) == cfg.NetworkChoice("leases")


@pytest.mark.parametrize(
    ("config", "code"),
    [
        ({"network": "asgard", "subnet": "10.1.0.0/24"}, 7),
        ({"ranges": [[{"subnet": "fd00::/64"}], [{"subnet": "fd01::/64"}]]}, 2),
        ({"subnet": "banana"}, 7),
        ({"gateway": "10.1.0.1"}, 7),
        ({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]}, 2),
        ({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.3",
                        "rangeEnd": "10.1.0.9"}]]}, 2),
        ({"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.1.3"}]]}, 7),
        ({"ranges": "10.1.0.0/24"}, 7),
        ({"ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}}, 2),
        ({"ipam": "x"}, 7),
        ({"subnet": "10.1.0.0/24", "ipam": {"subnet": "10.2.0.0/24"}}, 7),
        ({"routes": [{"dst": "10.9.0.0/16"}]}, 2),
        ({"driver": "warp"}, 2),
        ({"vlan": 10}, 2),
        ({"ipMasq": "yes"}, 7),
        ({"mtu": 20}, 7),
        ({"driver": "macvlan", "mtu": 1400}, 2),
    ],
)
def test_configuration_refused(config: dict[str, Any], code: int) -> None:
    assert code_of(config) == code


def test_requested_ip_mac_ports_aliases_dns() -> None:
    want = asks.requested(inv({"runtimeConfig": {
        "ips": ["10.1.0.9/24"], "mac": "02:AA:00:00:00:01",
        "portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "TCP"},
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 53, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
            {"hostPort": 9, "containerPort": 9, "hostIP": "::"},
            {"hostPort": 10, "containerPort": 10, "hostIP": "0.0.0.0"},
        ],
        "aliases": {"net1": ["db"], "other": ["x"]},
        "dns": {"servers": ["10.0.0.53"], "searches": ["a.example"], "options": ["ndots:1"]},
    }, "dns": {"nameservers": ["192.0.2.53"]}}, args="IP=10.1.0.7;K8S_POD_NAME=web;"
        "IgnoreUnknown=1"))
    assert (want.ip, want.prefixlen, want.mac) == (IPv4Address("10.1.0.9"), 24,
                                                   "02:aa:00:00:00:01")
    assert want.ports == (Mapping("tcp", None, 8080, 80),
                          Mapping("udp", IPv4Address("127.0.0.1"), 53, 53),
                          Mapping("tcp", IPv6Address("::"), 9, 9),
                          Mapping("tcp", IPv4Address("0.0.0.0"), 10, 10))
    assert want.aliases == ("db",) and want.hostname == "web"
    assert want.runtime_dns.nameservers == ("10.0.0.53",)
    assert want.static_dns.nameservers == ("192.0.2.53",)
    # precedence: runtimeConfig.ips, then args.cni.ips, then CNI_ARGS IP
    assert asks.requested(inv({"args": {"cni": {"ips": ["10.1.0.4"]}}},
                             args="IP=10.1.0.7")).ip == IPv4Address("10.1.0.4")
    assert asks.requested(inv({}, args="IP=10.1.0.7")).ip == IPv4Address("10.1.0.7")
    assert asks.requested(inv({}, args="MAC=02:00:00:00:00:09")).mac == "02:00:00:00:00:09"


@pytest.mark.parametrize(
    ("runtime", "code"),
    [
        ({"ips": ["10.1.0.9", "10.1.0.10"]}, 7),
        ({"ips": ["fd00::9", "fd00::10"]}, 7),  # one address of each family
        ({"ips": ["x"]}, 7),
        ({"ips": "10.1.0.9"}, 7),
        ({"mac": "zz:00:00:00:00:00"}, 7),
        ({"mac": "03:00:00:00:00:00"}, 7),
        ({"portMappings": [{"hostPort": 70000, "containerPort": 80}]}, 7),
        ({"portMappings": [{"hostPort": 80}]}, 7),
        ({"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]}, 7),
        ({"portMappings": "80:80"}, 7),
        ({"dns": {"servers": ["nope"]}}, 7),
        ({"aliases": [1]}, 7),
    ],
)
def test_requested_refused(runtime: dict[str, Any], code: int) -> None:
    assert code_of({"runtimeConfig": runtime}, asks.requested) == code


def test_valid_attachments() -> None:
    gc = inv({"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}],
              "cniVersion": "1.1.0"}, command="GC")
    assert asks.valid_attachments(gc) == [("a", "eth0")]
    assert code_of({"cniVersion": "1.1.0"}, asks.valid_attachments, command="GC") == 7
    assert code_of({"cniVersion": "1.1.0", "cni.dev/valid-attachments": [{"ifname": 1}]},
                   asks.valid_attachments, command="GC") == 7


NETWORK = Network(
    id="n" * 64, name="asgard", driver="bridge", created="", device="br-test", mtu=1400,
    subnets=(SubnetConfig(IPv4Network("10.1.0.0/24"), IPv4Address("10.1.0.1")),),
)
ENDPOINT = Endpoint(
    id="e" * 64, network_id="n" * 64, container_id="c" * 64, ifname="eth0",
    host_ifname="nbveeeeeeeeeeee", mac="02:42:0a:01:00:02",
    address=IPv4Interface("10.1.0.2/24"), gateway=IPv4Address("10.1.0.1"),
)


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_interface_result_per_version(version: str) -> None:
    out = results.interface_result(version, NETWORK, ENDPOINT, "/run/netns/c1",
                                   asks.Dns(("10.1.0.1",), search=("x.example",)))
    container = {"name": "eth0", "mac": "02:42:0a:01:00:02", "sandbox": "/run/netns/c1"}
    if version == "1.1.0":
        container["mtu"] = 1400  # type: ignore[assignment]
    ip: dict[str, Any] = {"address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 2}
    if version.startswith("0."):
        ip = {"version": "4", **ip}
    assert out == {
        "cniVersion": version,
        "interfaces": [{"name": "br-test"}, {"name": "nbveeeeeeeeeeee"}, container],
        "ips": [ip],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}],
        "dns": {"nameservers": ["10.1.0.1"], "search": ["x.example"]},
    }
    json.dumps(out)


def test_ipam_result_and_chaining() -> None:
    external = Network(id="x" * 64, name="leases", driver="external", created="",
                       subnets=NETWORK.subnets)
    lease = Endpoint(id="l" * 64, network_id="x" * 64, container_id="c" * 64, ifname="eth0",
                     host_ifname=None, mac=None, address=IPv4Interface("10.1.0.5/24"),
                     gateway=None)
    out = results.ipam_result("0.4.0", external, lease,
                              [(IPv4Network("0.0.0.0/0"), None)], asks.Dns())
    assert out == {"cniVersion": "0.4.0",
                   "ips": [{"version": "4", "address": "10.1.0.5/24", "gateway": "10.1.0.1"}],
                   "routes": [{"dst": "0.0.0.0/0"}]}
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "x"}],
            "ips": [{"address": "192.0.2.2/24", "interface": 0}]}
    mine = results.interface_result("1.0.0", NETWORK, ENDPOINT, "/n", asks.Dns())
    merged = results.chained(prev, mine)
    assert [i["name"] for i in merged["interfaces"]] == ["x", "br-test", "nbveeeeeeeeeeee",
                                                         "eth0"]
    assert [ip["interface"] for ip in merged["ips"]] == [0, 3]


leaves = st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=20) | \
    st.sampled_from(["10.1.0.0/24", "10.1.0.1", "fd00::/64", "bridge", "macvlan", "0.0.0.0/0",
                     "02:00:00:00:00:01", "tcp"])
values = st.recursive(leaves, lambda c: st.lists(c, max_size=3)
                      | st.dictionaries(st.sampled_from(
                          ["subnet", "gateway", "rangeStart", "rangeEnd", "dst", "gw", "hostPort",
                           "containerPort", "protocol", "hostIP", "ips", "mac", "portMappings",
                           "servers", "type", "network", "ranges", "routes"]) | st.text(max_size=5),
                          c, max_size=4), max_leaves=10)
keys = st.sampled_from(["network", "subnet", "ranges", "gateway", "bridge", "ipMasq", "isGateway",
                        "mtu", "driver", "master", "mode", "ipam", "runtimeConfig", "dns", "args",
                        "routes", "prevResult", "vlan", "internal"])


@settings(max_examples=400)
@given(config=st.dictionaries(keys, values, max_size=6),
       args=st.sampled_from(["", "IP=10.1.0.5", "IP=x", "MAC=02:00:00:00:00:01",
                             "IgnoreUnknown=1;Z=2"]))
def test_any_configuration_reads_or_fails_with_a_spec_code(
    config: dict[str, Any], args: str
) -> None:
    for reader in (cfg.interface_network, cfg.ipam_network, asks.requested):
        try:
            reader(inv(config, args=args))
        except CniError as exc:
            assert exc.code in SPEC_CODES, exc.msg
            assert isinstance(exc.msg, str) and exc.msg
