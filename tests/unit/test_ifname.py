"""netbay's one interface-name rule (plan/naming.py), the stdlib-only copy in the CNI plugin
executable held equal to it, and every place a name comes in refusing what the rule refuses
before anything is made (issue 13: `br+x` made a bridge, then broke the firewall)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from netbay.cni import plugin
from netbay.cni.plugin import CniError
from netbay.drivers import get_driver
from netbay.errors import ConfigError
from netbay.model import NetworkSpec
from netbay.plan import firewall as fw
from netbay.plan.naming import IFNAME_RULE, valid_ifname
from netbay.podman.options import OptionsError, parse

ID = "0123456789abcdef" * 4
GOOD = ["eth0", "netbay0", "br-0123456789ab", "nbv0123456789ab", "eth0.10", "bond0.2.3",
        "dm-0123456789ab", "a", "A_b-C.9", "x" * 15, "..."]
BAD = ["", ".", "..", "x" * 16, "br+x", "eth*", "eth 0", "eth\t0", "a/b", "a:b", 'a"b',
       "eth0\n", "\neth0", "é", "eth0é", "eth@0", "eth0;"]


@pytest.mark.parametrize("name", GOOD)
def test_names_the_rule_takes(name: str) -> None:
    assert valid_ifname(name)
    assert plugin.valid_ifname(name)


@pytest.mark.parametrize("name", BAD)
def test_names_the_rule_refuses(name: str) -> None:
    assert not valid_ifname(name)
    assert not plugin.valid_ifname(name)


@settings(max_examples=2000)
@given(st.text(max_size=18) | st.text(alphabet="aZ09_.-+* /:\n\t@é", max_size=17))
@example("eth0\n")
def test_the_cni_plugins_copy_of_the_rule_agrees(name: str) -> None:
    assert plugin.valid_ifname(name) == valid_ifname(name)


def test_the_cni_plugin_names_the_rule_when_it_refuses() -> None:
    with pytest.raises(CniError) as caught:
        plugin.check_ifname("br+x")
    assert caught.value.code == plugin.INVALID_ENVIRONMENT
    allowed = IFNAME_RULE.split(" of ", 1)[1]  # "ASCII letters, digits, ..."
    assert caught.value.msg == f"interface name contains characters other than {allowed}"
    plugin.check_ifname("net1")


def test_the_bridge_driver_refuses_a_bridge_name_outside_the_rule() -> None:
    spec = NetworkSpec("n1", options={"com.docker.network.bridge.name": "br+x"})
    with pytest.raises(ConfigError) as caught:
        get_driver("bridge").validate(spec, ID)
    assert str(caught.value) == (
        f"invalid opt com.docker.network.bridge.name 'br+x': not a valid interface name "
        f"({IFNAME_RULE})"
    )


def test_the_parent_drivers_refuse_a_parent_outside_the_rule() -> None:
    for kind in ("macvlan", "ipvlan"):
        with pytest.raises(ConfigError) as caught:
            get_driver(kind).validate(NetworkSpec("n", kind, options={"parent": "eth+0"}), ID)
        assert str(caught.value) == (
            f"invalid opt parent 'eth+0': not a valid interface name ({IFNAME_RULE})"
        )


def test_podman_interface_names_follow_the_rule() -> None:
    document = {
        "container_id": "c1", "container_name": "c1",
        "networks": {"n": {"interface_name": "eth+0"}},
        "network_info": {"n": {"driver": "bridge"}},
    }
    with pytest.raises(OptionsError) as caught:
        parse(document)
    assert str(caught.value) == f"invalid interface name 'eth+0': expected {IFNAME_RULE}"


def test_the_firewall_planner_takes_only_names_of_the_rule() -> None:
    rules = fw.NetworkRules(device="br+x", subnets=())
    with pytest.raises(ValueError, match="not an interface name: 'br\\+x'"):
        fw.network_elements(rules)
    with pytest.raises(ValueError, match="not an interface name"):
        fw.network_elements(fw.NetworkRules(device="eth0\n", subnets=()))
    with pytest.raises(ValueError, match="not a MAC address"):
        fw.endpoint_elements(fw.EndpointRules("nbv1", "02:42:0a:00:00:02\n",
                                              IPv4Address("10.0.0.2")))
