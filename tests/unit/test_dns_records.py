"""Who resolves what: the zone built from the record, the decision for each query, the store
read back as the server reads it, and the names the engine accepts. No root, no sockets."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from dnsprobe import build_query, parse_answer
from netbay.dns import records
from netbay.dns.records import ContainerRow, EndpointRow, build_zone
from netbay.dns.resolver import Forward, Reply, resolve
from netbay.engine.endpoints import check_aliases
from netbay.errors import ConfigError
from netbay.model import CREATING, READY, REMOVING, Container, Endpoint, Network, SubnetConfig
from netbay.name_entry import NameEntry
from netbay.runtime import files
from netbay.store.base import DnsRecords, RemoteName
from netbay.store.sqlite import SQLiteStore

A = IPv4Address


def net(nid: str, name: str, third: int, internal: bool = False) -> Network:
    subnet = IPv4Network(f"10.60.{third}.0/24")
    return Network(
        id=nid, name=name, driver="bridge", created="", internal=internal,
        subnets=(SubnetConfig(subnet, A(f"10.60.{third}.1")),), device=f"br-{name}",
    )


NETS = [
    net("n-front", "front", 1),
    net("n-back", "back", 2),
    net("n-vault", "vault", 3, internal=True),
    net("n-empty", "empty", 4),
    Network(id="n-host", name="host", driver="host", created="", subnets=()),
]
CONTAINERS = [
    ContainerRow("c-app", "app", "apphost", "running"),
    ContainerRow("c-web", "web", "webhost", "running", dns=("192.0.2.53",)),
    ContainerRow("c-db", "db", "dbhost", "created"),
    ContainerRow("c-safe", "safe", "safehost", "running"),
    ContainerRow("c-new", "new", "newhost", CREATING),
    ContainerRow("c-old", "old", "oldhost", REMOVING),
]
ENDPOINTS = [
    EndpointRow("n-front", "c-app", A("10.60.1.2")),
    EndpointRow("n-back", "c-app", A("10.60.2.2"), ("api",)),
    EndpointRow("n-front", "c-web", A("10.60.1.3"), ("www", "WWW2")),
    EndpointRow("n-back", "c-db", A("10.60.2.3")),
    EndpointRow("n-vault", "c-safe", A("10.60.3.2")),
    EndpointRow("n-front", "c-new", A("10.60.1.9")),
    EndpointRow("n-front", "c-old", A("10.60.1.10")),
    EndpointRow("n-back", "c-db", A("10.60.2.99"), state=CREATING),
]
HOST = ["10.99.99.53"]


@pytest.fixture
def zone() -> records.Zone:
    return build_zone(NETS, CONTAINERS, ENDPOINTS)


def ask(zone: records.Zone, network: str, ip: str, name: str, qtype: str = "A") -> Reply | Forward:
    asker = zone.askers[network][ip]
    _, packet = build_query(name, qtype)
    decision = resolve(packet, asker, zone, HOST)
    assert decision is not None
    return decision


def answer(zone: records.Zone, network: str, ip: str, name: str, qtype: str = "A") -> dict:
    decision = ask(zone, network, ip, name, qtype)
    assert isinstance(decision, Reply), decision
    return parse_answer(decision.packet)


def test_listen_points_are_gateways_of_bridges_in_use(zone: records.Zone) -> None:
    assert [(str(p.address), p.device) for p in zone.listen] == [
        ("10.60.1.1", "br-front"), ("10.60.2.1", "br-back"), ("10.60.3.1", "br-vault"),
    ]


def test_askers_are_live_endpoints_only(zone: records.Zone) -> None:
    assert set(zone.askers["n-front"]) == {"10.60.1.2", "10.60.1.3"}
    assert set(zone.askers["n-back"]) == {"10.60.2.2", "10.60.2.3"}
    # containers on the same networks share one view
    assert zone.askers["n-front"]["10.60.1.2"].view is zone.askers["n-back"]["10.60.2.2"].view
    assert zone.askers["n-front"]["10.60.1.3"].servers == ("192.0.2.53",)


def test_names_aliases_hostnames_and_qualified_names(zone: records.Zone) -> None:
    for name in ("web", "WEB", "webhost", "www", "www2", "web.front", "www.front"):
        assert answer(zone, "n-back", "10.60.2.3", "app")["answers"] == ["10.60.2.2"]
        assert answer(zone, "n-front", "10.60.1.2", name)["answers"] == ["10.60.1.3"], name
    # app is on both networks: both of its addresses, asker's network order
    assert answer(zone, "n-front", "10.60.1.2", "app")["answers"] == ["10.60.1.2", "10.60.2.2"]
    assert answer(zone, "n-front", "10.60.1.2", "app.back")["answers"] == ["10.60.2.2"]
    assert answer(zone, "n-back", "10.60.2.3", "api")["answers"] == ["10.60.2.2"]


def test_other_networks_and_dying_containers_are_nxdomain(zone: records.Zone) -> None:
    for name in ("db", "api", "safe", "new", "old", "db.back", "app.back"):
        assert answer(zone, "n-front", "10.60.1.3", name)["rcode"] == "NXDOMAIN", name


def test_aaaa_of_a_container_is_no_data(zone: records.Zone) -> None:
    reply = answer(zone, "n-front", "10.60.1.2", "web", "AAAA")
    assert (reply["rcode"], reply["answers"]) == ("NOERROR", [])


def test_reverse_lookups(zone: records.Zone) -> None:
    ptr = answer(zone, "n-front", "10.60.1.2", "3.1.60.10.in-addr.arpa", "PTR")
    assert ptr["answers"] == ["web.front"]
    # an address in a netbay subnet that the asker does not share: no answer, no forwarding
    other = answer(zone, "n-front", "10.60.1.3", "3.2.60.10.in-addr.arpa", "PTR")
    assert other["rcode"] == "NXDOMAIN"
    assert isinstance(ask(zone, "n-front", "10.60.1.2", "7.2.0.192.in-addr.arpa", "PTR"), Forward)


def test_other_names_are_forwarded_to_the_containers_or_the_hosts_servers(
    zone: records.Zone,
) -> None:
    decision = ask(zone, "n-front", "10.60.1.2", "outside.test")
    assert isinstance(decision, Forward) and decision.servers == tuple(HOST)
    decision = ask(zone, "n-front", "10.60.1.3", "outside.test")
    assert isinstance(decision, Forward) and decision.servers == ("192.0.2.53",)
    # single-label names that are not ours never leave
    assert answer(zone, "n-front", "10.60.1.2", "printer")["rcode"] == "NXDOMAIN"


def test_internal_networks_are_refused_and_no_upstream_is_servfail(zone: records.Zone) -> None:
    reply = answer(zone, "n-vault", "10.60.3.2", "outside.test")
    assert reply["rcode"] == "REFUSED" and "ra" not in reply["flags"]
    assert answer(zone, "n-vault", "10.60.3.2", "safe")["answers"] == ["10.60.3.2"]
    asker = zone.askers["n-front"]["10.60.1.2"]
    _, packet = build_query("outside.test", "A")
    decision = resolve(packet, asker, zone, [])
    assert isinstance(decision, Reply) and parse_answer(decision.packet)["rcode"] == "SERVFAIL"


def test_garbage_and_responses(zone: records.Zone) -> None:
    asker = zone.askers["n-front"]["10.60.1.2"]
    assert resolve(b"\x00\x01", asker, zone, HOST) is None
    _, packet = build_query("web", "A")
    response = bytearray(packet)
    response[2] |= 0x80
    assert resolve(bytes(response), asker, zone, HOST) is None
    bad = resolve(packet[:-2], asker, zone, HOST)
    assert isinstance(bad, Reply) and parse_answer(bad.packet)["rcode"] == "FORMERR"


def stored(tmp_path: Path) -> SQLiteStore:
    """A record with env1 (hostname odin, alias db) on front."""
    store = SQLiteStore(tmp_path / "netbay.db")
    store.put_network(NETS[0])
    store.put_container(Container(
        id="c1", name="env1", hostname="odin", command=("true",), created="", netns=None,
        network_mode="private", state="running", config={"dns": ["192.0.2.53"]},
    ))
    store.put_endpoint(Endpoint(
        id="e1", network_id=NETS[0].id, container_id="c1", ifname="eth0", host_ifname="nbv1",
        mac=None, address=IPv4Interface("10.60.1.2/24"), gateway=A("10.60.1.1"),
        aliases=("db",), state=READY,
    ))
    return store


def test_the_store_read_back_as_the_server_reads_it(tmp_path: Path) -> None:
    store = stored(tmp_path)
    front = NETS[0]
    conn = records.connect(str(tmp_path / "netbay.db"))
    version = records.data_version(conn)
    zone = records.load(conn)
    asker = zone.askers[front.id]["10.60.1.2"]
    assert asker.servers == ("192.0.2.53",)
    assert set(asker.view.names) == {"env1", "odin", "db", "env1.front", "odin.front", "db.front"}
    assert store.containers_aliased(front.id, "DB") == ["env1"]
    assert store.containers_called(front.id, "DB") == []
    assert store.containers_called(front.id, "Env1") == ["env1"]
    assert store.containers_aliased(front.id, "Env1") == []
    store.delete_endpoint("e1")
    assert records.data_version(conn) != version
    assert records.load(conn).askers == {}
    conn.close()
    store.close()


# --- names other nodes publish on a global network (front stands for one here) ------------
REMOTE = [
    RemoteName("n-front", NameEntry("Cache", ("redis",), A("10.60.9.2"), "c-cache", "node-b")),
    RemoteName("n-front", NameEntry("web", ("shared", "webhost"), A("10.60.9.3"), "c-w2", "b")),
    RemoteName("n-front", NameEntry("worker", ("shared",), A("10.60.8.2"), "c-worker", "c")),
    RemoteName("n-gone", NameEntry("ghost", (), A("10.60.7.2"), "c-ghost", "node-c")),
]


@pytest.fixture
def cluster_zone() -> records.Zone:
    return build_zone(NETS, CONTAINERS, ENDPOINTS, REMOTE)


def test_remote_names_resolve_on_their_network_with_aliases_and_qualified(
    cluster_zone: records.Zone,
) -> None:
    for name in ("cache", "CACHE", "redis", "cache.front", "redis.front"):
        assert answer(cluster_zone, "n-front", "10.60.1.2", name)["answers"] == ["10.60.9.2"]
    # an alias two remote containers share: both, as a shared local alias
    assert answer(cluster_zone, "n-front", "10.60.1.2", "shared")["answers"] == [
        "10.60.9.3", "10.60.8.2"]
    ptr = answer(cluster_zone, "n-front", "10.60.1.2", "2.9.60.10.in-addr.arpa", "PTR")
    assert ptr["answers"] == ["Cache.front"]
    assert "ghost" not in cluster_zone.known  # its network is not one this host serves


def test_a_local_container_wins_over_a_remote_one_of_the_same_name(
    cluster_zone: records.Zone,
) -> None:
    for name in ("web", "web.front", "webhost"):
        assert answer(cluster_zone, "n-front", "10.60.1.2", name)["answers"] == ["10.60.1.3"]


def test_remote_names_stay_on_their_network(cluster_zone: records.Zone) -> None:
    for name in ("cache", "cache.front", "shared", "worker"):
        assert answer(cluster_zone, "n-back", "10.60.2.3", name)["rcode"] == "NXDOMAIN", name


def test_published_names_are_what_this_host_answers_on_the_network() -> None:
    local = DnsRecords(NETS, CONTAINERS, ENDPOINTS)
    assert records.published_names(local, "n-front") == [
        NameEntry("app", ("apphost",), A("10.60.1.2"), "c-app"),
        NameEntry("web", ("webhost", "www", "www2"), A("10.60.1.3"), "c-web"),
    ]
    assert records.published_names(local, "n-back") == [
        NameEntry("app", ("apphost", "api"), A("10.60.2.2"), "c-app"),
        NameEntry("db", ("dbhost",), A("10.60.2.3"), "c-db"),
    ]
    assert records.published_names(local, "n-empty") == []


def test_remote_names_read_back_as_the_server_reads_them(tmp_path: Path) -> None:
    store = stored(tmp_path)
    front = NETS[0]
    conn = records.connect(str(tmp_path / "netbay.db"))
    version = records.data_version(conn)
    store.replace_remote_names(front.id, [REMOTE[0].entry])
    assert records.data_version(conn) != version
    view = records.load(conn).askers[front.id]["10.60.1.2"].view
    assert set(view.names) == {"env1", "odin", "db", "cache", "redis", "env1.front",
                               "odin.front", "db.front", "cache.front", "redis.front"}
    assert view.names["redis"] == [A("10.60.9.2").packed]
    conn.close()
    store.close()


@pytest.mark.parametrize("alias", ["db", "my-db", "db_1", "a.b.c", "x" * 63])
def test_good_aliases(alias: str) -> None:
    check_aliases([alias])


@pytest.mark.parametrize("alias", ["", "-db", "db-", "a..b", "no way", "é", "x" * 64, "a/b"])
def test_bad_aliases(alias: str) -> None:
    with pytest.raises(ConfigError, match=r"invalid alias .*: not a DNS name"):
        check_aliases([alias])


def test_resolv_conf_notes() -> None:
    text = files.render_resolv_conf(["10.1.0.1"], ["x.test"], ["ndots:0"], notes=["hello"])
    assert text == (
        "# Generated by netbay\n# hello\nnameserver 10.1.0.1\nsearch x.test\noptions ndots:0\n"
    )
