"""capture: which interface, which tcpdump command line, where the CLI's options go; pure."""

from __future__ import annotations

import pytest

from netbay.cli.main import build_parser
from netbay.cli.observe import _capture_args
from netbay.errors import ConfigError
from netbay.observe.capture import target_for_endpoint, target_for_network, tcpdump_argv


def test_targets() -> None:
    assert target_for_network({"name": "neta", "driver": "bridge", "device": "br-a"}) == {
        "interface": "br-a", "netns": "", "what": "bridge br-a of network neta"}
    assert target_for_network({"name": "mv", "driver": "macvlan", "device": "eth1"})[
        "what"] == "parent eth1 of network mv"
    with pytest.raises(ConfigError, match="invalid capture 'host': the host network has no"):
        target_for_network({"name": "host", "driver": "host", "device": None})
    veth = target_for_endpoint("a1", {"host_ifname": "nbv1", "ifname": "eth0",
                                      "network": "neta"}, "/run/netns/x")
    assert (veth["interface"], veth["netns"]) == ("nbv1", "")
    inside = target_for_endpoint("m1", {"host_ifname": None, "ifname": "eth0",
                                        "network": "mv"}, "/run/netns/x")
    assert (inside["interface"], inside["netns"]) == ("eth0", "/run/netns/x")


def test_tcpdump_command_lines() -> None:
    assert tcpdump_argv("nbv1", ["icmp"], None, 2, "/usr/bin/tcpdump") == [
        "/usr/bin/tcpdump", "-i", "nbv1", "-n", "-l", "-c", "2", "icmp"]
    assert tcpdump_argv("br-a", [], "x.pcap", None, "/usr/bin/tcpdump") == [
        "/usr/bin/tcpdump", "-i", "br-a", "-n", "-w", "x.pcap", "-U"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["a1", "icmp"], ("a1", None, None, None, ["icmp"])),
        (["a1", "-c", "2", "-w", "f", "icmp", "and", "host", "1.2.3.4"],
         ("a1", 2, "f", None, ["icmp", "and", "host", "1.2.3.4"])),
        (["-c", "3", "neta"], ("neta", 3, None, None, [])),
        (["a1", "-c", "2", "--", "-v", "icmp"], ("a1", 2, None, None, ["-v", "icmp"])),
        (["a1", "--network", "x", "port", "80"], ("a1", None, None, "x", ["port", "80"])),
    ],
)
def test_options_before_or_after_the_target(argv: list[str], expected: tuple[object, ...]) -> None:
    args = _capture_args(build_parser().parse_args(["capture", *argv]))
    assert (args.target, args.count, args.write, args.network, args.expression) == expected
