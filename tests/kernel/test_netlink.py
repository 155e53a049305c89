"""The netlink layer against the real kernel, in a throwaway host namespace: links, vxlan,
neighbours, FDB entries, netbay's routes, events, and the errors with their errno. What
netbay made is read back both through its own decoding and through iproute2."""

from __future__ import annotations

import errno
import json
import selectors
import subprocess
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from netbay.errors import KernelError
from netbay.kernel import netns
from netbay.kernel.events import AddressEvent, Change, Event, LinkEvent, Subscription
from netbay.kernel.rtnetlink import Rtnetlink
from netbay.kernel.rtnl_wire import BRIDGE, RTPROT_NETBAY, FdbEntry, LinkKind, Neighbour, Route

pytestmark = pytest.mark.kernel

UNDERLAY = IPv4Interface("192.0.2.1/24")  # TEST-NET-1, only inside the test's namespace
REMOTE = IPv4Address("192.0.2.2")
MAC = "02:42:0a:01:00:02"
ZERO_MAC = "00:00:00:00:00:00"


def ip_json(*args: str) -> Any:
    out = subprocess.run(["ip", "-j", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout or "[]")


@pytest.fixture
def rt(host_ns: Path) -> Iterator[Rtnetlink]:
    with Rtnetlink(None) as rtnl:
        yield rtnl


@pytest.fixture
def underlay(rt: Rtnetlink, host_ns: Path) -> int:
    """A veth pair in the host namespace (this kernel has no dummy links), both ends up;
    und0 holds UNDERLAY."""
    bridge, _ = rt.ensure_bridge("under-br", None)
    rt.add_veth("und0", "und1", host_ns, master=bridge, peer_mac=None, mtu=None)
    index = rt.require_index("und0", "und0 missing")
    rt.set_up(rt.require_index("und1", "und1 missing"))
    rt.ensure_address(index, UNDERLAY)
    return index


@pytest.fixture
def vxlan(rt: Rtnetlink, underlay: int) -> int:
    return rt.add_vxlan("vx0", vni=42, local=UNDERLAY.ip, underlay="und0", mtu=1450, mac=MAC)


def test_bridge_and_veth_into_another_namespace(rt: Rtnetlink, tmp_path: Path) -> None:
    index, created = rt.ensure_bridge("br-test", 1400)
    assert created and rt.ensure_bridge("br-test", None) == (index, False)
    bridge = rt.link("br-test")
    assert bridge is not None and (bridge.kind, bridge.mtu, bridge.up) == ("bridge", 1400, True)
    container = tmp_path / "c1"
    netns.create(container)
    try:
        rt.add_veth("nbv1", "eth0", container, master=index, peer_mac=MAC, mtu=1400)
        host_end = rt.link("nbv1")
        assert host_end is not None
        assert (host_end.kind, host_end.master, host_end.up) == ("veth", index, True)
        with Rtnetlink(container) as inside:
            peer = inside.link("eth0")
            assert peer is not None and (peer.kind, peer.mac, peer.mtu) == ("veth", MAC, 1400)
        assert [lk.name for lk in rt.links() if lk.master == index] == ["nbv1"]
        assert rt.remove_link("nbv1") is True
        assert rt.remove_link("nbv1") is False
        assert rt.index("nbv1") is None
    finally:
        netns.delete(container)


def test_errors_carry_the_errno(rt: Rtnetlink, host_ns: Path) -> None:
    rt.ensure_bridge("br-test", None)
    with pytest.raises(KernelError) as taken:
        rt.add_link("br-test", BRIDGE)
    assert taken.value.errno == errno.EEXIST
    assert str(taken.value) == "create link br-test: File exists"
    with pytest.raises(KernelError) as missing:
        rt.set_up(99999)
    assert missing.value.errno == errno.ENODEV
    with pytest.raises(KernelError) as unknown:
        rt.add_link("odd0", LinkKind("no-such-kind"))
    assert unknown.value.errno == errno.EOPNOTSUPP
    rt.add_veth("ve0", "ve1", host_ns, master=rt.require_index("br-test", ""), peer_mac=None,
                mtu=None)
    with pytest.raises(KernelError) as not_a_bridge:
        rt.ensure_bridge("ve1", None)
    assert not_a_bridge.value.errno == errno.EEXIST
    assert str(not_a_bridge.value) == "ve1 exists and is not a bridge link"


def test_vxlan_link(rt: Rtnetlink, underlay: int, vxlan: int) -> None:
    link = rt.link("vx0")
    assert link is not None
    assert (link.index, link.kind, link.mtu, link.mac, link.up) == (vxlan, "vxlan", 1450, MAC,
                                                                     True)
    (shown,) = ip_json("-d", "link", "show", "vx0")
    data = shown["linkinfo"]["info_data"]
    assert (data["id"], data["local"], data["port"], data["learning"], data["link"]) == (
        42, "192.0.2.1", 4789, False, "und0")
    with pytest.raises(KernelError) as taken:
        rt.add_vxlan("vx1", vni=42, local=UNDERLAY.ip, underlay="und0")  # one device per VNI
    assert taken.value.errno == errno.EEXIST
    with pytest.raises(KernelError) as missing:
        rt.add_vxlan("vx2", vni=43, local=UNDERLAY.ip, underlay="nosuch0")
    assert missing.value.errno == errno.ENODEV


def test_permanent_neighbours(rt: Rtnetlink, vxlan: int) -> None:
    address = IPv4Address("10.1.0.2")
    rt.ensure_neighbour(vxlan, address, MAC)
    rt.ensure_neighbour(vxlan, address, MAC)  # ensure: again is fine
    assert rt.neighbours(vxlan) == [Neighbour(vxlan, address, MAC)]
    (shown,) = ip_json("neigh", "show", "dev", "vx0")
    assert (shown["dst"], shown["lladdr"], shown["state"]) == ("10.1.0.2", MAC, ["PERMANENT"])
    rt.ensure_neighbour(vxlan, address, "02:42:0a:01:00:99")  # moved: replaced
    assert [n.lladdr for n in rt.neighbours(vxlan)] == ["02:42:0a:01:00:99"]
    assert rt.remove_neighbour(vxlan, address) is True
    assert rt.remove_neighbour(vxlan, address) is False
    assert rt.neighbours(vxlan) == []


def test_fdb_entries_of_a_vxlan(rt: Rtnetlink, vxlan: int) -> None:
    other = IPv4Address("192.0.2.3")
    rt.ensure_fdb(vxlan, MAC, REMOTE)
    rt.ensure_fdb(vxlan, ZERO_MAC, REMOTE)  # flooding: one entry per remote
    rt.ensure_fdb(vxlan, ZERO_MAC, other)
    remotes = {(e.lladdr, e.destination) for e in rt.fdb(vxlan) if e.destination}
    assert remotes == {(MAC, REMOTE), (ZERO_MAC, REMOTE), (ZERO_MAC, other)}
    assert FdbEntry(vxlan, MAC, REMOTE) in rt.fdb(vxlan)
    shown = {(e["mac"], e.get("dst")) for e in _bridge_fdb("vx0")}
    assert {(MAC, "192.0.2.2"), (ZERO_MAC, "192.0.2.2"), (ZERO_MAC, "192.0.2.3")} <= shown
    rt.ensure_fdb(vxlan, MAC, other)  # a unicast MAC moved to another host: replaced
    assert {e.destination for e in rt.fdb(vxlan) if e.lladdr == MAC} == {other}
    assert rt.remove_fdb(vxlan, ZERO_MAC, REMOTE) is True
    assert rt.remove_fdb(vxlan, ZERO_MAC, REMOTE) is False
    assert {e.destination for e in rt.fdb(vxlan) if e.lladdr == ZERO_MAC} == {other}


def _bridge_fdb(device: str) -> Any:
    out = subprocess.run(["bridge", "-j", "fdb", "show", "dev", device], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout or "[]")


def test_onlink_routes_of_netbays_protocol(rt: Rtnetlink, vxlan: int) -> None:
    gateway = IPv4Address("10.200.0.1")  # on no subnet of the device: only onlink reaches it
    ours = Route(IPv4Network("10.2.0.0/24"), gateway=gateway, index=vxlan,
                 protocol=RTPROT_NETBAY, onlink=True)
    with pytest.raises(KernelError) as unreachable:
        rt.add_route(Route(ours.destination, gateway=gateway, index=vxlan, protocol=RTPROT_NETBAY))
    assert unreachable.value.errno == errno.ENETUNREACH
    rt.add_route(ours)
    someone_elses = Route(IPv4Network("10.3.0.0/24"), gateway=gateway, index=vxlan, onlink=True)
    rt.add_route(someone_elses)
    assert rt.routes(protocol=RTPROT_NETBAY) == [ours]
    (shown,) = ip_json("route", "show", "proto", str(RTPROT_NETBAY))
    assert (shown["dst"], shown["gateway"], shown["dev"], shown["flags"]) == (
        "10.2.0.0/24", "10.200.0.1", "vx0", ["onlink"])
    with pytest.raises(KernelError) as again:
        rt.add_route(ours)
    assert again.value.errno == errno.EEXIST
    rt.add_route(ours, replace=True)
    assert rt.remove_route(Route(ours.destination, protocol=RTPROT_NETBAY, index=vxlan,
                                 gateway=gateway)) is True
    assert rt.remove_route(ours) is False
    assert rt.routes(protocol=RTPROT_NETBAY) == []
    # a delete names its protocol: someone else's route to the same place stays
    assert rt.remove_route(Route(someone_elses.destination, protocol=RTPROT_NETBAY)) is False
    assert someone_elses in rt.routes()


class Listener:
    """Events of a subscription read through a selector, as a reconciler would."""

    def __init__(self, events: Subscription) -> None:
        self.events = events
        self.pending: list[Event] = []
        self.selector = selectors.DefaultSelector()
        self.selector.register(events, selectors.EVENT_READ)

    def wait_for(self, wanted: Callable[[Event], bool], timeout: float = 5.0) -> None:
        """Read up to the first WANTED event (those after it stay pending)."""
        deadline = time.monotonic() + timeout
        skipped: list[Event] = []
        while True:
            while self.pending:
                event = self.pending.pop(0)
                if wanted(event):
                    return
                skipped.append(event)
            left = deadline - time.monotonic()
            assert left > 0, f"not among {skipped}"
            if self.selector.select(left):
                self.pending += self.events.poll(0)


def link_event(change: Change, name: str, **fields: object) -> Callable[[Event], bool]:
    def matches(event: Event) -> bool:
        return (isinstance(event, LinkEvent) and event.change == change
                and event.link.name == name
                and all(getattr(event.link, k) == v for k, v in fields.items()))

    return matches


def test_events_of_links(rt: Rtnetlink, host_ns: Path) -> None:
    with Subscription(host_ns) as events:
        assert events.poll(0) == []
        listener = Listener(events)
        bridge, _ = rt.ensure_bridge("br-ev", None)
        listener.wait_for(link_event(Change.ADDED, "br-ev", index=bridge, up=False))
        listener.wait_for(link_event(Change.CHANGED, "br-ev", up=True))
        rt.add_veth("evv0", "evv1", host_ns, master=bridge, peer_mac=None, mtu=None)
        listener.wait_for(link_event(Change.ADDED, "evv0", kind="veth"))
        # enslaved after the kernel registered it: a change, with its peer still down
        listener.wait_for(link_event(Change.CHANGED, "evv0", master=bridge,
                                     operstate="lowerlayerdown"))
        rt.set_up(rt.require_index("evv1", "evv1 missing"))
        listener.wait_for(link_event(Change.CHANGED, "evv0", operstate="up"))
        index = rt.require_index("evv0", "evv0 missing")
        assert rt.remove_link("evv0")
        listener.wait_for(link_event(Change.REMOVED, "evv0", index=index))
        listener.wait_for(link_event(Change.REMOVED, "evv1"))


def test_events_of_addresses(rt: Rtnetlink, host_ns: Path) -> None:
    index, _ = rt.ensure_bridge("br-ev", None)
    address = IPv4Interface("10.9.0.1/24")
    with Subscription(host_ns) as events:
        listener = Listener(events)
        rt.ensure_address(index, address)
        listener.wait_for(lambda e: e == AddressEvent(Change.ADDED, index, address))
        assert rt.remove_address(index, address) is True
        listener.wait_for(lambda e: e == AddressEvent(Change.REMOVED, index, address))
        assert rt.remove_address(index, address) is False
        later = listener.pending + events.poll(0.2)
        assert not [e for e in later if isinstance(e, AddressEvent)]  # none removed: no event


def test_events_of_another_namespace_only(rt: Rtnetlink, tmp_path: Path) -> None:
    other = tmp_path / "other"
    netns.create(other)
    try:
        with Subscription(other) as events, Rtnetlink(other) as there:
            rt.ensure_bridge("br-here", None)
            index, _ = there.ensure_bridge("br-there", None)
            seen = [e for e in events.poll(2.0) if isinstance(e, LinkEvent)]
            assert {e.link.name for e in seen} == {"br-there"}
            assert seen[0].change == Change.ADDED and seen[0].link.index == index
    finally:
        netns.delete(other)
