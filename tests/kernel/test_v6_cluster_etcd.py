"""The cluster record dual stack against a real 3-member etcd (tests/etcd.py, the fixtures of
test_cluster_etcd.py): IPv6 blocks claimed beside the IPv4 ones under the same keys and
leases, never shared, claimed more and given back with them; dual-stack network creation and
its refusals (which change nothing); peers of both families; the node's IPv6 underlay
address read from a real link and written in its record at each start."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import pytest
import test_cluster_etcd as shared
from test_cluster_etcd import Node, Recorder, World

from etcd import etcd_cluster, loopback_addresses
from helpers import wait_until
from netbay.cluster import GlobalNetwork, GlobalNetworkSpec, Membership, SubnetLeases
from netbay.cluster.identity import source_address6
from netbay.cluster.layout import decode_network, decode_node, decode_subnet_holder
from netbay.errors import ConfigError, ConflictError, IPAMExhaustedError, NotFoundError
from netbay.kernel import netns

pytestmark = pytest.mark.kernel
# its fixtures: a 3-member etcd on 127.0.0.1 for the module, a root prefix and a World a test
cluster, layout, world = shared.cluster, shared.layout, shared.world

SUBNET6 = IPv6Network("fd12:3456:789a::/48")
NODE_ADDRESS = IPv4Address("192.0.2.10")


def dual(world: World, name: str = "dual", subnet: str = "10.5.0.0/16", size: int = 24,
         subnet6: IPv6Network = SUBNET6, size6: int = 64) -> GlobalNetwork:
    return world.networks.create(GlobalNetworkSpec(
        name, IPv4Network(subnet), size, subnet6=subnet6, subnet_size6=size6))


def dual_node(world: World, name: str, address6: str | None) -> Node:
    """World.node with an IPv6 underlay address."""
    client = world.new_client()
    ident = f"{name:0<32}"[:32]
    membership = Membership(client, world.layout, ident, name, IPv4Address("192.0.2.1"),
                            address6=None if address6 is None else IPv6Address(address6))
    membership.join()
    world._closers.append(membership.stop)
    return Node(client, membership,
                SubnetLeases(client, world.layout, ident, lambda: membership.grace_lease))


def listing(world: World) -> list[tuple[str, bytes, int, int]]:
    found = world.client.get_prefix(world.layout.root)
    return [(kv.key, kv.value, kv.mod_revision, kv.lease) for kv in found.items]


# -- claims


def test_a_node_claims_an_ipv4_then_an_ipv6_block_under_the_same_keys_and_lease(
    world: World,
) -> None:
    network = dual(world)
    alpha = world.node("alpha")
    block = alpha.subnets.claim(network)
    block6 = alpha.subnets.claim(network, 6)
    assert isinstance(block, IPv4Network) and block.subnet_of(network.subnet)
    assert isinstance(block6, IPv6Network) and block6.prefixlen == 64
    assert block6.subnet_of(SUBNET6)
    assert alpha.subnets.held("dual") == (block,)
    assert alpha.subnets.held("dual", 6) == (block6,)
    assert alpha.subnets.claim(network, 6) == block6  # asked again: the same
    me = alpha.membership.node
    key6 = f"subnets/dual/{block6.network_address}-64"
    assert sorted(world.keys("subnets/")) == sorted(
        [f"subnets/dual/{block.network_address}-24", key6])
    holder = world.client.get(world.layout.holder("dual", me))
    assert holder is not None and holder.value == (
        f'{{"subnet":"{block}","subnets":["{block}"],"subnets6":["{block6}"]}}'.encode())
    for kv in world.client.get_prefix(world.layout.root + "subnets/dual/").items:
        assert kv.lease == alpha.membership.grace_lease and decode_subnet_holder(kv.value) == me
    assert holder.lease == alpha.membership.grace_lease


def test_a_first_ipv6_claim_claims_the_ipv4_block_first(world: World) -> None:
    network = dual(world)
    alpha = world.node("alpha")
    block6 = alpha.subnets.claim(network, 6)
    (block,) = alpha.subnets.held("dual")
    assert alpha.subnets.claim(network) == block
    assert alpha.subnets.held("dual", 6) == (block6,)


def test_an_ipv4_only_network_has_no_ipv6_blocks_and_writes_as_before(world: World) -> None:
    podnet = world.network("podnet", "10.5.0.0/16")
    alpha = world.node("alpha")
    with pytest.raises(NotFoundError, match="^global network podnet has no IPv6 subnet$"):
        alpha.subnets.claim(podnet, 6)
    assert world.keys("subnets/") == []  # nothing claimed on the way
    block = alpha.subnets.claim(podnet)
    holder = world.client.get(world.layout.holder("podnet", alpha.membership.node))
    assert holder is not None
    assert holder.value == f'{{"subnet":"{block}","subnets":["{block}"]}}'.encode()
    record = world.client.get(world.layout.network("podnet"))
    assert record is not None and b"subnet6" not in record.value
    node = world.client.get(world.layout.node(alpha.membership.node))
    assert node is not None and b"address6" not in node.value


def test_ten_nodes_claiming_ipv6_at_once_never_share_a_block(world: World) -> None:
    network = dual(world, subnet6=IPv6Network("fd12:3456:789a::/60"))  # 16 /64s
    nodes = [world.node(f"node{i}") for i in range(10)]
    for node in nodes:
        node.subnets.claim(network)
    barrier = threading.Barrier(len(nodes))
    claimed: dict[str, IPv6Network] = {}
    errors: list[BaseException] = []

    def claim(node: Node) -> None:
        barrier.wait()
        try:
            claimed[node.membership.node] = node.subnets.claim(network, 6)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(n,)) for n in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(claimed) == 10
    assert len(set(claimed.values())) == 10
    listing6 = world.client.get_prefix(world.layout.root + "subnets/dual/").items
    holders = {kv.key.rsplit("/", 1)[1]: decode_subnet_holder(kv.value) for kv in listing6
               if ":" in kv.key.rsplit("/", 1)[1]}
    assert holders == {f"{b.network_address}-64": node for node, b in claimed.items()}


def test_a_node_claims_more_ipv6_blocks_and_release_frees_both_families(
    world: World,
) -> None:
    scarce = dual(world, "scarce", "10.6.0.0/22", subnet6=IPv6Network("fd12:3456:789a::/62"))
    alpha, beta = world.node("alpha"), world.node("beta")
    alpha.subnets.claim(scarce)
    with pytest.raises(NotFoundError, match="^this node holds no IPv6 block of global network "
                       "scarce$"):
        alpha.subnets.claim_more(scarce, 6)
    first6 = alpha.subnets.claim(scarce, 6)
    theirs6 = beta.subnets.claim(scarce, 6)
    more6 = [alpha.subnets.claim_more(scarce, 6), alpha.subnets.claim_more(scarce, 6)]
    extra = alpha.subnets.claim_more(scarce)  # IPv4 more: IPv6 ones stay
    assert alpha.subnets.held("scarce", 6) == (first6, *more6)
    assert len(alpha.subnets.held("scarce")) == 2 and extra in alpha.subnets.held("scarce")
    assert sorted((first6, theirs6, *more6)) == list(
        IPv6Network("fd12:3456:789a::/62").subnets(new_prefix=64))
    with pytest.raises(IPAMExhaustedError, match=r"^global network scarce "
                       r"\(fd12:3456:789a::/62\) has no free /64 left: all 4 are held$"):
        alpha.subnets.claim_more(scarce, 6)
    assert alpha.subnets.release("scarce") is True
    (theirs,) = beta.subnets.held("scarce")
    assert sorted(world.keys("subnets/scarce/")) == sorted([
        f"subnets/scarce/{theirs.network_address}-24",
        f"subnets/scarce/{theirs6.network_address}-64"])
    assert world.keys(f"holders/scarce/{alpha.membership.node}") == []
    assert alpha.subnets.held("scarce", 6) == () and beta.subnets.held("scarce", 6) == (theirs6,)


def test_a_new_grace_lease_reclaims_the_blocks_of_both_families(world: World) -> None:
    network = dual(world)
    alpha = world.node("alpha", ttl=3)
    block, block6 = alpha.subnets.claim(network), alpha.subnets.claim(network, 6)
    more6 = alpha.subnets.claim_more(network, 6)
    old = alpha.membership.grace_lease
    world.client.revoke(old)  # its keys go with it, as when the grace period ends
    assert world.keys("subnets/") == []
    wait_until(lambda: alpha.membership.registered and alpha.membership.grace_lease != old,
               10, "alpha to register again on a new grace lease")
    alpha.subnets.reclaim(world.networks.get)
    assert alpha.subnets.held("dual") == (block,)
    assert alpha.subnets.held("dual", 6) == (block6, more6)
    leases = {kv.lease for kv in world.client.get_prefix(world.layout.root + "subnets/").items}
    assert leases == {alpha.membership.grace_lease}


# -- creating dual-stack networks


def test_a_dual_stack_network_gets_its_subnet6_or_a_random_ula_48(world: World) -> None:
    given = dual(world, size6=122)
    assert (given.subnet6, given.subnet_size6) == (SUBNET6, 122)
    found = world.client.get(world.layout.network("dual"))
    assert found is not None and decode_network(found.value) == given
    raw = json.loads(found.value)
    assert (raw["subnet6"], raw["subnet_size6"]) == ("fd12:3456:789a::/48", 122)
    chosen = world.networks.create(GlobalNetworkSpec("auto", ipv6=True))
    assert chosen.subnet6 is not None and chosen.subnet6.prefixlen == 48
    assert chosen.subnet6.subnet_of(IPv6Network("fd00::/8"))
    assert not chosen.subnet6.overlaps(SUBNET6) and chosen.subnet_size6 == 64
    assert world.networks.get("auto") == chosen
    assert world.networks.create(GlobalNetworkSpec("four")).subnet6 is None


def test_dual_stack_refusals_are_one_line_and_change_nothing(world: World) -> None:
    dual(world)
    for name in ("alpha", "beta", "gamma"):
        world.node(name)
    before, revision = listing(world), world.client.revision()
    four = IPv4Network("10.6.0.0/16")
    refusals = [
        (GlobalNetworkSpec("other", four, subnet6=IPv6Network("fd12:3456:789a:8000::/49")),
         ConflictError, "subnet fd12:3456:789a:8000::/49 overlaps global network dual"),
        (GlobalNetworkSpec("other", four, subnet6=IPv6Network("fd99::/48"), subnet_size6=40),
         ConfigError, "invalid subnet_size6 40: must be between 48 and 126 for fd99::/48"),
        (GlobalNetworkSpec("other", four, subnet6=IPv6Network("fd99::/48"), subnet_size6=127),
         ConfigError, "invalid subnet_size6 127: must be between 48 and 126 for fd99::/48"),
        (GlobalNetworkSpec("other", four, subnet6=IPv6Network("fd99::/63")), ConfigError,
         "invalid subnet6 'fd99::/63': has room for 2 /64 subnets; the cluster has 3 nodes"),
        (GlobalNetworkSpec("other", four, subnet6=IPv4Network("10.7.0.0/16")),  # type: ignore[arg-type]
         ConfigError, "invalid subnet6 '10.7.0.0/16': must be an IPv6 subnet"),
        (GlobalNetworkSpec("other", IPv6Network("fd99::/48"), ipv6=True),  # type: ignore[arg-type]
         ConfigError, "invalid subnet 'fd99::/48': must be an IPv4 subnet"),
    ]
    for spec, error, message in refusals:
        with pytest.raises(error) as caught:
            world.networks.create(spec)
        assert str(caught.value).startswith(message), str(caught.value)
        assert "\n" not in str(caught.value)
    assert listing(world) == before
    assert world.client.revision() == revision  # nothing written anywhere


# -- peers and the node's IPv6 address


def test_ipv6_blocks_are_peers_with_the_node_address6(world: World) -> None:
    network = dual(world)
    recorder = Recorder()
    world.view(recorder, node="observer")
    alpha = dual_node(world, "alpha", "2001:db8::a")
    beta = dual_node(world, "beta", None)
    blocks = {n.membership.node: (n.subnets.claim(network), n.subnets.claim(network, 6))
              for n in (alpha, beta)}
    wait_until(lambda: len(recorder.latest("dual") or ()) == 4, 5, "four peers: two per node")
    peers = recorder.latest("dual") or ()
    got = [(p.name, p.subnet, p.address6) for p in peers]
    a, b = alpha.membership.node, beta.membership.node
    expected: list[tuple[str, IPv4Network | IPv6Network, IPv6Address | None, str]] = sorted([
        ("alpha", blocks[a][0], IPv6Address("2001:db8::a"), a),
        ("alpha", blocks[a][1], IPv6Address("2001:db8::a"), a),
        ("beta", blocks[b][0], None, b), ("beta", blocks[b][1], None, b),
    ], key=lambda e: (e[3], e[1].version, e[1]))
    assert got == [e[:3] for e in expected]
    found = world.client.get(world.layout.node(a))
    assert found is not None and json.loads(found.value)["address6"] == "2001:db8::a"
    alpha.membership.set_address6(IPv6Address("2001:db8::b"))
    wait_until(lambda: {p.address6 for p in recorder.latest("dual") or () if p.node == a}
               == {IPv6Address("2001:db8::b")}, 5, "alpha's new address6 in its peers")


@pytest.fixture
def node_ns(tmp_path: Path) -> Iterator[Path]:
    """A throwaway namespace standing in for a node: under0 holds the node's IPv4 address
    and IPv6 ones of every kind; other0 a global IPv6 address of another link (veths: no
dummy driver here)."""
    path = tmp_path / "node-ns"
    netns.create(path)
    try:
        commands = [
            "ip link set lo up",
            "ip link add under0 type veth peer name under1",
            "ip link add other0 type veth peer name other1",
            "sysctl -qw net.ipv6.conf.under0.dad_transmits=100",  # a tentative one stays so
            "ip link set under1 up", "ip link set under0 up", "ip link set other0 up",
            f"ip addr add {NODE_ADDRESS}/24 dev under0",
            "ip addr add 2001:db8:2::1/64 dev other0 nodad",
            # the kernel lists a link's addresses of one scope newest first
            "ip addr add 2001:db8::a/64 dev under0 nodad",
            "ip addr add 2001:db8::9/64 dev under0 nodad",
            "ip addr add 2001:db8::7/64 dev under0",  # tentative for 100 s
            "ip addr add 2001:db8::8/64 dev under0 nodad preferred_lft 0",  # deprecated
        ]
        for command in commands:
            subprocess.run(["nsenter", f"--net={path}", *command.split()], check=True)
        yield path
    finally:
        netns.delete(path)


def test_the_ipv6_underlay_address_is_read_from_the_link_of_the_ipv4_one(
    node_ns: Path,
) -> None:
    assert source_address6(NODE_ADDRESS, node_ns) == IPv6Address("2001:db8::9")
    assert source_address6(IPv4Address("192.0.2.99"), node_ns) is None  # not this host's
    subprocess.run(["nsenter", f"--net={node_ns}", "ip", "addr", "flush", "dev", "under0",
                    "scope", "global", "to", "2001:db8::/64"], check=True)
    assert source_address6(NODE_ADDRESS, node_ns) is None


_NODE_SCRIPT = """
import json, sys, time
from pathlib import Path
from netbay.cluster import ClusterNode, JoinSettings
from netbay.cluster.layout import decode_node
root, endpoints, prefix, how = Path(sys.argv[1]), tuple(sys.argv[2].split(",")), sys.argv[3], \
    sys.argv[4]
if how == "join":
    node = ClusterNode.join(root, JoinSettings(endpoints, "alpha", "192.0.2.10",
                                               prefix=prefix))
else:
    node = ClusterNode.resume(root)
    deadline = time.monotonic() + 10
    while not node.membership.registered and time.monotonic() < deadline:
        time.sleep(0.05)
found = node.client.get(node.layout.node(node.node))
print(found.value.decode())
node.close()
"""


def test_a_node_writes_its_address6_at_join_and_a_restart_takes_a_new_one(
    node_ns: Path, tmp_path: Path,
) -> None:
    enter = ["nsenter", f"--net={node_ns}"]
    prefix = "/netbay-v6-record/v1/"
    dirs = [tmp_path / f"m{i}" for i in range(3)]
    with etcd_cluster(dirs, loopback_addresses(3), prefixes=[enter] * 3) as etcd:

        def start(how: str) -> bytes:
            done = subprocess.run(
                [*enter, sys.executable, "-c", _NODE_SCRIPT, str(tmp_path / "state"),
                 ",".join(etcd.endpoints), prefix, how],
                check=True, capture_output=True, timeout=60)
            return done.stdout.strip()

        joined = decode_node(start("join"))
        assert (joined.address, joined.address6) == (NODE_ADDRESS, IPv6Address("2001:db8::9"))
        subprocess.run([*enter, "ip", "addr", "del", "2001:db8::9/64", "dev", "under0"],
                       check=True)
        resumed = decode_node(start("resume"))
        assert resumed.id == joined.id and resumed.address6 == IPv6Address("2001:db8::a")
        subprocess.run([*enter, "ip", "addr", "del", "2001:db8::a/64", "dev", "under0"],
                       check=True)
        plain = start("resume")
        assert decode_node(plain).address6 is None and b"address6" not in plain
