"""The firewall's IPv6 half (issue 17), as planned: the IPv6 twins of the sets and maps for
a dual-stack network, endpoint and published port, gateway_mode_ipv6, `-p` with IPv6 host
addresses, the flows a change ends; the IPv4 elements exactly as before; nft itself
accepting the ruleset (in a throwaway network namespace)."""

from __future__ import annotations

import os
import shutil
import subprocess
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Interface, IPv6Network, ip_address
from pathlib import Path

import pytest

from netbay import AttachRequest, ContainerSpec, NetworkSpec
from netbay.drivers.bridge import BridgeDriver
from netbay.engine.firewall import endpoint_rules, network_rules
from netbay.errors import ConfigError, ConflictError
from netbay.model import Endpoint, Network, SubnetConfig
from netbay.plan import firewall as fw
from netbay.plan.naming import link_local
from netbay.plan.ports import Mapping, PublishSpec, allocate, clashes, parse_publish
from netbay.testing import FakeHost, fake_host

MAC = "02:42:0a:00:00:02"
DUAL = fw.NetworkRules(
    "br-a", (IPv4Network("10.0.0.0/24"),),
    subnets6=(IPv6Network("fd00:1::/64"),),
)
V4 = fw.NetworkRules("br-a", (IPv4Network("10.0.0.0/24"),))
WEB = fw.EndpointRules("veth1", MAC, IPv4Address("10.0.0.2"), address6=IPv6Address("fd00:1::2"))
PORT = fw.PortRules("tcp", None, 8080, IPv4Address("10.0.0.2"), 80, IPv6Address("fd00:1::2"))


def _v4_only(elements: fw.Elements) -> fw.Elements:
    twins = {"subnets6", "masq_nets6", "routed_in6", "pub_any6", "pub_ip6",
             "endpoints6", "nd_targets6"}
    return {k: v for k, v in elements.items() if k[1] not in twins}


# --- networks ------------------------------------------------------------------------------
def test_a_dual_stack_network_has_the_ipv6_twins_and_the_ipv4_elements_of_before() -> None:
    got = fw.network_elements(DUAL)
    assert got[(fw.INET, "subnets6")] == ["fd00:1::/64"]
    assert got[(fw.INET, "masq_nets6")] == ["fd00:1::/64"]  # NAT66 by default, as Docker 27
    assert (fw.INET, "routed_in6") not in got
    assert _v4_only(got) == fw.network_elements(V4)


def test_an_ipv6_only_network_names_its_bridge_and_no_ipv4_address() -> None:
    rules = fw.NetworkRules("br-6", (), subnets6=(IPv6Network("fd00:3::/64"),),
                            icc=False)
    got = {k: v for k, v in fw.network_elements(rules).items() if v}
    assert got == {
        (fw.INET, "bridges"): ['"br-6"'],
        (fw.INET, "subnets6"): ["fd00:3::/64"],
        (fw.INET, "masq_nets6"): ["fd00:3::/64"],
    }  # no same_bridge: ICC off holds for IPv6 too (the rule matches the bridge, not the family)


def test_routed_mode_has_no_nat66_and_lets_the_subnet_be_reached_from_outside() -> None:
    routed = fw.NetworkRules(**{**DUAL.__dict__, "routed6": True})
    got = fw.network_elements(routed)
    assert (fw.INET, "masq_nets6") not in got
    assert got[(fw.INET, "routed_in6")] == ['"br-a" . fd00:1::/64']
    assert got[(fw.INET, "masq_nets")] == ["10.0.0.0/24"]  # IPv4 still masqueraded


@pytest.mark.parametrize("change", [{"internal": True}, {"masquerade": False}])
def test_internal_or_unmasqueraded_networks_have_neither_nat66_nor_a_way_in(
    change: dict[str, bool]
) -> None:
    for routed in (False, True):
        got = fw.network_elements(fw.NetworkRules(**{**DUAL.__dict__, "routed6": routed,
                                                     **change}))
        assert got.get((fw.INET, "masq_nets6"), []) == []
        if change.get("internal"):
            assert got.get((fw.INET, "routed_in6"), []) == []


def test_gateway_mode_ipv6_takes_nat_or_routed_and_names_anything_else() -> None:
    assert fw.routed6({}) is False
    assert fw.routed6({fw.OPT_GATEWAY_MODE6: "nat"}) is False
    assert fw.routed6({fw.OPT_GATEWAY_MODE6: "routed"}) is True
    with pytest.raises(ConfigError) as err:
        BridgeDriver().validate(NetworkSpec("n", options={fw.OPT_GATEWAY_MODE6: "nat66"}), "a" * 64)
    assert str(err.value) == (
        "invalid opt com.docker.network.bridge.gateway_mode_ipv6 'nat66': expected nat or routed")


def test_network_rules_take_a_bridge_networks_ipv6_subnets_and_mode() -> None:
    network = Network(
        id="a" * 64, name="duo", driver="bridge", created="", device="br-a",
        subnets=(SubnetConfig(IPv4Network("10.0.0.0/24"), IPv4Address("10.0.0.1")),
                 SubnetConfig(IPv6Network("fd00:1::/64"), IPv6Address("fd00:1::1"))),
        options={fw.OPT_GATEWAY_MODE6: "routed"},
    )
    rules = network_rules(network)
    assert rules is not None
    assert (rules.subnets, rules.subnets6) == ((IPv4Network("10.0.0.0/24"),),
                                               (IPv6Network("fd00:1::/64"),))
    assert rules.routed6 is True
    endpoint = Endpoint("e" * 64, network.id, "c" * 64, "eth0", "veth1", MAC, None, None,
                        address6=IPv6Interface("fd00:1::2/64"))
    assert endpoint_rules(network, endpoint) == fw.EndpointRules(
        "veth1", MAC, None, True, IPv6Address("fd00:1::2"))


# --- endpoints -----------------------------------------------------------------------------
def test_an_endpoint_owns_its_global_and_its_eui64_link_local_address() -> None:
    got = fw.endpoint_elements(WEB)
    assert link_local(MAC) == IPv6Address("fe80::42:aff:fe00:2")
    assert got[(fw.BRIDGE, "endpoints")] == [f'"veth1" . {MAC} . 10.0.0.2']
    assert got[(fw.BRIDGE, "endpoints6")] == [
        f'"veth1" . {MAC} . fd00:1::2', f'"veth1" . {MAC} . fe80::42:aff:fe00:2']
    # the neighbour advertisements' targets it may name: the same two, as nft's raw payload
    assert got[(fw.BRIDGE, "nd_targets6")] == [
        f'"veth1" . {MAC} . 0xfd000001000000000000000000000002',
        f'"veth1" . {MAC} . 0xfe8000000000000000420afffe000002']


def test_an_ipv4_endpoint_has_no_ipv6_element_and_an_ipv6_one_no_ipv4_element() -> None:
    v4 = fw.EndpointRules("veth1", MAC, IPv4Address("10.0.0.2"))
    assert fw.endpoint_elements(v4) == _v4_only(fw.endpoint_elements(WEB))
    v6 = fw.EndpointRules("veth1", MAC, None, address6=IPv6Address("fd00:1::2"))
    assert set(fw.endpoint_elements(v6)) == {(fw.BRIDGE, "ports"), (fw.BRIDGE, "endpoints6"),
                                             (fw.BRIDGE, "nd_targets6")}


# --- published ports -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host_ip", "expected"),
    [
        (None, {(fw.INET, "pub_any"): ["tcp . 8080 : 10.0.0.2 . 80"],
                (fw.INET, "pub_any6"): ["tcp . 8080 : fd00:1::2 . 80"]}),
        (IPv4Address("127.0.0.1"), {(fw.INET, "pub_ip"): [
            "127.0.0.1 . tcp . 8080 : 10.0.0.2 . 80"]}),
        (IPv6Address("2001:db8::1"), {(fw.INET, "pub_ip6"): [
            "2001:db8::1 . tcp . 8080 : fd00:1::2 . 80"]}),
        (IPv6Address("::"), {(fw.INET, "pub_any6"): ["tcp . 8080 : fd00:1::2 . 80"]}),
    ],
)
def test_a_host_address_maps_only_to_the_containers_address_of_its_family(
    host_ip: IPv4Address | IPv6Address | None, expected: fw.Elements
) -> None:
    assert fw.port_elements(fw.PortRules(**{**PORT.__dict__, "host_ip": host_ip})) == expected


def test_a_container_without_ipv6_publishes_as_before() -> None:
    v4 = fw.PortRules("tcp", None, 8080, IPv4Address("10.0.0.2"), 80)
    assert fw.port_elements(v4) == {(fw.INET, "pub_any"): ["tcp . 8080 : 10.0.0.2 . 80"]}
    v6 = fw.PortRules("tcp", None, 8080, None, 80, IPv6Address("fd00:1::2"))
    assert fw.port_elements(v6) == {(fw.INET, "pub_any6"): ["tcp . 8080 : fd00:1::2 . 80"]}


def test_ipv6_loopback_is_never_a_map_key() -> None:
    loopback = fw.PortRules(**{**PORT.__dict__, "host_ip": IPv6Address("::1")})
    assert fw.port_elements(loopback) == {}


def test_what_goes_ends_the_flows_of_both_families_but_not_of_link_local_addresses() -> None:
    gone = fw.merge(fw.endpoint_elements(WEB), fw.port_elements(PORT))
    assert fw.departed_addresses({}, gone) == {IPv4Address("10.0.0.2"), IPv6Address("fd00:1::2")}
    only_port = fw.port_elements(fw.PortRules(**{**PORT.__dict__, "target": None,
                                                 "target6": IPv6Address("fd00:1::9")}))
    assert fw.released_addresses({}, only_port) == {IPv6Address("fd00:1::9")}
    assert fw.released_addresses(gone, gone) == set()


# --- `-p` ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[2001:db8::1]:80:80", PublishSpec("tcp", IPv6Address("2001:db8::1"), (80, 80), (80, 80))),
        ("[::]:8080:80/udp", PublishSpec("udp", IPv6Address("::"), (8080, 8080), (80, 80))),
        ("[fd00::1]::80", PublishSpec("tcp", IPv6Address("fd00::1"), None, (80, 80))),
        ("8080:80", PublishSpec("tcp", None, (8080, 8080), (80, 80))),
    ],
)
def test_parse_ipv6_host_addresses(text: str, expected: PublishSpec) -> None:
    assert parse_publish(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[::1]:8080:80", "invalid publish '[::1]:8080:80': ::1 cannot be forwarded to a "
         "container (IPv6 has no route_localnet: the kernel drops the replies); publish on "
         "127.0.0.1"),
        ("[fd00::zz]:80:80", "invalid publish '[fd00::zz]:80:80': 'fd00::zz' is not an IPv6 "
         "address"),
        ("[1.2.3.4]:80:80", "invalid publish '[1.2.3.4]:80:80': '1.2.3.4' is not an IPv6 address"),
        ("[::]80:80", "invalid publish '[::]80:80': expected [IPV6]:[HOSTPORT]:CONTAINERPORT"),
        ("[::]:1:2:3", "invalid publish '[::]:1:2:3': expected [HOSTIP:][HOSTPORT:]"
         "CONTAINERPORT[/PROTO]"),
    ],
)
def test_bad_ipv6_publish_specs_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_publish(text)
    assert str(err.value) == message


def test_host_ports_clash_within_a_family_and_across_the_any_address() -> None:
    def m(ip: str | None) -> Mapping:
        return Mapping("tcp", None if ip is None else ip_address(ip), 8080, 80)

    assert clashes(m("::"), m("2001:db8::1"))
    assert clashes(m(None), m("2001:db8::1"))
    assert not clashes(m("::"), m("127.0.0.1"))
    assert not clashes(m("2001:db8::1"), m("2001:db8::2"))
    with pytest.raises(ConflictError, match=r"invalid publish \[2001:db8::1\]:8080/tcp: host"):
        allocate([parse_publish("[2001:db8::1]:8080:80")], [m("::")], (40000, 40001))
    assert str(m("2001:db8::1")) == "80/tcp -> [2001:db8::1]:8080"


# --- the engine on the fakes ---------------------------------------------------------------
@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    fake = fake_host(tmp_path)
    fake.host.create_network(NetworkSpec(name="duo", subnets=(
        SubnetConfig(IPv4Network("10.7.0.0/24")), SubnetConfig(IPv6Network("fd00:7::/64")))))
    fake.host.create_network(NetworkSpec(name="four", subnets=(
        SubnetConfig(IPv4Network("10.8.0.0/24")),)))
    return fake


def _spec(name: str, network: str, *publish: str) -> ContainerSpec:
    return ContainerSpec(command=("sleep", "inf"), name=name, publish=publish,
                         networks=(AttachRequest(network),))


def test_a_dual_stack_container_publishes_on_both_families_and_goes_from_both(
    fake: FakeHost
) -> None:
    fake.host.create_container(_spec("web", "duo", "8080:80", "[2001:db8::1]:53:53/udp"))
    assert fake.nft.elements("inet", "pub_any") == {"tcp . 8080 : 10.7.0.2 . 80"}
    assert fake.nft.elements("inet", "pub_any6") == {"tcp . 8080 : fd00:7::2 . 80"}
    assert fake.nft.elements("inet", "pub_ip6") == {"2001:db8::1 . udp . 53 : fd00:7::2 . 53"}
    assert len(fake.nft.elements("bridge", "endpoints6")) == 2
    fake.host.remove_container("web")
    for family, name in (("inet", "pub_any6"), ("inet", "pub_ip6"), ("bridge", "endpoints6"),
                         ("bridge", "nd_targets6")):
        assert fake.nft.elements(family, name) == set()
    assert fake.flows.departed == [IPv4Address("10.7.0.2"), IPv6Address("fd00:7::2")]


def test_an_attach_first_settles_the_flows_its_addresses_left_waiting(fake: FakeHost) -> None:
    """The janitor batches what a detach leaves; the address's next owner must not get an
    old flow's replies, so an attach waits for the batch its addresses are in."""
    fake.host.create_container(_spec("web", "duo"))
    assert fake.flows.settled == [IPv4Address("10.7.0.2"), IPv6Address("fd00:7::2")]


def test_an_ipv6_host_address_for_a_container_without_ipv6_is_refused(fake: FakeHost) -> None:
    before = fake.nft.applied[:]
    with pytest.raises(ConfigError) as err:
        fake.host.create_container(_spec("web", "four", "8080:80", "[2001:db8::1]:80:80"))
    assert str(err.value) == ("invalid publish '[2001:db8::1]:80:80': an IPv6 host address, "
                              "and the container has no IPv6 address to publish")
    assert fake.nft.applied == before
    assert [c.name for c in fake.host.containers()] == []


# --- nft itself ------------------------------------------------------------------------------
def _nft_check(ruleset: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("unshare") is None:
        pytest.skip("needs root and nft (run inside a throwaway network namespace)")
    path = tmp_path / "ruleset.nft"
    path.write_text(ruleset)
    return subprocess.run(["unshare", "-n", "nft", "-c", "-f", str(path)],
                          capture_output=True, text=True, timeout=30)


def test_nft_accepts_a_dual_stack_ruleset_and_its_changes(tmp_path: Path) -> None:
    routed = fw.NetworkRules(
        "br-r", (IPv4Network("10.0.1.0/24"),), subnets6=(IPv6Network("fd00:2::/64"),),
        routed6=True)
    v6_only = fw.EndpointRules("veth2", "02:42:00:00:00:02", None, False, IPv6Address("fd00:2::2"))
    ports = [PORT, fw.PortRules("udp", IPv6Address("2001:db8::1"), 53, None, 53,
                                IPv6Address("fd00:2::2"))]
    ruleset = fw.rebuild([DUAL, routed], [WEB, v6_only], ports)
    result = _nft_check(ruleset, tmp_path)
    assert result.returncode == 0, result.stderr
    # a detach's delete (add-then-delete) of the same elements, after the rebuild
    detach = fw.change({}, fw.merge(fw.endpoint_elements(WEB), fw.port_elements(PORT)))
    result = _nft_check(ruleset + "\n" + detach, tmp_path)
    assert result.returncode == 0, result.stderr


def test_the_ruleset_does_not_grow_with_ipv6_containers_or_ports() -> None:
    def rule_lines(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("add element")]

    one = fw.rebuild([DUAL], [WEB], [PORT])
    many = fw.rebuild(
        [DUAL],
        [fw.EndpointRules(f"veth{i}", f"02:42:0a:00:01:{i:02x}", IPv4Address(f"10.0.1.{i}"),
                          address6=IPv6Address(f"fd00:1::1:{i}")) for i in range(1, 50)],
        [fw.PortRules("tcp", None, 8000 + i, IPv4Address("10.0.0.2"), 80,
                      IPv6Address("fd00:1::2")) for i in range(50)],
    )
    assert rule_lines(one) == rule_lines(many)
