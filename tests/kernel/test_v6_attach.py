"""IPv6 on bridge networks (dual stack and IPv6 only) against the real kernel, in a throwaway
host namespace: the bridge's gateways, the container's static IPv6 (no DAD, no RA, no
autoconf), its default route, real packets, detach, gc and the reconciler."""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Interface, IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path

import pytest

from helpers import link_names, netns_files, sh
from netbay import AttachRequest, ContainerSpec, Host, NetworkSpec
from netbay.errors import ConfigError
from netbay.kernel.linux import LinuxKernel
from netbay.kernel.rtnetlink import Rtnetlink
from netbay.kernel.rtnl_wire6 import DEFAULT6, IFA_F_NODAD, Address6
from netbay.kernel.uplinks import forwarding_links
from netbay.model import Container, Endpoint, Network, SubnetConfig
from netbay.paths import Paths
from netbay.plan.naming import link_local
from netbay.reconcile.watch import Watch

pytestmark = pytest.mark.kernel

SUBNET6 = IPv6Network("fd12:3456::/64")
GATEWAY6 = IPv6Interface("fd12:3456::1/64")


def dual_stack(host: Host, name: str = "asgard") -> Network:
    return host.create_network(NetworkSpec(name=name, subnets=(SubnetConfig(SUBNET6),)))


def sleeper(host: Host, name: str, request: AttachRequest) -> tuple[Container, Endpoint]:
    container = host.create_container(ContainerSpec(command=("sleep", "infinity"), name=name,
                                                    networks=(request,)))
    (endpoint,) = host.store.endpoints(container_id=container.id)
    return container, endpoint


def addresses6(netns: Path | None, ifname: str) -> list[Address6]:
    with Rtnetlink(netns) as nl:
        index = nl.index(ifname)
        assert index is not None
        return [a for a in nl.addresses6(index) if not a.address.is_link_local]


def sysctl6(netns: Path | None, ifname: str, key: str) -> str:
    path = f"/proc/sys/net/ipv6/conf/{ifname}/{key}"
    if netns is None:
        return Path(path).read_text().strip()
    return run(netns, "cat", path).stdout.strip()


def run(netns: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={netns}", *cmd], capture_output=True, text=True,
                          timeout=30, check=check)


def ping6(netns: Path, address: IPv6Address) -> bool:
    return run(netns, "ping", "-6", "-c1", "-W2", str(address), check=False).returncode == 0


def test_a_dual_stack_bridge_holds_both_gateways_and_ipv6_is_static_on_it(host: Host) -> None:
    net = dual_stack(host)
    assert net.device is not None
    v4 = net.subnets4[0]
    with Rtnetlink(None) as nl:
        index = nl.index(net.device)
        assert nl.addresses(index) == [IPv4Interface((v4.gateway, v4.subnet.prefixlen))]
    (gateway,) = addresses6(None, net.device)
    assert gateway.address == GATEWAY6 and gateway.flags & IFA_F_NODAD and not gateway.tentative
    assert [sysctl6(None, net.device, k) for k in ("disable_ipv6", "accept_dad", "accept_ra")] \
        == ["0", "0", "0"]
    assert Path("/proc/sys/net/ipv6/conf/all/forwarding").read_text().strip() == "1"


def test_a_container_gets_its_ipv6_address_usable_at_once_and_its_default_route(
    host: Host,
) -> None:
    net = dual_stack(host)
    container, endpoint = sleeper(host, "web", AttachRequest("asgard"))
    netns = Path(str(container.netns))
    assert endpoint.address6 == IPv6Interface("fd12:3456::2/64")
    assert endpoint.address is not None and endpoint.address.ip in net.subnets4[0].subnet
    # right after create_container returns: not tentative, no DAD to wait for
    (address,) = addresses6(netns, "eth0")
    assert address.address == IPv6Interface("fd12:3456::2/64") and not address.tentative
    with Rtnetlink(netns) as nl:
        index = nl.index("eth0")
        assert nl.addresses(index) == [endpoint.address]
        assert [(r.destination, r.gateway) for r in nl.routes6() if r.gateway] == [
            (DEFAULT6, GATEWAY6.ip)]
        assert endpoint.mac is not None
        assert link_local(endpoint.mac) in {a.address.ip for a in nl.addresses6(index)}
    assert [sysctl6(netns, "eth0", k) for k in ("accept_ra", "autoconf", "accept_dad")] \
        == ["0", "0", "0"]
    assert endpoint.host_ifname is not None
    assert sysctl6(None, endpoint.host_ifname, "disable_ipv6") == "1"


def test_dual_stack_containers_reach_their_gateway_and_each_other_over_ipv6(
    host: Host,
) -> None:
    dual_stack(host)
    a, _ = sleeper(host, "a", AttachRequest("asgard"))
    b, endpoint_b = sleeper(host, "b", AttachRequest("asgard"))
    assert endpoint_b.address6 == IPv6Interface("fd12:3456::3/64")
    netns_a, netns_b = Path(str(a.netns)), Path(str(b.netns))
    assert ping6(netns_a, GATEWAY6.ip)
    assert ping6(netns_a, endpoint_b.address6.ip) and ping6(netns_b, IPv6Address("fd12:3456::2"))
    assert endpoint_b.address is not None
    assert run(netns_a, "ping", "-c1", "-W2", str(endpoint_b.address.ip)).returncode == 0


def test_the_kernel_alone_carries_ipv6_between_containers_of_a_bridge(
    host_ns: Path, tmp_path: Path
) -> None:
    """LinuxKernel's part without netbay's firewall: the packets the kernel side lets through
    (the firewall's IPv6 rules are another layer)."""
    kernel = LinuxKernel()
    made = [tmp_path / "ns-a", tmp_path / "ns-b"]
    try:
        kernel.ensure_bridge("k", "br-v6", None, [IPv4Interface("10.61.0.1/24"), GATEWAY6])
        kernel.enable_forwarding(6)
        for i, netns in enumerate(made, start=2):
            kernel.create_netns(netns)
            kernel.attach_veth(bridge="br-v6", bridge_key="k", host_ifname=f"v6h{i}",
                               ifname="eth0", netns=netns, mac=f"02:42:0a:3d:00:0{i}",
                               mtu=None, address=IPv4Interface(f"10.61.0.{i}/24"),
                               gateway=None, address6=IPv6Interface(f"fd12:3456::{i}/64"),
                               gateway6=GATEWAY6.ip)
        assert ping6(made[0], GATEWAY6.ip) and ping6(made[0], IPv6Address("fd12:3456::3"))
        assert ping6(made[1], IPv6Address("fd12:3456::2"))
    finally:
        for netns in made:
            if netns.exists():
                kernel.delete_netns(netns)
        kernel.close()


def test_an_ipv6_network_by_default_takes_a_ula_64_the_host_does_not_use(host: Host) -> None:
    first = host.create_network(NetworkSpec(name="first", ipv6=True))
    (subnet,) = [s.subnet for s in first.subnets6]
    assert isinstance(subnet, IPv6Network) and subnet.prefixlen == 64
    assert subnet.subnet_of(IPv6Network("fd00::/8"))
    host.remove_network("first")
    # the host itself now uses that /64: the next network skips it
    sh(f"ip link add taken6 type bridge && ip link set taken6 up && "
       f"ip -6 addr add {subnet[5]}/64 dev taken6 nodad")
    taken = host.kernel.taken_networks()
    assert subnet in taken
    assert not any(n.subnet_of(IPv6Network("fe80::/10")) for n in taken
                   if isinstance(n, IPv6Network))
    second = host.create_network(NetworkSpec(name="second", ipv6=True))
    assert [s.subnet for s in second.subnets6] != [subnet]
    _, endpoint = sleeper(host, "web", AttachRequest("second"))
    assert endpoint.address6 is not None and endpoint.address6.ip == second.subnets6[0].subnet[2]


def test_an_ipv6_only_network_gives_no_ipv4_address(host: Host) -> None:
    host.create_network(NetworkSpec(name="six", ipv4=False, ipv6=True,
                                    subnets=(SubnetConfig(SUBNET6),)))
    container, endpoint = sleeper(host, "web", AttachRequest("six"))
    netns = Path(str(container.netns))
    assert endpoint.address is None and endpoint.gateway is None
    assert endpoint.address6 == IPv6Interface("fd12:3456::2/64")
    with Rtnetlink(netns) as nl:
        index = nl.index("eth0")
        assert nl.addresses(index) == [] and nl.routes() == []
        assert DEFAULT6 in {r.destination for r in nl.routes6()}
    assert [a.address for a in addresses6(netns, "eth0")] == [endpoint.address6]


def test_a_static_ip6_is_given(host: Host) -> None:
    dual_stack(host)
    container, endpoint = sleeper(host, "web", AttachRequest("asgard",
                                                              ip6=IPv6Address("fd12:3456::99")))
    assert endpoint.address6 == IPv6Interface("fd12:3456::99/64")
    assert [a.address for a in addresses6(Path(str(container.netns)), "eth0")] == [
        IPv6Interface("fd12:3456::99/64")]


def test_an_ip6_outside_the_subnet_is_refused_and_changes_nothing(
    host: Host, paths: Paths
) -> None:
    dual_stack(host)
    before = (link_names(), list(host.store.dump()), netns_files(paths))
    with pytest.raises(ConfigError) as refused:
        sleeper(host, "web", AttachRequest("asgard", ip6=IPv6Address("fd99::5")))
    assert refused.value.field == "ip6"
    assert str(refused.value).startswith("invalid ip6 'fd99::5': ")
    assert (link_names(), list(host.store.dump()), netns_files(paths)) == before


def test_detach_removes_the_endpoint_and_its_addresses(host: Host) -> None:
    net = dual_stack(host)
    assert net.device is not None
    container, endpoint = sleeper(host, "web", AttachRequest("asgard"))
    host.disconnect("asgard", "web")
    assert endpoint.host_ifname not in link_names()
    assert "eth0" not in link_names(Path(str(container.netns)))
    assert host.store.endpoints(container_id=container.id) == []
    assert host.store.used_addresses(net.id, 6) == set()
    host.remove_container("web", force=True)
    host.remove_network("asgard")
    assert net.device not in link_names()


def test_gc_and_the_reconciler_leave_a_healthy_dual_stack_network_alone(host: Host) -> None:
    dual_stack(host)
    sleeper(host, "a", AttachRequest("asgard"))
    sleeper(host, "b", AttachRequest("asgard"))
    report = host.gc()
    assert (report.endpoints, report.containers, report.networks, report.orphan_links) == (
        [], [], [], [])
    for _ in range(2):
        result = host.reconcile(full=True)
        assert (result.repaired, result.failed, result.waiting) == ([], [], [])
    assert host.audit() == []


def test_the_reconciler_puts_back_a_deleted_ipv6_gateway(host: Host) -> None:
    net = dual_stack(host)
    assert net.device is not None
    sleeper(host, "web", AttachRequest("asgard"))
    host.reconcile(full=True)  # the pass that learns the bridge's index
    with Watch(host.reconcile_watched) as watch:
        assert not watch.wait(0.1)
        with Rtnetlink(None) as nl:
            index = nl.index(net.device)
            assert index is not None and nl.remove_address(index, GATEWAY6)
        assert watch.wait(2)  # the daemon's loop would look now, not at its next resync
    assert addresses6(None, net.device) == []
    result = host.reconcile()
    assert [str(d) for d in result.repaired] == [
        f"network asgard: {net.device} lost its address {GATEWAY6}"]
    (gateway,) = addresses6(None, net.device)
    assert gateway.address == GATEWAY6 and not gateway.tentative
    assert host.reconcile(full=True).repaired == []


def test_the_reconciler_puts_back_a_deleted_ipv6_subnet_route(host: Host) -> None:
    net = dual_stack(host)
    assert net.device is not None
    sleeper(host, "web", AttachRequest("asgard"))
    host.reconcile(full=True)
    sh(f"ip -6 route del {SUBNET6} dev {net.device}")
    assert str(SUBNET6) not in sh(f"ip -6 route show dev {net.device}").stdout
    result = host.reconcile()
    assert [str(d) for d in result.repaired] == [
        f"network asgard: route {SUBNET6} dev {net.device} missing"]
    assert f"{SUBNET6} proto kernel" in sh(f"ip -6 route show dev {net.device}").stdout
    assert host.reconcile(full=True).repaired == []


def test_the_ipv6_default_routes_link_is_an_uplink_for_the_flowtable(host: Host) -> None:
    """An IPv6 uplink that is not IPv4's (the flowtable hooks both, kernel/uplinks.py)."""
    sh("ip link add up6a type veth peer name up6b && ip link set up6a up && ip link set up6b up")
    sh("sysctl -qw net.ipv6.conf.up6a.disable_ipv6=0")
    sh("ip -6 addr add fd99::1/64 dev up6a nodad && ip -6 route add default via fd99::2")
    try:
        links = forwarding_links()
        assert "up6a" in links.uplinks and "up6b" not in links.uplinks
    finally:
        sh("ip link del up6a")
