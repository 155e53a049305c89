"""macvlan networks through the library, on this kernel: links in and out of a running
container's namespace, the host shim after a restart, audit."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from helpers import link_names
from lans import host_ip, link_details
from netbay import AttachRequest, ContainerSpec, Host, NetworkSpec, SubnetConfig
from netbay.paths import Paths

pytestmark = pytest.mark.kernel

SHIMMED = NetworkSpec(
    "shimmed", "macvlan", (SubnetConfig(IPv4Network("10.80.0.0/24")),),
    options={"parent": "phys0", "host_link": "true"},
)


def test_connect_and_disconnect_move_a_link_in_and_out_of_a_container(host: Host) -> None:
    host_ip("link add phys0 type veth peer name phys0p", "link set phys0 up")
    host.create_network(NetworkSpec("asgard"))
    host.create_network(SHIMMED)
    made = host.create_container(
        ContainerSpec(("sleep", "infinity"), "env1", networks=(AttachRequest("asgard"),))
    )
    assert made.netns is not None
    endpoint = host.connect("shimmed", "env1", IPv4Address("10.80.0.9"))
    assert (endpoint.ifname, endpoint.host_ifname) == ("eth1", None)
    eth1 = link_details("eth1", made.netns)
    assert eth1["linkinfo"]["info_kind"] == "macvlan" and eth1["address"] == "02:42:0a:50:00:09"
    host.disconnect("shimmed", "env1")
    assert "eth1" not in link_names(Path(made.netns))
    assert "eth0" in link_names(Path(made.netns))
    assert host.audit() == []


def test_the_host_shim_is_audited_and_remade_on_start_up(paths: Paths) -> None:
    host_ip("link add phys0 type veth peer name phys0p", "link set phys0 up")
    with Host(paths) as host:
        net = host.create_network(SHIMMED)
        shim = "nbs" + net.id[:12]
        host.kernel.remove_link(shim)
        assert host.audit() == [f"network shimmed: host link {shim} missing"]
    with Host(paths) as host:
        assert link_details(shim)["linkinfo"]["info_kind"] == "macvlan"
        assert host.audit() == []
        host.remove_network("shimmed")
        assert shim not in link_names()
