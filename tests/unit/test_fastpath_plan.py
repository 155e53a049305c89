"""The fast path's plan: which addresses a firewall change releases (their flows end), and
which bridged traffic goes untracked."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from netbay.plan import firewall as fw

WEB = fw.EndpointRules("veth1", "02:42:0a:00:00:02", IPv4Address("10.0.0.2"))
PORT = fw.PortRules("tcp", None, 8080, IPv4Address("10.0.0.3"), 80)
OTHER_PORT = fw.PortRules("tcp", None, 9090, IPv4Address("10.0.0.3"), 80)


def test_an_endpoint_or_a_mapping_that_goes_releases_its_address() -> None:
    gone = fw.merge(fw.endpoint_elements(WEB), fw.port_elements(PORT))
    assert fw.released_addresses({}, gone) == {IPv4Address("10.0.0.2"), IPv4Address("10.0.0.3")}


def test_only_an_endpoint_that_goes_ends_the_flows_its_address_started() -> None:
    gone = fw.merge(fw.endpoint_elements(WEB), fw.port_elements(PORT))
    assert fw.departed_addresses({}, gone) == {IPv4Address("10.0.0.2")}
    assert fw.departed_addresses(fw.endpoint_elements(WEB), fw.endpoint_elements(WEB)) == set()


def test_what_stays_or_only_comes_releases_nothing() -> None:
    both = fw.port_elements(PORT)
    assert fw.released_addresses(both, both) == set()
    assert fw.released_addresses(fw.endpoint_elements(WEB), {}) == set()
    # another mapping to the same target does not keep the old one's flows
    assert fw.released_addresses(fw.port_elements(OTHER_PORT), both) == {IPv4Address("10.0.0.3")}


def test_network_elements_leave_no_address_to_release() -> None:
    rules = fw.NetworkRules("br0", (IPv4Network("10.0.0.0/24"),))
    assert fw.released_addresses({}, fw.network_elements(rules)) == set()


def test_bridged_traffic_is_untracked_in_the_bridge_table_after_anti_spoofing() -> None:
    """Only a frame to another container's MAC from a container's own (port, MAC, address):
    a spoofed one, or one to the bridge's own MAC (the gateway, a published port), is not."""
    chain = fw.SKELETON.split("table bridge netbay")[1].split("chain prerouting")[1]
    rules = [line.strip() for line in chain.split("\n  }")[0].splitlines()
             if line.strip() and not line.strip().startswith("#")]
    untrack = [r for r in rules if "notrack" in r]
    assert untrack == [
        "meta pkttype other iifname . ether saddr . ip saddr @endpoints notrack accept",
        "meta pkttype other iifname . ether saddr . ip6 saddr @endpoints6 notrack accept"]
    # the IPv6 one after every neighbour-discovery check
    assert rules.index(untrack[1]) == rules.index("drop") - 2
    inet = fw.SKELETON.split("table bridge netbay")[0]
    assert "notrack" not in inet and "@bridged" not in inet


def test_the_forward_chain_accepts_one_bridges_traffic_first() -> None:
    chain = fw.SKELETON.split("chain forward {")[1]
    rules = [line.strip() for line in chain.splitlines()[2:]
             if line.strip() and not line.strip().startswith("#")]
    assert rules[0] == "iifname . oifname @same_bridge accept"
