"""The fast path's plan: which addresses a firewall change releases (their flows end), and
the container addresses of a bridge that go untracked."""

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
    rules = fw.NetworkRules("br0", (IPv4Network("10.0.0.0/24"),), (IPv4Address("10.0.0.1"),))
    assert fw.released_addresses({}, fw.network_elements(rules)) == set()


def test_the_bridged_set_holds_every_container_address_but_the_gateway() -> None:
    rules = fw.NetworkRules("br0", (IPv4Network("10.0.0.0/24"),), (IPv4Address("10.0.0.9"),))
    assert fw.network_elements(rules)[(fw.INET, "bridged")] == [
        '"br0" . 10.0.0.1-10.0.0.8', '"br0" . 10.0.0.10-10.0.0.254']


def test_container_ranges_at_the_edges() -> None:
    net = IPv4Network("10.0.0.0/30")
    assert fw.container_ranges([net], [IPv4Address("10.0.0.1")]) == [
        (IPv4Address("10.0.0.2"), IPv4Address("10.0.0.2"))]
    assert fw.container_ranges([IPv4Network("10.0.0.0/31")], []) == [
        (IPv4Address("10.0.0.0"), IPv4Address("10.0.0.1"))]
    assert fw.container_ranges([net], [IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")]) == []
