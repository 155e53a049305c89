"""The reconciler keeps what a routed share holds on its host (issue 15), on the multi-host
harness (tests/cluster.py): h1 and h2 on one segment, a routed network with a container on
each. The block's blackhole (protocol 57) and the block gateway's host-scope /32 on lo (where
netbay's DNS answers the host's containers) are put back when someone deletes them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Network

import pytest

from cluster import Cluster, ClusterHost, cluster_fixture
from helpers import wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

cluster = cluster_fixture(hosts=2)
POOL = "10.93.0.0/16"
REPAIRED = 2.0  # seconds: the reconciler hears the deletion; its resync is the backstop


@pytest.fixture(scope="module")
def calico(cluster: Cluster) -> Iterator[Cluster]:
    cluster.routed_network("calico", POOL)
    yield cluster


def _ping(host: ClusterHost, container: str, target: str) -> bool:
    return host.netbay("exec", container, "--", "ping", "-c", "1", "-W", "2", target,
                       check=False).returncode == 0


def _resolved(host: ClusterHost, container: str, name: str) -> str:
    found = host.netbay("exec", container, "--", "getent", "hosts", name, check=False)
    return found.stdout.split()[0] if found.returncode == 0 else ""


def _held(host: ClusterHost, block: str, gateway: str) -> tuple[bool, bool]:
    """Whether HOST holds BLOCK's blackhole, and GATEWAY/32 on lo with scope host."""
    routes = host.run(["ip", "route", "show", "proto", "57"]).stdout
    lo = host.run(["ip", "-4", "-o", "addr", "show", "dev", "lo"]).stdout
    return f"blackhole {block} " in routes, f"inet {gateway}/32 scope host lo" in lo


def _audit(host: ClusterHost) -> subprocess.CompletedProcess[str]:
    return host.netbay("system", "audit", check=False)


def test_the_blackhole_and_the_dns_address_are_back_within_2_s(calico: Cluster) -> None:
    h1, h2 = calico.hosts
    c1, c2 = h1.container_address("c-h1", "calico"), h2.container_address("c-h2", "calico")
    block = IPv4Network(f"{c1}/26", strict=False)
    gateway = str(block[1])
    wait_until(lambda: _ping(h2, "c-h2", c1), 20, "c-h2 reaching c-h1 by BGP")
    wait_until(lambda: _resolved(h1, "c-h1", "c-h2") == c2, 10, "c-h2 resolved on h1")
    assert _held(h1, str(block), gateway) == (True, True)
    assert _audit(h1).returncode == 0

    h1.run(["ip", "route", "del", "blackhole", str(block), "proto", "57"])
    h1.run(["ip", "addr", "del", f"{gateway}/32", "dev", "lo"])
    deleted = time.monotonic()
    assert _held(h1, str(block), gateway) == (False, False)
    wait_until(lambda: _held(h1, str(block), gateway) == (True, True), REPAIRED,
               "h1's blackhole and lo address put back", interval=0.02)
    assert time.monotonic() - deleted < REPAIRED

    audit = _audit(h1)
    assert audit.returncode == 0, audit.stdout
    assert "(address 1, blackhole 1)" in audit.stderr, audit.stderr
    assert _ping(h2, "c-h2", c1)
    assert _resolved(h1, "c-h1", "c-h2") == c2  # h1's DNS answers on the gateway again
