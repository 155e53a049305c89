"""The verbs the engine asks a driver instead of comparing names: restore, audit, orphan_ports,
container_routes, the CPUs of `-o rps` checked in claim (validate does no I/O), and the
options runtimes may set. Against a small fake kernel; no root."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest

from netbay.cni import results
from netbay.cni.asks import Dns
from netbay.drivers import get_driver, runtime_drivers, runtime_options
from netbay.drivers.base import DEFAULT_ROUTE, RuntimeOptions
from netbay.errors import ConfigError, KernelError
from netbay.ipam.allocator import complete
from netbay.kernel import netsysfs, sublinks
from netbay.model import CREATING, Endpoint, Network, NetworkSpec, SubnetConfig
from netbay.podman.options import OptionsError, network_spec

ID = "0123456789abcdef" * 4
GATEWAY = IPv4Address("10.7.0.1")


class FakeKernel:
    """The host's links by name, which bridge each is plugged into, and what was asked."""

    def __init__(self, links: Iterable[str] = (), ports: dict[str, str] | None = None) -> None:
        self.lock = threading.RLock()
        self.links = set(links) | set(ports or {})
        self.master = dict(ports or {})
        self.calls: list[str] = []

    def ensure_bridge(
        self, key: str, name: str, mtu: int | None, addresses: Iterable[IPv4Interface]
    ) -> bool:
        self.calls.append(f"ensure_bridge {name} {' '.join(map(str, addresses))}")
        created = name not in self.links
        self.links.add(name)
        return created

    def forget_bridge(self, key: str) -> None:
        self.calls.append(f"forget_bridge {key}")

    def enable_forwarding(self) -> None:
        self.calls.append("enable_forwarding")

    def allow_localnet(self, device: str) -> None:
        self.calls.append(f"allow_localnet {device}")

    def remove_link(self, name: str) -> bool:
        self.calls.append(f"remove_link {name}")
        found = name in self.links
        self.links.discard(name)
        return found

    def link_exists(self, name: str) -> bool:
        return name in self.links

    def bridge_ports(self, bridge: str) -> set[str]:
        return {port for port, master in self.master.items() if master == bridge}

    def attach_veth(self, **kwargs: object) -> None:
        raise AssertionError("not asked here")


def bridge_network(device: str = "br-0123456789ab", **options: str) -> Network:
    spec = NetworkSpec("n1", subnets=(complete(SubnetConfig(IPv4Network("10.7.0.0/24"))),),
                       options=options)
    return get_driver("bridge").validate(spec, ID)


def parent_network(kind: str, **options: str) -> Network:
    spec = NetworkSpec("lan", kind, (complete(SubnetConfig(IPv4Network("10.7.0.0/24"))),),
                       options=options)
    return get_driver(kind).fit(get_driver(kind).validate(spec, ID), [])


def endpoint(gateway: IPv4Address | None = GATEWAY) -> Endpoint:
    return Endpoint("e" * 64, ID, "c" * 64, "eth0", "nbveeeeeeeeeeee", "02:42:0a:07:00:02",
                    IPv4Interface("10.7.0.2/24"), gateway)


# --- validate does no I/O; claim checks the CPUs -------------------------------------------
def test_rps_cpus_are_checked_in_claim_not_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_io() -> frozenset[int]:
        raise AssertionError("validate read the kernel")

    monkeypatch.setattr(netsysfs, "online_cpus", no_io)
    network = bridge_network(rps="0-4095", rps_flows="64")
    for bad, message in [
        ({"rps": "banana"}, "invalid opt rps 'banana': expected a CPU list like 0-3,6"),
        ({"rps": "3-1"}, "invalid opt rps '3-1': range 3-1 runs backwards"),
        ({"rps_flows": "5"}, "invalid opt rps_flows '5': needs -o rps=auto or a CPU list"),
        ({"rps": "auto", "rps_flows": "x"}, "invalid opt rps_flows 'x': expected a whole number"),
    ]:
        with pytest.raises(ConfigError) as caught:
            bridge_network(**bad)
        assert str(caught.value).startswith(message)

    monkeypatch.setattr(netsysfs, "online_cpus", lambda: frozenset({0, 1}))
    kernel = FakeKernel()
    with pytest.raises(ConfigError) as caught:
        get_driver("bridge").claim(kernel, network)
    assert str(caught.value) == "invalid opt rps '0-4095': CPU 2 does not exist (online: 0-1)"
    assert kernel.calls == []
    fine = get_driver("bridge").claim(kernel, bridge_network(rps="auto"))
    assert fine.device_created and kernel.calls == []


# --- restore ---------------------------------------------------------------------------------
def test_restoring_a_bridge_makes_it_again_and_notes_it_was_made() -> None:
    kernel = FakeKernel()
    network = bridge_network()
    restored = get_driver("bridge").restore(kernel, network)
    assert restored.device_created and not network.device_created
    assert kernel.calls == ["ensure_bridge br-0123456789ab 10.7.0.1/24", "enable_forwarding",
                            "allow_localnet br-0123456789ab"]
    again = get_driver("bridge").restore(FakeKernel(["netbay0"]), bridge_network(
        **{"com.docker.network.bridge.name": "netbay0"}))
    assert not again.device_created  # there already: not netbay's to remove


def test_restoring_a_parent_network_that_cannot_be_remade_only_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def gone(*args: object, **kwargs: object) -> None:
        raise KernelError("no such device eth7")

    monkeypatch.setattr(sublinks, "ensure_shim", gone)
    network = parent_network("macvlan", parent="eth7", host_link="true")
    with caplog.at_level(logging.WARNING):
        assert get_driver("macvlan").restore(FakeKernel(), network) == network
    assert caplog.messages == ["network lan: cannot re-make its links: no such device eth7"]
    for kind in ("host", "null", "external"):
        assert get_driver(kind).restore(FakeKernel(), network) == network


# --- audit and orphan ports ------------------------------------------------------------------
def test_audit_names_what_is_missing_of_the_networks_own_objects() -> None:
    bridge = bridge_network()
    assert get_driver("bridge").audit(bridge, {"lo"}) == [
        "network n1: bridge br-0123456789ab missing"]
    assert get_driver("bridge").audit(bridge, {"lo", "br-0123456789ab"}) == []

    shimmed = parent_network("macvlan", parent="eth7", host_link="true")
    assert get_driver("macvlan").audit(shimmed, {"lo"}) == [
        "network lan: parent eth7 missing", "network lan: host link nbs0123456789ab missing"]
    assert get_driver("macvlan").audit(shimmed, {"eth7", "nbs0123456789ab"}) == []
    plain = parent_network("ipvlan", parent="eth7")
    assert get_driver("ipvlan").audit(plain, {"eth7"}) == []  # no shim asked for
    creating = dataclasses.replace(plain, state=CREATING)
    assert get_driver("ipvlan").audit(creating, set()) == []  # gc's, not missing
    assert get_driver("external").audit(plain, set()) == []


def test_orphan_ports_are_the_bridges_ports_no_record_names() -> None:
    kernel = FakeKernel(ports={"nbva": "br-0123456789ab", "stray0": "br-0123456789ab",
                               "nbvb": "br-0123456789ab", "other": "netbay0"})
    bridge = bridge_network()
    assert get_driver("bridge").orphan_ports(kernel, bridge, {"nbva", "nbvb"}) == ["stray0"]
    assert get_driver("bridge").orphan_ports(kernel, bridge, set()) == ["nbva", "nbvb", "stray0"]
    lan = parent_network("macvlan", parent="br-0123456789ab")
    assert get_driver("macvlan").orphan_ports(kernel, lan, set()) == []
    assert kernel.calls == []  # reading only


# --- the endpoint's routes -------------------------------------------------------------------
def test_container_routes_are_what_attach_gives_the_link() -> None:
    assert get_driver("bridge").container_routes(bridge_network(), endpoint()) == [
        (DEFAULT_ROUTE, GATEWAY)]
    assert get_driver("bridge").container_routes(bridge_network(), endpoint(None)) == []
    flat = parent_network("macvlan", parent="eth7")
    assert get_driver("macvlan").container_routes(flat, endpoint()) == [(DEFAULT_ROUTE, GATEWAY)]
    routed = parent_network("ipvlan", parent="eth7", ipvlan_mode="l3")
    assert get_driver("ipvlan").container_routes(routed, endpoint()) == [(DEFAULT_ROUTE, None)]
    assert get_driver("ipvlan").container_routes(routed, endpoint(None)) == []
    assert get_driver("external").container_routes(flat, endpoint()) == []


def test_the_cni_result_lists_the_routes_and_host_links_the_driver_made() -> None:
    bridge = bridge_network()
    made = results.interface_result("1.0.0", bridge, endpoint(), "/n", Dns())
    assert [i["name"] for i in made["interfaces"]] == ["br-0123456789ab", "nbveeeeeeeeeeee",
                                                       "eth0"]
    assert made["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.7.0.1"}]
    routed = parent_network("ipvlan", parent="eth7", ipvlan_mode="l3")
    planned = get_driver("ipvlan").plan_endpoint(routed, endpoint())
    made = results.interface_result("1.0.0", routed, planned, "/n", Dns())
    assert [i["name"] for i in made["interfaces"]] == ["eth0"]
    assert made["routes"] == [{"dst": "0.0.0.0/0"}]  # straight out of eth0, as attach does


# --- what runtimes may set -------------------------------------------------------------------
def test_the_runtimes_make_networks_of_drivers_that_declare_their_options() -> None:
    assert runtime_drivers() == ["bridge", "macvlan"]
    assert runtime_options("bridge") == RuntimeOptions(
        device="com.docker.network.bridge.name", mtu="com.docker.network.driver.mtu",
        masquerade="com.docker.network.bridge.enable_ip_masquerade")
    assert runtime_options("macvlan") == RuntimeOptions(device="parent", mode="macvlan_mode")
    assert runtime_options("ipvlan") is None and runtime_options("warp") is None


@pytest.mark.parametrize(
    ("info", "options"),
    [
        ({"driver": "bridge", "network_interface": "podman1", "options": {"mtu": "1400"}},
         {"com.docker.network.bridge.name": "podman1", "com.docker.network.driver.mtu": "1400"}),
        ({"driver": "bridge", "options": {"mtu": "0", "vlan": ""}}, {}),
        ({"driver": "macvlan", "network_interface": "eth7", "options": {"mode": "vepa"}},
         {"parent": "eth7", "macvlan_mode": "vepa"}),
    ],
)
def test_podman_settings_become_the_drivers_options(
    info: dict[str, object], options: dict[str, str]
) -> None:
    assert network_spec(info, "pn").options == options


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ({"driver": "macvlan", "options": {"mtu": "1400"}},
         "network pn: option mtu is not supported on netbay's macvlan networks"),
        ({"driver": "bridge", "options": {"vlan": "5"}},
         "network pn: option vlan is not supported on netbay's bridge networks"),
        ({"driver": "bridge", "options": {"mode": "unmanaged"}},
         "network pn: option mode is not supported on netbay's bridge networks"),
        ({"driver": "ipvlan"}, "unsupported driver ipvlan"),
    ],
)
def test_podman_settings_a_driver_cannot_honour_are_refused(
    info: dict[str, object], message: str
) -> None:
    with pytest.raises(OptionsError) as caught:
        network_spec(info, "pn")
    assert str(caught.value) == message

