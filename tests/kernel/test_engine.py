"""The library (netbay.Host) against the real kernel, in a throwaway host namespace."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network

import pytest

from helpers import link_names
from netbay import AttachRequest, ContainerSpec, Host, NetworkSpec
from netbay.kernel.netlink import open_iproute
from netbay.kernel.rtnetlink import Rtnetlink
from netbay.paths import Paths

pytestmark = pytest.mark.kernel

DEAD_OWNER = "1:1"  # pid 1 never started at tick 1: an owner that is certainly gone


def sleeper(name: str, network: str = "asgard") -> ContainerSpec:
    return ContainerSpec(command=("sleep", "infinity"), name=name,
                         networks=(AttachRequest(network),))


def test_default_bridge_and_new_networks_skip_subnets_the_host_uses(paths: Paths) -> None:
    with Rtnetlink(None) as nl:
        index, _ = nl.ensure_bridge("ext0", None)
        nl.ensure_address(index, IPv4Interface("172.17.9.1/24"))
        nl.ensure_address(index, IPv4Interface("172.18.5.1/24"))
    with Host(paths) as host:
        bridge = host.network("bridge")
        assert bridge.options["com.docker.network.bridge.name"] == "netbay0"
        assert bridge.device is None and "netbay0" not in link_names()  # made when first used
        assert bridge.subnets[0].subnet == IPv4Network("172.19.0.0/16")
        created = host.create_network(NetworkSpec(name="asgard"))
        assert created.subnets[0].subnet == IPv4Network("172.20.0.0/16")
        assert str(created.subnets[0].gateway) == "172.20.0.1"


def test_bridges_are_remade_on_start_up(paths: Paths) -> None:
    with Host(paths) as host:
        net = host.create_network(NetworkSpec(name="asgard"))
        host.create_container(sleeper("env1", "bridge"))  # the default bridge is in use
        host.kernel.remove_link("netbay0")
        assert net.device is not None
        host.kernel.remove_link(net.device)
    with Host(paths):
        assert {"netbay0", net.device} <= link_names()


def test_gc_undoes_an_attach_whose_owner_died(host: Host) -> None:
    host.create_network(NetworkSpec(name="asgard"))
    container = host.create_container(sleeper("env1"))
    (endpoint,) = host.store.endpoints(container_id=container.id)
    host.store.update_endpoint(endpoint.id, state="creating", owner=DEAD_OWNER)
    assert endpoint.host_ifname in link_names()

    report = host.gc()
    assert report.endpoints == [endpoint.host_ifname]
    assert endpoint.host_ifname not in link_names()
    assert host.store.endpoints(container_id=container.id) == []
    assert host.store.used_addresses(endpoint.network_id) == set()


def test_gc_leaves_operations_of_a_live_owner_alone(host: Host) -> None:
    host.create_network(NetworkSpec(name="asgard"))
    container = host.create_container(sleeper("env1"))
    (endpoint,) = host.store.endpoints(container_id=container.id)
    host.store.update_endpoint(endpoint.id, state="creating", owner=host.owner)
    assert host.gc().endpoints == []
    assert endpoint.host_ifname in link_names()


def test_gc_removes_a_container_caught_mid_creation(host: Host) -> None:
    host.create_network(NetworkSpec(name="asgard"))
    container = host.create_container(sleeper("env1"))
    assert container.netns is not None
    host.store.update_container(container.id, state="creating", owner=DEAD_OWNER)
    report = host.gc()
    assert report.containers == ["env1"]
    assert host.store.containers() == [] and host.store.endpoints() == []
    assert not paths_exist(container.netns, str(host.paths.container_dir(container.id)))
    assert host.audit() == []


def test_gc_removes_unrecorded_ports_of_netbay_bridges(host: Host) -> None:
    net = host.create_network(NetworkSpec(name="asgard"))
    assert net.device is not None
    with Rtnetlink(None) as nl, open_iproute() as ipr:
        bridge = nl.index(net.device)
        assert bridge is not None
        ipr.link("add", ifname="stray0", kind="veth", peer="stray1", master=bridge)
    assert host.audit() == [f"orphan port stray0 on {net.device}"]
    assert host.gc().orphan_links == ["stray0"]
    assert {"stray0", "stray1"} & link_names() == set()


def test_remove_network_refuses_while_endpoints_exist(host: Host) -> None:
    host.create_network(NetworkSpec(name="asgard"))
    host.create_container(sleeper("env1"))
    with pytest.raises(Exception, match="has active endpoints"):
        host.remove_network("asgard")
    host.remove_container("env1", force=True)
    host.remove_network("asgard")
    assert [n.name for n in host.networks()] == ["bridge", "host", "none"]


def paths_exist(*paths: str) -> bool:
    import os

    return any(os.path.exists(p) for p in paths)


def test_a_full_bridge_refuses_the_next_container_clearly(host: Host, paths: Paths) -> None:
    """A Linux bridge numbers its ports 1..1023: the 1,024th container gets one clear line
    (the kernel's own error is "Exchange full") and nothing of it is left."""
    from helpers import snapshot
    from netbay.errors import ConflictError
    from netbay.model import SubnetConfig

    host.create_network(NetworkSpec(name="big", subnets=(SubnetConfig(
        IPv4Network("10.150.0.0/20")),)))
    for i in range(1023):
        host.create_container(ContainerSpec(command=("true",), name=f"c{i}",
                                            networks=(AttachRequest("big"),)))
    before = snapshot(paths)
    with pytest.raises(ConflictError) as refused:
        host.create_container(ContainerSpec(command=("true",), name="one-more",
                                            networks=(AttachRequest("big"),)))
    assert str(refused.value) == (
        "network big is full: a Linux bridge takes at most 1023 ports, so 1023 containers; "
        "use another network for more")
    assert snapshot(paths) == before
