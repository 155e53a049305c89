"""The data-plane offload's plan and its engine side: the flowtable of the bridges and the
uplinks where the kernel has flowtables (here: a FakeNft that takes flowtable lines), the
ruleset exactly as before where it has none, devices changed by networks, never by an
attach."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from netbay.engine.firewall import Firewall
from netbay.kernel.uplinks import ForwardingLinks
from netbay.model import NetworkSpec, SubnetConfig
from netbay.plan import firewall as fw
from netbay.testing import fake_host
from netbay.testing_nft import FakeNft

_DEVICES = re.compile(r"^(add|delete) flowtable inet netbay ft \{ .*devices = \{ (.*) \}; \}$")
BR = fw.NetworkRules("br-a", (IPv4Network("10.0.0.0/24"),))
WEB = fw.EndpointRules("veth1", "02:42:0a:00:00:02", IPv4Address("10.0.0.2"))


class OffloadingNft(FakeNft):
    """FakeNft on a kernel with flowtables: netbay's flowtable as its set of devices, and
    every flowtable or offload line it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: set[str] = set()
        self.offload_lines: list[str] = []
        self.probes = 0

    def apply(self, commands: str) -> None:
        self.probes += commands == fw.FLOWTABLE_PROBE
        rest = []
        for line in commands.splitlines():
            if "flowtable" not in line and "flow add" not in line:
                rest.append(line)
            elif "netbay_probe" not in line:
                self.offload_lines.append(line)
                self._hook(line)
        super().apply("\n".join(rest))

    def _hook(self, line: str) -> None:
        found = _DEVICES.match(line)
        names = {d.strip('"') for d in found[2].split(", ")} if found else set()
        if found and found[1] == "delete":
            self.devices -= names
        else:
            self.devices |= names

    def list(self, what: str) -> list[dict[str, Any]]:
        if what == "flowtable inet netbay ft":
            return [{"flowtable": {"name": "ft", "dev": sorted(self.devices)}}]
        return super().list(what)


class Links:
    """The namespace's links as the firewall asks for them, counted."""

    def __init__(self, names: set[str], uplinks: set[str]) -> None:
        self.now = ForwardingLinks(frozenset(names), frozenset(uplinks))
        self.asked = 0

    def __call__(self) -> ForwardingLinks:
        self.asked += 1
        return self.now


def test_without_flowtables_the_ruleset_is_as_before() -> None:
    text = fw.rebuild([BR], [WEB], [])
    assert text == fw.rebuild([BR], [WEB], [], None)
    assert "flowtable" not in text and "flow add" not in text


def test_the_fast_path_hooks_the_devices_and_offloads_established_flows_of_bridges() -> None:
    text = fw.rebuild([BR], [], [], {"eth0", "br-a"})
    assert 'add flowtable inet netbay ft { hook ingress priority filter; devices = { "br-a", ' \
           '"eth0" }; }' in text
    assert ("insert rule inet netbay forward ct state established iifname @bridges meta "
            "l4proto { tcp, udp } flow add @ft") in text
    # the flowtable and its rule come after the chain they go in, before the elements
    assert text.index("chain forward") < text.index("add flowtable") < text.index("add element")
    assert "devices" not in fw.fast_path([])


def test_device_changes_and_the_bridges_a_change_brings_or_takes() -> None:
    assert fw.flowtable_devices({"br-b"}, {"br-a"}).splitlines() == [
        'delete flowtable inet netbay ft { hook ingress priority filter; devices = { "br-a" }; }',
        'add flowtable inet netbay ft { hook ingress priority filter; devices = { "br-b" }; }',
    ]
    assert fw.flowtable_devices(set(), set()) == ""
    elements = fw.network_elements(BR)
    assert fw.bridges_changed(elements, {}) == ({"br-a"}, set())
    assert fw.bridges_changed({}, elements) == (set(), {"br-a"})
    assert fw.bridges_changed(elements, elements) == (set(), set())
    assert fw.bridges_changed(fw.endpoint_elements(WEB), {}) == (set(), set())


def _firewall(tmp_path: Path, nft: FakeNft, links: Links) -> tuple[Firewall, str]:
    """A Firewall over a fake host's record with one bridge network (made on plain FakeNft)."""
    host = fake_host(tmp_path)
    network = host.host.create_network(
        NetworkSpec(name="a", subnets=(SubnetConfig(IPv4Network("10.0.0.0/24")),)))
    assert network.device is not None
    links.now = ForwardingLinks(links.now.names | {network.device}, links.now.uplinks)
    return Firewall(host.store, nft, host.flows, links), network.device


def test_a_rebuild_hooks_the_bridges_and_the_uplinks_that_exist(tmp_path: Path) -> None:
    nft, links = OffloadingNft(), Links({"lo", "eth0", "eth1"}, {"eth0", "gone0"})
    firewall, bridge = _firewall(tmp_path, nft, links)
    firewall.rebuild()
    firewall.rebuild()
    assert nft.devices == {bridge, "eth0"}
    assert nft.probes == 1 and firewall.fast_path()
    assert nft.elements(fw.INET, "bridges") == {f'"{bridge}"'}


def test_networks_change_the_devices_and_an_attach_does_not(tmp_path: Path) -> None:
    nft, links = OffloadingNft(), Links({"eth0", "br-b"}, {"eth0"})
    firewall, bridge = _firewall(tmp_path, nft, links)
    firewall.rebuild()
    asked, sent = links.asked, len(nft.offload_lines)
    firewall.change(fw.endpoint_elements(WEB), {})
    firewall.change({}, fw.endpoint_elements(WEB))
    assert (links.asked, len(nft.offload_lines)) == (asked, sent)

    links.now = ForwardingLinks(links.now.names | {"eth9"}, frozenset({"eth9"}))  # moved
    other = fw.NetworkRules("br-b", (IPv4Network("10.1.0.0/24"),))
    firewall.change(fw.network_elements(other), {})
    assert nft.devices == {bridge, "br-b", "eth9"}
    firewall.change({}, fw.network_elements(other))
    assert nft.devices == {bridge, "eth9"}


def test_a_kernel_without_flowtables_is_asked_once_and_gets_todays_ruleset(
    tmp_path: Path,
) -> None:
    class Refusing(FakeNft):
        probes = 0

        def apply(self, commands: str) -> None:
            self.probes += commands == fw.FLOWTABLE_PROBE
            super().apply(commands)  # FakeNft cannot parse a flowtable: refused

    nft, links = Refusing(), Links({"eth0"}, {"eth0"})
    firewall, bridge = _firewall(tmp_path, nft, links)
    firewall.rebuild()
    firewall.change(fw.network_elements(BR), {})
    assert nft.probes == 1 and not firewall.fast_path() and links.asked == 0
    assert not any("flowtable" in text or "flow add" in text for text in nft.applied)
    assert nft.elements(fw.INET, "bridges") == {f'"{bridge}"', '"br-a"'}
