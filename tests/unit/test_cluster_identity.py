"""A node's identity and settings in its state root, and the etcd endpoints and TLS options
as given (netbay.cluster.identity, netbay.cluster.endpoints)."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest

from netbay.cluster.endpoints import (
    Endpoint,
    EtcdConfig,
    EtcdUnavailableError,
    channel_credentials,
    describe_failure,
    parse_endpoints,
)
from netbay.cluster.identity import (
    JoinSettings,
    forget_join,
    load_join,
    node_id,
    save_join,
    source_address,
)
from netbay.errors import ConfigError


def test_the_node_id_is_made_once_and_kept(tmp_path: Path) -> None:
    root = tmp_path / "state"
    ids: list[str] = []
    threads = [threading.Thread(target=lambda: ids.append(node_id(root))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1 and len(ids[0]) == 32
    assert (root / "node-id").read_text() == ids[0] + "\n"
    assert node_id(root) == ids[0]
    assert sorted(p.name for p in root.iterdir()) == ["node-id"]  # no temporary left


def test_a_damaged_node_id_file_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "node-id").write_text("192.0.2.1\n")
    with pytest.raises(ConfigError, match=f"^invalid node id '192.0.2.1': {tmp_path}/node-id "
                                          "must hold 32 hex digits$"):
        node_id(tmp_path)


def test_join_settings_are_kept_until_forgotten(tmp_path: Path) -> None:
    assert load_join(tmp_path) is None
    settings = JoinSettings(("http://10.0.0.1:2379", "http://10.0.0.2:2379"), "alpha",
                            ca="/etc/netbay/ca.pem", ttl=10, grace=60)
    save_join(tmp_path, settings)
    assert load_join(tmp_path) == settings
    forget_join(tmp_path)
    assert load_join(tmp_path) is None
    forget_join(tmp_path)
    (tmp_path / "cluster.json").write_text("{")
    with pytest.raises(ConfigError, match="^invalid cluster settings"):
        load_join(tmp_path)


def test_endpoints_take_the_forms_users_write() -> None:
    assert parse_endpoints("http://10.0.0.1:2379,https://etcd.example:2381, 10.0.0.3") == (
        Endpoint("http://10.0.0.1:2379", "10.0.0.1", 2379, False),
        Endpoint("https://etcd.example:2381", "etcd.example", 2381, True),
        Endpoint("10.0.0.3", "10.0.0.3", 2379, False),
    )
    (v6,) = parse_endpoints(["http://[fd00::1]:2379"])
    assert v6.target == "[fd00::1]:2379"


@pytest.mark.parametrize(("url", "reason"), [
    ("unix:///run/etcd.sock", "the scheme must be http or https"),
    ("http://10.0.0.1:2379/v3", "expected [http[s]://]HOST[:PORT]"),
    ("http://10.0.0.1:99999", "the port must be 1-65535"),
    ("", "none given"),
])
def test_a_bad_endpoint_is_refused_naming_it(url: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=f"^invalid etcd endpoint {url!r}: {reason}$".replace(
            "[", r"\[").replace("]", r"\]")):
        parse_endpoints(url)


def test_tls_applies_to_every_endpoint_or_none(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked until a handshake")
    (secure,) = EtcdConfig(("10.0.0.1",), ca=ca).parsed()
    assert secure.secure
    assert channel_credentials(EtcdConfig(("10.0.0.1",), ca=ca)) is not None
    assert channel_credentials(EtcdConfig(("http://10.0.0.1",))) is None
    with pytest.raises(ConfigError, match="^invalid etcd endpoint 'http://10.0.0.2': is plain "
                                          "http while TLS is in use"):
        EtcdConfig(("https://10.0.0.1", "http://10.0.0.2")).parsed()
    with pytest.raises(ConfigError, match="needs both --etcd-cert and --etcd-key"):
        channel_credentials(EtcdConfig(("10.0.0.1",), cert=ca))
    with pytest.raises(ConfigError, match=f"^invalid --etcd-ca '{tmp_path}/no.pem': cannot be "
                                          "read: No such file or directory$"):
        channel_credentials(EtcdConfig(("10.0.0.1",), ca=tmp_path / "no.pem"))


def test_a_failure_is_told_in_a_few_words_on_one_line() -> None:
    refused = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
        details="failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
                "Failed to connect to remote host: Connection refused")
    assert describe_failure(refused, 2.0) == "connection refused"
    assert describe_failure(TimeoutError(), 1.96) == "no answer within 2.0 s"
    assert describe_failure(Exception("etcdserver: leader changed"), 2) == "leader changed"
    untrusted = Exception(
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:2379: Tls "
        "handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:"
        "OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate: OK")
    assert describe_failure(untrusted, 2) == (
        "TLS: certificate verify failed (unable to get local issuer certificate)")
    rejected = Exception("failed to connect to all addresses; last error: UNAVAILABLE: "
                         "ipv4:127.0.0.1:2379: Unwrap failed (TSI_DATA_CORRUPTED)")
    assert describe_failure(rejected, 2) == (
        "TLS: the server broke off the handshake (client certificate missing or refused?)")
    error = EtcdUnavailableError({"http://a:2379": "connection refused", "http://b:2379": "x"})
    assert str(error) == "etcd unreachable: http://a:2379 (connection refused), http://b:2379 (x)"
    assert error.http_status == 503


def test_the_node_address_is_the_source_towards_the_first_endpoint() -> None:
    (loopback,) = parse_endpoints("127.0.0.1:2379")
    assert str(source_address(loopback)) == "127.0.0.1"
