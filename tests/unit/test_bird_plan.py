"""BIRD 2's configuration (plan/bird.py): the lines that decide what a node announces, what it
takes and where that goes, one passive side per mesh pair, reflectors and external peers,
graceful restart well under 240 s; bad settings refused in one line naming the field. And
the supervisor's side that needs no BIRD (kernel/bird.py): `birdc show protocols all`
parsed into sessions, a missing BIRD refused with nothing written."""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path

import pytest

from netbay.errors import ConfigError, KernelError
from netbay.kernel.bird import BgpSession, BirdSupervisor, parse_sessions
from netbay.kernel.rtnl_wire import RTPROT_NETBAY
from netbay.plan.bird import (
    MAX_ASN,
    NETBAY_PROTOCOL,
    BgpSettings,
    ExternalPeer,
    MeshPeer,
    protocol_name,
    render,
)

ME = IPv4Address("192.0.2.12")
BLOCKS = (IPv4Network("10.244.0.64/26"), IPv4Network("10.244.1.0/26"))
LOWER = MeshPeer("node-a", IPv4Address("192.0.2.11"), 64512)
HIGHER = MeshPeer("node-c", IPv4Address("192.0.2.13"), 64512)
TOR = ExternalPeer("tor1", IPv4Address("192.0.2.1"), 65001)


def settings(**changes: object) -> BgpSettings:
    fields: dict[str, object] = {"router_id": ME, "asn": 64512, "blocks": BLOCKS,
                                 "mesh": (LOWER, HIGHER)}
    fields.update(changes)
    return BgpSettings(**fields)  # type: ignore[arg-type]


def section(text: str, header: str) -> list[str]:
    """The lines of the block that starts with HEADER, up to its closing brace."""
    lines = text.splitlines()
    start = lines.index(header)
    end = lines.index("}", start)
    return lines[start + 1:end]


def test_globals_set_the_router_id_and_a_30_second_restart_wait() -> None:
    text = render(settings())
    assert "router id 192.0.2.12;" in text.splitlines()
    assert "graceful restart wait 30;" in text.splitlines()
    assert text.startswith("# Written by netbay")


def test_the_blocks_are_blackholes_and_all_that_is_exported() -> None:
    text = render(settings())
    assert section(text, "protocol static netbay_blocks {") == [
        "  ipv4;", "  route 10.244.0.64/26 blackhole;", "  route 10.244.1.0/26 blackhole;"]
    assert section(text, "filter netbay_export {") == [
        '  if proto = "netbay_blocks" && net ~ [ 10.244.0.64/26, 10.244.1.0/26 ] then accept;',
        "  reject;"]


def test_routes_inside_the_own_blocks_are_refused_the_rest_taken() -> None:
    assert section(render(settings()), "filter netbay_import {") == [
        "  if net ~ [ 10.244.0.64/26+, 10.244.1.0/26+ ] then reject;", "  accept;"]


def test_without_blocks_nothing_is_exported() -> None:
    text = render(settings(blocks=()))
    assert "filter netbay_export { reject; }" in text.splitlines()
    assert "protocol static" not in text


def test_learned_routes_go_to_the_kernel_table_and_persist() -> None:
    kernel = section(render(settings(kernel_table=100)), "protocol kernel netbay_kernel {")
    assert kernel == [
        "  ipv4 {", "    import where krt_source != 57;", "    export where source = RTS_BGP;",
        "  };", "  kernel table 100;", "  learn;", "  persist;", "  graceful restart on;",
        "  scan time 10;"]
    assert NETBAY_PROTOCOL == RTPROT_NETBAY


def test_the_higher_address_of_each_mesh_pair_is_passive() -> None:
    text = render(settings())
    towards_lower = section(text, "protocol bgp mesh_192_0_2_11 {")
    assert towards_lower[:4] == ['  description "node-a";', "  local 192.0.2.12 as 64512;",
                                 "  neighbor 192.0.2.11 as 64512;", "  passive on;"]
    assert "  passive on;" not in section(text, "protocol bgp mesh_192_0_2_13 {")


def test_every_session_restarts_gracefully_with_the_filters() -> None:
    lines = section(render(settings(graceful_restart=20)), "protocol bgp mesh_192_0_2_13 {")
    assert lines[-9:] == [
        "  graceful restart on;", "  graceful restart time 20;", "  connect delay time 1;",
        "  connect retry time 5;", "  error wait time 1, 30;", "  ipv4 {",
        "    import filter netbay_import;", "    export filter netbay_export;", "  };"]


def test_a_reflector_marks_its_clients_with_its_cluster_id() -> None:
    client = MeshPeer("node-d", IPv4Address("192.0.2.14"), 64512, rr_client=True)
    text = render(settings(mesh=(LOWER, client), cluster_id=IPv4Address("192.0.2.250")))
    lines = section(text, "protocol bgp mesh_192_0_2_14 {")
    assert lines[3:5] == ["  rr client;", "  rr cluster id 192.0.2.250;"]
    assert "  rr client;" not in section(text, "protocol bgp mesh_192_0_2_11 {")
    default = render(settings(mesh=(client,)))
    assert "  rr cluster id 192.0.2.12;" in section(default, "protocol bgp mesh_192_0_2_14 {")


def test_an_external_peer_is_ebgp_and_always_active() -> None:
    text = render(settings(external=(TOR,)))
    assert section(text, "protocol bgp peer_192_0_2_1 {")[:4] == [
        '  description "tor1";', "  local 192.0.2.12 as 64512;",
        "  neighbor 192.0.2.1 as 65001;", "  graceful restart on;"]


def test_addresses_given_as_text_are_taken() -> None:
    made = BgpSettings("192.0.2.12", 64512, mesh=(MeshPeer("n", "192.0.2.5", 1),))  # type: ignore[arg-type]
    assert made.router_id == ME and made.mesh[0].address == IPv4Address("192.0.2.5")
    assert protocol_name("mesh", made.mesh[0].address) == "mesh_192_0_2_5"


def test_a_reflector_exports_its_blocks_and_what_the_mesh_gave_it() -> None:
    client = MeshPeer("node-d", IPv4Address("192.0.2.14"), 64512, rr_client=True)
    text = render(settings(mesh=(LOWER, client), external=(TOR,)))
    assert section(text, "filter netbay_reflect {") == [
        '  if proto = "netbay_blocks" && net ~ [ 10.244.0.64/26, 10.244.1.0/26 ] then accept;',
        '  if proto ~ "mesh_*" then accept;', "  reject;"]
    for mesh in ("mesh_192_0_2_11", "mesh_192_0_2_14"):
        assert "    export filter netbay_reflect;" in section(text, f"protocol bgp {mesh} {{")
    assert "    export filter netbay_export;" in section(text, "protocol bgp peer_192_0_2_1 {")
    bare = render(settings(blocks=(), mesh=(client,)))
    assert section(bare, "filter netbay_reflect {") == ['  if proto ~ "mesh_*" then accept;',
                                                        "  reject;"]
    assert "netbay_reflect" not in render(settings())


def test_routes_vxlan_carries_are_kept_out_of_the_kernel() -> None:
    text = render(settings(underlay=(IPv4Network("192.0.2.0/24"), IPv4Network("10.9.0.0/16")),
                           cross_subnet=(IPv4Network("10.244.0.0/16"),),
                           tunnelled=(IPv4Network("10.99.0.0/16"),)))
    assert section(text, "filter netbay_install {") == [
        "  if source != RTS_BGP then reject;",
        "  if net ~ [ 10.99.0.0/16+ ] then reject;",
        "  if net ~ [ 10.244.0.0/16+ ] && !(bgp_next_hop ~ 192.0.2.0/24 || "
        "bgp_next_hop ~ 10.9.0.0/16) then reject;",
        "  accept;"]
    assert "    export filter netbay_install;" in section(text, "protocol kernel netbay_kernel {")
    alone = render(settings(cross_subnet=(IPv4Network("10.244.0.0/16"),)))
    assert "  if net ~ [ 10.244.0.0/16+ ] then reject;" in section(alone, "filter netbay_install {")
    assert "netbay_install" not in render(settings())


@pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD 2 is not installed")
def test_bird_takes_the_whole_configuration(tmp_path: Path) -> None:
    client = MeshPeer("node-d", IPv4Address("192.0.2.14"), 64512, rr_client=True)
    config = tmp_path / "bird.conf"
    config.write_text(render(settings(
        mesh=(LOWER, client), external=(TOR,), underlay=(IPv4Network("192.0.2.0/24"),),
        cross_subnet=(IPv4Network("10.244.0.0/16"),), tunnelled=(IPv4Network("10.99.0.0/16"),))))
    checked = subprocess.run(["bird", "-p", "-c", str(config)], capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize(("build", "message"), [
    (lambda: settings(asn=0), f"invalid asn 0: out of range 1-{MAX_ASN} (this node)"),
    (lambda: settings(asn=MAX_ASN + 1),
     f"invalid asn {MAX_ASN + 1}: out of range 1-{MAX_ASN} (this node)"),
    (lambda: MeshPeer("node-x", IPv4Address("192.0.2.9"), 0),
     f"invalid asn 0: out of range 1-{MAX_ASN} (peer node-x)"),
    (lambda: settings(router_id=IPv6Address("2001:db8::1")),
     "invalid router_id '2001:db8::1': not an IPv4 address"),
    (lambda: settings(router_id="node-a"), "invalid router_id 'node-a': not an IPv4 address"),
    (lambda: MeshPeer("node-x", "fe80::1", 1),  # type: ignore[arg-type]
     "invalid peer address 'fe80::1': not an IPv4 address"),
    (lambda: settings(mesh=(LOWER, MeshPeer("node-z", LOWER.address, 64512))),
     "invalid peer address '192.0.2.11': listed twice"),
    (lambda: settings(mesh=(LOWER,), external=(ExternalPeer("t", LOWER.address, 65001),)),
     "invalid peer address '192.0.2.11': listed twice"),
    (lambda: settings(mesh=(LOWER, MeshPeer("node-a", IPv4Address("192.0.2.20"), 64512))),
     "invalid peer name 'node-a': listed twice"),
    (lambda: settings(mesh=(MeshPeer("self", ME, 64512),)),
     "invalid peer address '192.0.2.12': this node's own"),
    (lambda: MeshPeer('a" ; evil', IPv4Address("192.0.2.9"), 1),
     "invalid peer name 'a\" ; evil': letters, digits, '.', '_' or '-' only, at most 63"),
    (lambda: settings(mesh=(MeshPeer("n", IPv4Address("192.0.2.9"), 65000, rr_client=True),)),
     "invalid rr_client 'n': a reflector's clients share its ASN"),
    (lambda: settings(blocks=(IPv4Network("10.244.0.5/32"),)),
     "invalid block '10.244.0.5/32': a block, not a host route"),
    (lambda: settings(blocks=(IPv4Network("10.244.0.0/24"), IPv4Network("10.244.0.64/26"))),
     "invalid block '10.244.0.64/26': overlaps block 10.244.0.0/24"),
    (lambda: settings(graceful_restart=0), "invalid graceful_restart 0: out of range 1-4095"),
    (lambda: settings(kernel_table=0), "invalid kernel_table 0: out of range 1-4294967295"),
    (lambda: settings(underlay=("192.0.2.0/24",)),
     "invalid underlay '192.0.2.0/24': not an IPv4 network"),
])
def test_bad_settings_are_refused_in_one_line(build: object, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        build()  # type: ignore[operator]
    assert str(refused.value) == message


# --- the supervisor, without BIRD ------------------------------------------------------
SHOW_PROTOCOLS = """\
BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     1796140436

netbay_kernel Kernel     master4    up     1796140436
  Channel ipv4
    State:          UP
    Routes:         0 imported, 1 exported, 0 preferred

mesh_192_0_2_12 BGP        ---        up     1796140437    Established
  Description:    node-b
  BGP state:          Established
    Neighbor address: 192.0.2.12
    Neighbor AS:      64512
    Local capabilities
      Graceful restart
        Restart time: 30
    Session:          internal multihop AS4
  Channel ipv4
    State:          UP
    Table:          master4
    Routes:         2 imported, 1 filtered, 3 exported, 2 preferred
    BGP Next hop:   192.0.2.11

mesh_192_0_2_99 BGP        ---        start  1796140436    Active        Socket: No route to host
  Description:    node-gone
  BGP state:          Active
    Neighbor address: 192.0.2.99
    Connect delay:    0.714/1
    Last error:       Socket: No route to host
  Channel ipv4
    State:          DOWN

"""


def test_sessions_are_read_from_show_protocols_all() -> None:
    assert parse_sessions(SHOW_PROTOCOLS) == [
        BgpSession("mesh_192_0_2_12", "node-b", "192.0.2.12", "Established", 1796140437,
                   "Established", imported=2, exported=3),
        BgpSession("mesh_192_0_2_99", "node-gone", "192.0.2.99", "Active", 1796140436,
                   "Active Socket: No route to host", imported=0, exported=0),
    ]
    assert [s.established for s in parse_sessions(SHOW_PROTOCOLS)] == [True, False]


def test_a_missing_bird_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "bird.conf"
    config.write_text("old\n")
    supervisor = BirdSupervisor(config, tmp_path / "bird.ctl", tmp_path / "bird.log",
                                bird=str(tmp_path / "no-bird"))
    with pytest.raises(KernelError) as refused:
        supervisor.apply(render(settings()))
    assert str(refused.value) == (f"{tmp_path / 'no-bird'} is not installed "
                                  "(Debian: apt-get install bird2)")
    assert config.read_text() == "old\n" and sorted(tmp_path.iterdir()) == [config]


def test_a_control_socket_path_too_long_for_unix_sockets_is_refused(tmp_path: Path) -> None:
    long = tmp_path / ("s" * 120)
    with pytest.raises(ConfigError, match="^invalid control socket .*: longer than 107 bytes$"):
        BirdSupervisor(tmp_path / "bird.conf", long, tmp_path / "bird.log")
