"""The reconciler's comparison, pure: desired and observed built by hand, the drifts and
their fixes exact; consequences wait for their cause; what is not netbay's is reported
without a fix."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network

from netbay.drivers import get_driver
from netbay.model import Endpoint, Network, SubnetConfig
from netbay.reconcile.compare import Drift, compare
from netbay.reconcile.fixes import (
    AddAddress,
    AddRoute,
    RebuildFirewall,
    RemakeNetwork,
    SetHairpin,
    SetLink,
    WriteSysctl,
)
from netbay.reconcile.state import (
    RTPROT_KERNEL,
    Desired,
    LinkState,
    Observed,
    RouteState,
    WantedLink,
    WantedRoute,
    WantedSysctl,
)

GW = IPv4Interface("10.61.0.1/24")
SUBNET = IPv4Network("10.61.0.0/24")
BRIDGE = WantedLink("br-x", "network asgard", role="bridge", kind="bridge", mtu=1400,
                    addresses=frozenset({GW}), remake="n1")
PORT = WantedLink("nbv1", "endpoint 1", kind="veth", master="br-x", mtu=1400)
ROUTE = WantedRoute(SUBNET, "br-x", "network asgard", source=GW.ip, protocol=RTPROT_KERNEL)
FORWARD = WantedSysctl("net.ipv4.ip_forward", "1", "network asgard")
LOCALNET = WantedSysctl("route_localnet", "1", "network asgard", device="br-x")
DESIRED = Desired((BRIDGE, PORT), (ROUTE,), (FORWARD, LOCALNET), firewall=True)


def in_sync(**changes: object) -> Observed:
    """The kernel as DESIRED has it, with CHANGES to its fields."""
    fields: dict[str, object] = {
        "links": {
            "br-x": LinkState("br-x", 5, "bridge", mtu=1400, mac="02:00:00:00:00:01"),
            "nbv1": LinkState("nbv1", 6, "veth", master="br-x", mtu=1400),
        },
        "addresses": {"br-x": frozenset({GW})},
        "routes": frozenset({RouteState(SUBNET, "br-x")}),
        "sysctls": {FORWARD.where: "1", LOCALNET.where: "1"},
        "firewall": True,
    }
    fields.update(changes)
    return Observed(**fields)  # type: ignore[arg-type]


def links(**changed: LinkState | None) -> dict[str, LinkState]:
    found = dict(in_sync().links)
    for name, link in changed.items():
        if link is None:
            del found[name]
        else:
            found[name] = link
    return found


def test_in_sync_is_no_drift() -> None:
    assert compare(DESIRED, in_sync()) == []


def test_a_missing_bridge_is_re_made_and_its_ports_and_routes_wait_for_it() -> None:
    observed = in_sync(links=links(**{"br-x": None, "nbv1": LinkState("nbv1", 6, "veth",
                                                                       mtu=1400)}),
                       addresses={}, routes=frozenset(), sysctls={FORWARD.where: "1"})
    assert compare(DESIRED, observed) == [
        Drift("missing", "br-x", "network asgard: bridge br-x missing", RemakeNetwork("n1"))]


def test_a_bridge_netbay_did_not_make_is_reported_missing_not_made() -> None:
    theirs = Desired((WantedLink("br0", "network lan", role="bridge", kind="bridge"),))
    (drift,) = compare(theirs, Observed())
    assert drift == Drift("missing", "br0", "network lan: bridge br0 missing", None)


def test_each_attribute_of_a_link_drifts_with_its_own_fix() -> None:
    observed = in_sync(links=links(
        **{"br-x": LinkState("br-x", 5, "bridge", up=False, mtu=1500, mac="02:00:00:00:00:09"),
           "nbv1": LinkState("nbv1", 6, "veth", master="br-y", mtu=1400)}))
    wanted = DESIRED.with_macs({"br-x": "02:00:00:00:00:01"})
    assert [(d.kind, d.fix) for d in compare(wanted, observed)] == [
        ("down", SetLink("br-x", up=True)), ("mtu", SetLink("br-x", mtu=1400)),
        ("mac", SetLink("br-x", mac="02:00:00:00:00:01")),
        ("port", SetLink("nbv1", master="br-x")),
    ]
    assert [d.what for d in compare(wanted, observed)][2:] == [
        "network asgard: br-x has MAC 02:00:00:00:00:09, not 02:00:00:00:00:01",
        "endpoint 1: nbv1 is not a port of br-x (it is on br-y)",
    ]


def test_a_lost_address_is_added_and_its_route_waits_for_it() -> None:
    observed = in_sync(addresses={}, routes=frozenset())
    assert compare(DESIRED, observed) == [
        Drift("address", "10.61.0.1/24 on br-x", "network asgard: br-x lost its address "
              "10.61.0.1/24", AddAddress("br-x", GW))]


def test_an_extra_address_or_route_is_someone_elses() -> None:
    extra = IPv4Interface("192.0.2.1/24")
    observed = in_sync(addresses={"br-x": frozenset({GW, extra})},
                       routes=frozenset({RouteState(SUBNET, "br-x"),
                                         RouteState(extra.network, "br-x")}))
    assert compare(DESIRED, observed) == []


def test_a_removed_route_is_added_again() -> None:
    (drift,) = compare(DESIRED, in_sync(routes=frozenset()))
    assert drift == Drift("route", "route 10.61.0.0/24 dev br-x",
                          "network asgard: route 10.61.0.0/24 dev br-x missing", AddRoute(ROUTE))


def test_a_route_to_the_same_place_through_another_device_does_not_count() -> None:
    (drift,) = compare(DESIRED, in_sync(routes=frozenset({RouteState(SUBNET, "eth0")})))
    assert drift.kind == "route"


def test_sysctls_are_set_back_and_a_gone_device_has_none_to_compare() -> None:
    observed = in_sync(sysctls={FORWARD.where: "0", LOCALNET.where: None})
    assert compare(DESIRED, observed) == [
        Drift("sysctl", "net.ipv4.ip_forward", "network asgard: net.ipv4.ip_forward is 0, "
              "not 1", WriteSysctl(FORWARD))]
    (drift,) = compare(DESIRED, in_sync(sysctls={FORWARD.where: "1", LOCALNET.where: "0"}))
    assert drift.subject == "net.ipv4.conf.br-x.route_localnet"


def test_hairpin_is_checked_once_the_port_is_on_its_bridge() -> None:
    wanted = DESIRED.with_hairpin(["nbv1"])
    (drift,) = compare(wanted, in_sync())
    assert drift.fix == SetHairpin("nbv1")
    detached = in_sync(links=links(nbv1=LinkState("nbv1", 6, "veth", mtu=1400)))
    assert [d.kind for d in compare(wanted, detached)] == ["port"]


def test_a_link_of_another_kind_is_reported_not_replaced() -> None:
    observed = in_sync(links=links(**{"br-x": LinkState("br-x", 5, "dummy", mtu=1400)}))
    drifts = compare(DESIRED, observed)
    assert drifts[0] == Drift("kind", "br-x", "network asgard: br-x is a dummy link, not a "
                              "bridge: not netbay's to replace")
    assert all(d.fix is not None for d in drifts[1:])


def test_nothing_of_a_link_is_checked_while_its_lower_link_is_missing() -> None:
    shim = WantedLink("nbs1", "network m", role="host link", kind="macvlan", lower="eth7",
                      remake="m1")
    parent = WantedLink("eth7", "network m", role="parent", up=False)
    assert compare(Desired((parent, shim)), Observed()) == [
        Drift("missing", "eth7", "network m: parent eth7 missing")]


def test_flushed_firewall_is_rebuilt() -> None:
    (drift,) = compare(DESIRED, in_sync(firewall=False))
    assert drift == Drift("firewall", "nftables", "netbay's nftables tables are missing",
                          RebuildFirewall())


def test_sysctls_wanted_by_several_networks_are_compared_once() -> None:
    other = Desired(sysctls=(WantedSysctl("net.ipv4.ip_forward", "1", "network b"),))
    assert (DESIRED + other).sysctls == (FORWARD, LOCALNET)


def test_the_bridge_drivers_desired_state() -> None:
    network = Network("n1" * 6, "asgard", "bridge", "", (SubnetConfig(SUBNET, GW.ip),),
                      device="br-x", device_created=True, mtu=1400)
    endpoint = Endpoint("e1" * 6, network.id, "c1", "eth0", "nbv1", None, None, None)
    wanted = get_driver("bridge").desired(network, [endpoint])
    assert wanted.links == (
        WantedLink("br-x", "network asgard", role="bridge", kind="bridge", mtu=1400,
                   addresses=frozenset({GW}), remake=network.id),
        WantedLink("nbv1", "endpoint e1e1e1e1e1e1", kind="veth", master="br-x", mtu=1400),
    )
    assert wanted.routes == (ROUTE,)
    assert wanted.sysctls == (FORWARD, LOCALNET)
    theirs = get_driver("bridge").desired(
        Network("n2" * 6, "lan", "bridge", "", (), device="br0"), [])
    assert theirs.links[0].remake is None  # not netbay's to make


def test_the_macvlan_drivers_desired_state_has_the_shim_and_its_route() -> None:
    config = SubnetConfig(IPv4Network("172.17.28.0/24"), IPv4Interface("172.17.28.1/24").ip,
                          ip_range=IPv4Network("172.17.28.64/27"),
                          aux_addresses={"host_link": IPv4Interface("172.17.28.254/24").ip})
    network = Network("m1" * 6, "shimmed", "macvlan", "", (config,), device="eth7",
                      options={"parent": "eth7", "host_link": "true"})
    wanted = get_driver("macvlan").desired(network, [])
    shim = "nbs" + network.id[:12]
    assert wanted.links == (
        WantedLink("eth7", "network shimmed", role="parent", up=False),
        WantedLink(shim, "network shimmed", role="host link", kind="macvlan",
                   addresses=frozenset({IPv4Interface("172.17.28.254/32")}),
                   remake=network.id, lower="eth7"),
    )
    assert wanted.routes == (WantedRoute(IPv4Network("172.17.28.64/27"), shim,
                                         "network shimmed",
                                         source=IPv4Interface("172.17.28.254/24").ip),)
