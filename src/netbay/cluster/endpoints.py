"""How netbay reaches etcd: the endpoints as the user gives them (`--etcd URL[,URL...]`), the
TLS files (`--etcd-ca/--etcd-cert/--etcd-key`), the gRPC channel settings, and the one error
an unreachable or refusing etcd gives."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from ..errors import ConfigError, NetbayError

DEFAULT_PORT = 2379
_OPENSSL_REASON = re.compile(r"OPENSSL_internal:([A-Z_]+)(?::\s*([^:]+))?")

# Reconnect within a second or two of a member coming back (gRPC's default backoff grows to
# 120 s); pings find a dead peer behind a silent network (etcd refuses pings under 5 s).
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 10000),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 64 << 20),  # a listing of a large cluster
)


@dataclass(frozen=True)
class Endpoint:
    url: str  # as the user wrote it, for messages
    host: str
    port: int
    secure: bool

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class EtcdConfig:
    """CALL_TIMEOUT bounds one request to one member; RETRY_FOR how long a call goes on
    trying members (a leader election takes a second or two) before it fails."""

    endpoints: tuple[str, ...]
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    call_timeout: float = 2.0
    retry_for: float = 10.0

    def parsed(self) -> tuple[Endpoint, ...]:
        endpoints = parse_endpoints(self.endpoints)
        tls_files = any(f is not None for f in (self.ca, self.cert, self.key))
        secure = tls_files or any(e.secure for e in endpoints)
        for endpoint in endpoints:
            if secure and endpoint.url.startswith("http://"):
                raise ConfigError("etcd endpoint", endpoint.url,
                                  "is plain http while TLS is in use (https:// or TLS files)")
        return tuple(Endpoint(e.url, e.host, e.port, secure) for e in endpoints)


class EtcdUnavailableError(NetbayError):
    """No etcd member answered in time: one line naming every endpoint and why."""

    http_status = 503

    def __init__(self, failures: Mapping[str, str]) -> None:
        self.failures = dict(failures)
        detail = ", ".join(f"{url} ({why})" for url, why in failures.items())
        super().__init__(f"etcd unreachable: {detail}")


class EtcdError(NetbayError):
    """etcd answered with an error no other member would answer differently (a request too
    large, a lease that is gone, a permission denied)."""

    http_status = 502


def parse_endpoints(urls: str | Sequence[str]) -> tuple[Endpoint, ...]:
    """http://H:P, https://H:P, H:P or H (port 2379); several separated by commas."""
    items = urls.split(",") if isinstance(urls, str) else [u for t in urls for u in t.split(",")]
    endpoints = tuple(_parse_endpoint(item.strip()) for item in items if item.strip())
    if not endpoints:
        raise ConfigError("etcd endpoint", urls, "none given")
    return endpoints


def _parse_endpoint(url: str) -> Endpoint:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https"):
        raise ConfigError("etcd endpoint", url, "the scheme must be http or https")
    if parts.path not in ("", "/") or parts.query or not parts.hostname:
        raise ConfigError("etcd endpoint", url, "expected [http[s]://]HOST[:PORT]")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ConfigError("etcd endpoint", url, "the port must be 1-65535") from None
    return Endpoint(url, parts.hostname, port, parts.scheme == "https")


def _read(flag: str, path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(flag, str(path), f"cannot be read: {exc.strerror}") from None


def channel_credentials(config: EtcdConfig) -> grpc.ChannelCredentials | None:
    """TLS credentials when the endpoints are https or TLS files are given; else None."""
    if not any(e.secure for e in config.parsed()):
        return None
    if (config.cert is None) != (config.key is None):
        raise ConfigError("--etcd-cert", str(config.cert or config.key),
                          "a client certificate needs both --etcd-cert and --etcd-key")
    return grpc.ssl_channel_credentials(
        root_certificates=_read("--etcd-ca", config.ca),
        private_key=_read("--etcd-key", config.key),
        certificate_chain=_read("--etcd-cert", config.cert),
    )


def describe_failure(error: BaseException, waited: float) -> str:
    """A few words for why one member did not answer: gRPC's last clause ("connection
    refused", "leader changed"), OpenSSL's reason for a failed handshake, or how long the
    member stayed silent."""
    if isinstance(error, TimeoutError):
        return f"no answer within {waited:.1f} s"
    text = error.details() if isinstance(error, grpc.aio.AioRpcError) else str(error)
    text = " ".join(str(text).split()) or type(error).__name__
    if found := _OPENSSL_REASON.search(text):
        detail = (found.group(2) or "").strip()
        reason = found.group(1).lower().replace("_", " ")
        return f"TLS: {reason} ({detail})" if detail and detail != "OK" else f"TLS: {reason}"
    if "TSI_DATA_CORRUPTED" in text:  # what a client sees when the server rejects its cert
        return "TLS: the server broke off the handshake (client certificate missing or refused?)"
    last = text.rsplit(": ", 1)[-1].strip()
    # "Connection refused" reads as "connection refused"; "SOME_CODE" stays
    return last[:1].lower() + last[1:] if last[1:2].islower() else last
