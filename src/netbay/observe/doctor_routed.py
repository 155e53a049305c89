"""The doctor's check of routed networks' reverse-path filtering.

A routed container's veth is strict (rp_filter 1, written at attach): a packet in from it must
come from an address the host routes back out of it, so a container cannot send as another.
The kernel applies the larger of `all` and the device's value, so `all` at 2 (loose, systemd's
default on many distributions) quietly makes every veth loose. Routing between the nodes is
symmetric (a peer's block is routed back the way its packets come: BGP's routes on the
underlay, netbay's through the tunnel), so nothing of netbay needs loose mode there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .doctor import OK, WARN, Finding

CHECK = "rp_filter routed"


def check_routed_rp_filter(routed_ports: Sequence[str], rp_filter: Mapping[str, int]) -> Finding:
    """ROUTED_PORTS: the host ends of the routed networks' veths; RP_FILTER: effective values."""
    if not routed_ports:
        return Finding(CHECK, OK, "no container on a routed network")
    loose = sorted(p for p in routed_ports if rp_filter.get(p, 1) != 1)
    if not loose:
        return Finding(CHECK, OK, f"strict on all {len(routed_ports)} routed veths: no "
                       "container can send as another's address")
    shown = ", ".join(loose[:3]) + (f" and {len(loose) - 3} more" if len(loose) > 3 else "")
    cause = "net.ipv4.conf.all.rp_filter" if rp_filter.get("all", 0) > 1 else "their rp_filter"
    return Finding(
        CHECK, WARN,
        f"{cause} makes reverse-path filtering loose on {shown}: a container on a routed "
        "network can send as another container's address",
        "sysctl -w net.ipv4.conf.all.rp_filter=1 (the routes between nodes are symmetric: "
        "strict mode drops nothing of netbay's)")
