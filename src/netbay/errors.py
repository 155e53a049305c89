"""One error hierarchy for netbay; only entry points turn these into exit codes or HTTP statuses."""

from __future__ import annotations


class NetbayError(Exception):
    """Base of every error netbay raises on purpose."""

    http_status = 500
    exit_code = 1


class ConfigError(NetbayError):
    """Invalid input: names the field and the value."""

    http_status = 400

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {field} {value!r}: {reason}")


class ConflictError(NetbayError):
    """The request clashes with something that exists (a name, a subnet, an address)."""

    http_status = 409


class InUseError(NetbayError):
    """An object cannot be removed while something still uses it (Docker answers 403)."""

    http_status = 403


class NotJoinedError(ConflictError):
    """A cluster operation on a node that has not joined a cluster."""

    def __init__(self) -> None:
        super().__init__("this node has not joined a cluster (netbay cluster join --etcd URL)")


class NotFoundError(NetbayError):
    http_status = 404


class IPAMExhaustedError(NetbayError):
    http_status = 409


class KernelError(NetbayError):
    """A kernel operation failed; errno is kept for callers that care."""

    def __init__(self, message: str, errno: int = 0) -> None:
        self.errno = errno
        super().__init__(message)


class FirewallError(NetbayError):
    pass


class DaemonError(NetbayError):
    """The daemon could not be reached or started."""

