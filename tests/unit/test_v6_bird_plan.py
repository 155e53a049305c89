"""BIRD 2's configuration dual stack (plan/bird.py, plan/bird6.py): an ipv6 channel on each
IPv4 session, next hop the node's IPv6 underlay address, exporting only the node's IPv6
blocks and importing only the routed IPv6 subnets' other blocks; a kernel protocol for IPv6;
the real `bird -p` accepting the text; a v4-only node's text unchanged. engine/bgp.py's plan
from the shares (IPv6 only where a routed network is dual-stack and the node has an IPv6
underlay address), and `birdc show protocols all` counted over both channels."""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import pytest

from netbay.drivers.routed import local_options
from netbay.engine.bgp import NodeBgp, plan_settings
from netbay.errors import ConfigError
from netbay.kernel.bird import parse_sessions
from netbay.model import Network, SubnetConfig
from netbay.plan.bird import BgpSettings, ExternalPeer, MeshPeer, render
from netbay.plan.routed import Encapsulation

ME, ME6 = IPv4Address("192.0.2.12"), IPv6Address("2001:db8::12")
BLOCKS = (IPv4Network("10.244.0.64/26"),)
BLOCKS6 = (IPv6Network("fd00:244::40/122"), IPv6Network("fd00:244::1:0/122"))
POOL6 = IPv6Network("fd00:244::/48")
LOWER = MeshPeer("node-a", IPv4Address("192.0.2.11"), 64512)
HIGHER = MeshPeer("node-c", IPv4Address("192.0.2.13"), 64512)
TOR = ExternalPeer("tor1", IPv4Address("192.0.2.1"), 65001)
V6_FIELDS = {"address6": ME6, "blocks6": BLOCKS6, "pools6": (POOL6,)}


def settings(**changes: object) -> BgpSettings:
    fields: dict[str, object] = {"router_id": ME, "asn": 64512, "blocks": BLOCKS,
                                 "mesh": (LOWER, HIGHER), "external": (TOR,)}
    fields.update(changes)
    return BgpSettings(**fields)  # type: ignore[arg-type]


def section(text: str, header: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(header)
    return lines[start + 1:lines.index("}", start)]


def session_lines(text: str, name: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(f"protocol bgp {name} {{")
    return lines[start + 1:lines.index("}", lines.index("  };", lines.index("  ipv4 {", start)))]


def test_each_ipv4_session_gets_an_ipv6_channel_with_the_nodes_ipv6_next_hop() -> None:
    text = render(settings(**V6_FIELDS))
    for name, export in (("mesh_192_0_2_11", "netbay_export"),
                         ("peer_192_0_2_1", "netbay_export")):
        lines = session_lines(text, name)
        channel = lines[lines.index("  ipv6 {") + 1:]
        assert channel == ["    next hop address 2001:db8::12;",
                           "    import filter netbay_import6;",
                           f"    export filter {export}6;", "  };"]


def test_only_the_own_ipv6_blocks_go_out_and_only_others_of_the_pools_come_in() -> None:
    text = render(settings(**V6_FIELDS))
    assert section(text, "filter netbay_export6 {") == [
        '  if proto = "netbay_blocks6" && net ~ [ fd00:244::40/122, fd00:244::1:0/122 ] '
        "then accept;", "  reject;"]
    assert section(text, "filter netbay_import6 {") == [
        "  if net ~ [ fd00:244::40/122+, fd00:244::1:0/122+ ] then reject;",
        "  if net ~ [ fd00:244::/48+ ] then accept;", "  reject;"]
    assert section(text, "protocol static netbay_blocks6 {") == [
        "  ipv6;", "  route fd00:244::40/122 blackhole;", "  route fd00:244::1:0/122 blackhole;"]


def test_learned_ipv6_routes_go_to_the_kernel_like_the_ipv4_ones() -> None:
    text = render(settings(**V6_FIELDS, kernel_table=100))
    assert section(text, "protocol kernel netbay_kernel6 {") == [
        "  ipv6 {", "    import where krt_source != 57;", "    export where source = RTS_BGP;",
        "  };", "  kernel table 100;", "  learn;", "  persist;", "  graceful restart on;",
        "  scan time 10;"]
    assert section(text, "protocol direct {") == ["  ipv4;", "  ipv6;"]


def test_cross_subnet_ipv6_routes_go_to_the_kernel_only_via_the_own_ipv6_segment() -> None:
    text = render(settings(**V6_FIELDS, underlay6=(IPv6Network("2001:db8::/64"),),
                           cross_subnet6=(POOL6,)))
    assert section(text, "filter netbay_install6 {") == [
        "  if source != RTS_BGP then reject;",
        "  if net ~ [ fd00:244::/48+ ] && !(bgp_next_hop ~ 2001:db8::/64) then reject;",
        "  accept;"]
    assert "    export filter netbay_install6;" in section(
        text, "protocol kernel netbay_kernel6 {")


def test_without_an_ipv6_address_the_text_is_the_ipv4_one_byte_for_byte() -> None:
    v4 = render(settings())
    assert render(settings(blocks6=BLOCKS6, pools6=(POOL6,))) == v4
    assert "ipv6" not in v4 and "6 {" not in v4
    # the dual-stack text is the IPv4 one with lines added, none changed or moved
    dual = render(settings(**V6_FIELDS)).splitlines()
    remaining = iter(dual)
    assert all(any(line == kept for kept in remaining) for line in v4.splitlines())


@pytest.mark.parametrize(("changes", "message"), [
    ({"address6": IPv4Address("192.0.2.1")}, "invalid address6 '192.0.2.1': not an IPv6 address"),
    ({"blocks6": (IPv4Network("10.0.0.0/24"),)},
     "invalid block6 '10.0.0.0/24': not an IPv6 network"),
    ({"blocks6": (IPv6Network("fd00::1/128"),)},
     "invalid block6 'fd00::1/128': a block, not a host route"),
    ({"blocks6": (IPv6Network("fd00::/64"), IPv6Network("fd00::40/122"))},
     "invalid block6 'fd00::40/122': overlaps block fd00::/64"),
])
def test_bad_ipv6_settings_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        settings(**changes)
    assert str(refused.value) == message


@pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD 2 not installed")
@pytest.mark.parametrize("changes", [
    V6_FIELDS,
    {**V6_FIELDS, "blocks6": ()},
    {**V6_FIELDS, "underlay6": (IPv6Network("2001:db8::/64"),), "cross_subnet6": (POOL6,),
     "tunnelled6": (IPv6Network("fd00:999::/48"),)},
    {**V6_FIELDS, "mesh": (MeshPeer("node-a", IPv4Address("192.0.2.11"), 64512,
                                    rr_client=True),)},
])
def test_bird_accepts_the_dual_stack_configuration(changes: dict[str, object],
                                                   tmp_path: Path) -> None:
    config = tmp_path / "bird.conf"
    config.write_text(render(settings(**changes)))
    checked = subprocess.run(["bird", "-p", "-c", str(config)], capture_output=True, text=True,
                             timeout=30, check=False)
    assert (checked.returncode, checked.stderr) == (0, "")


# --- engine/bgp.py's plan -----------------------------------------------------------------
def share(pool6: IPv6Network | None, *subnets: IPv4Network | IPv6Network) -> Network:
    options = local_options(IPv4Network("10.244.0.0/16"), 7, Encapsulation.CROSS_SUBNET,
                            64512, 1450, pool6)
    return Network(id="f" * 64, name="calico", driver="routed", created="",
                   subnets=tuple(SubnetConfig(s) for s in subnets), options=dict(options))


def test_the_plan_carries_ipv6_blocks_when_the_node_has_an_ipv6_underlay_address() -> None:
    dual = share(POOL6, BLOCKS[0], BLOCKS6[1], BLOCKS6[0])
    planned = plan_settings(NodeBgp("n1", ME, (IPv4Network("192.0.2.0/24"),), [dual],
                                    address6=ME6, underlay6=(IPv6Network("2001:db8::/64"),)))
    assert planned is not None
    assert (planned.address6, planned.blocks6, planned.pools6, planned.cross_subnet6,
            planned.underlay6, planned.blocks) == (
        ME6, BLOCKS6, (POOL6,),  # sorted, whatever order the share holds them in
        (POOL6,), (IPv6Network("2001:db8::/64"),), BLOCKS)
    no_address6 = plan_settings(NodeBgp("n1", ME, (), [dual]))
    assert no_address6 is not None and not no_address6.ipv6 and no_address6.blocks6 == ()


def test_a_node_of_ipv4_only_networks_plans_bird_as_before_even_with_an_ipv6_address() -> None:
    v4 = share(None, BLOCKS[0])
    assert plan_settings(NodeBgp("n1", ME, (), [v4], address6=ME6)) == plan_settings(
        NodeBgp("n1", ME, (), [v4]))


SHOW = """\
BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
mesh_192_0_2_11 BGP        ---        up     1700000000    Established
  Description:    node-a
  BGP state:          Established
    Neighbor address: 192.0.2.11
  Channel ipv4
    State:          UP
    Routes:         1 imported, 1 exported, 1 preferred
  Channel ipv6
    State:          UP
    Routes:         3 imported, 0 filtered, 2 exported, 3 preferred

"""


def test_a_sessions_routes_are_counted_over_both_channels() -> None:
    (session,) = parse_sessions(SHOW)
    assert (session.imported, session.exported, session.neighbor) == (4, 3, "192.0.2.11")
