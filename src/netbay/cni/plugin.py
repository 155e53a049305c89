#!/usr/bin/env python3
"""netbay's CNI plugin executable (CNI spec 1.1.0; configurations of 0.3.0 to 1.1.0).

A thin client of netbayd: it checks the environment and the configuration's syntax and
version here (so bad input never starts or reaches the daemon), answers VERSION itself, and
hands ADD, DEL, CHECK, GC and STATUS to the daemon (POST /cni/<command>), which does the
work (netbay.cni.daemon_side). Results and errors are printed on stdout exactly as the daemon
returns them; errors exit 1.

Two kinds, one file: `netbay` (an interface plugin: makes the container's interface) and
`netbay-ipam` (an IPAM plugin: addresses only, for the reference `bridge` and the like).

The socket: $NETBAY_SOCKET, else the configuration's "socket", else the installed default.
`netbay cni install` writes this file with the settings below filled in, and the shebang
`#!<python> -I -S`, so it starts without site or netbay imports. Standard library only.
"""

import sys

# <thin>
from netbay.thin import (
    JsonError,
    Unreachable,
    call,
    environ,
    finish,
    getenv,
    json_decode,
    json_obj,
    out,
)

# </thin>

# <settings>
KIND = "netbay"  # or "netbay-ipam"
SOCKET = "/run/netbay/netbay.sock"
DAEMON: list[str] = []  # the argv that starts netbayd; empty: never start it
ROOT = ""  # netbayd's state root ("": its default, or $NETBAY_ROOT)
# </settings>

VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"
COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")
# Required environment per command, as the spec lists them (section 2).
REQUIRED = {
    "ADD": ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME"),
    "GC": ("CNI_COMMAND", "CNI_PATH"),
    "STATUS": ("CNI_COMMAND",),
    "VERSION": ("CNI_COMMAND",),
}
ENV_KEYS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
# CNI_ARGS keys netbay reads, and those runtimes commonly pass (accepted, unused)
KNOWN_ARGS = frozenset(
    {"IP", "MAC", "IgnoreUnknown", "K8S_POD_NAME", "K8S_POD_NAMESPACE",
     "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"}
)

# Error codes (spec section 5); 100+ are netbay's own.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
INTERNAL = 100


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details

    def json(self, version: str = LATEST) -> str:
        fields: dict[str, object] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            fields["details"] = self.details
        return json_obj(fields)


def _valid_name(value: str) -> bool:
    """CNI's container id and network name: [a-zA-Z0-9][a-zA-Z0-9_.-]*"""
    return bool(value) and value[0].isascii() and value[0].isalnum() and all(
        c.isascii() and (c.isalnum() or c in "_.-") for c in value
    )


def valid_ifname(name: str) -> bool:
    """netbay's one interface-name rule (netbay.plan.naming.valid_ifname, which this
    executable cannot import; tests/unit/test_ifname.py holds the two equal)."""
    return 0 < len(name) <= 15 and name not in (".", "..") and all(
        c.isascii() and (c.isalnum() or c in "_.-") for c in name
    )


def check_ifname(ifname: str) -> None:
    if valid_ifname(ifname):
        return
    if len(ifname.encode()) > 15:
        raise CniError(
            INVALID_ENVIRONMENT, "interface name is too long",
            "CNI_IFNAME: interface name should be less than 16 characters",
        )
    if ifname in (".", ".."):
        raise CniError(INVALID_ENVIRONMENT, "interface name is . or ..", "CNI_IFNAME")
    raise CniError(
        INVALID_ENVIRONMENT,
        "interface name contains characters other than ASCII letters, digits, '_', '-' and '.'",
        "CNI_IFNAME",
    )


def parse_args(raw: str) -> dict[str, str]:
    """CNI_ARGS: K=V pairs joined by ';'. Unknown keys are refused unless IgnoreUnknown."""
    pairs: dict[str, str] = {}
    if not raw:
        return pairs
    for item in raw.split(";"):
        key, sep, value = item.partition("=")
        if not sep or not key or "=" in value:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_ARGS: invalid pair {item!r}")
        pairs[key] = value
    ignore = pairs.get("IgnoreUnknown", "false").lower()
    if ignore not in ("1", "true", "0", "false"):
        raise CniError(
            INVALID_ENVIRONMENT,
            f"CNI_ARGS: IgnoreUnknown={pairs['IgnoreUnknown']!r} is not a boolean",
        )
    unknown = sorted(k for k in pairs if k not in KNOWN_ARGS)
    if unknown and ignore not in ("1", "true"):
        raise CniError(
            INVALID_ENVIRONMENT, f"CNI_ARGS: unknown args {unknown}",
            "set IgnoreUnknown=1 to pass arguments netbay does not read",
        )
    return pairs


def check_env(env: dict[str, str]) -> str:
    """The command, once the variables it requires are present and valid (code 4)."""
    command = env.get("CNI_COMMAND", "")
    required = REQUIRED.get(command, ("CNI_COMMAND",))
    missing = [name for name in required if not env.get(name)]
    if "CNI_CONTAINERID" in required and env.get("CNI_CONTAINERID"):
        container_id = env["CNI_CONTAINERID"]
        if not _valid_name(container_id):
            raise CniError(
                INVALID_ENVIRONMENT, "invalid characters in containerID",
                f"CNI_CONTAINERID: {container_id}",
            )
    if "CNI_IFNAME" in required and env.get("CNI_IFNAME"):
        check_ifname(env["CNI_IFNAME"])
    if missing:
        raise CniError(
            INVALID_ENVIRONMENT, f"required env variables [{','.join(missing)}] missing"
        )
    if command not in COMMANDS:
        raise CniError(INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {command}", "CNI_COMMAND")
    if command in ("ADD", "DEL", "CHECK"):
        parse_args(env.get("CNI_ARGS", ""))
    return command


def _version_tuple(version: str) -> tuple[int, int, int]:
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise CniError(DECODING_FAILURE, f"unable to parse version {version!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def check_config(command: str, text: str) -> tuple[str, dict[str, object]]:
    """(the configuration's cniVersion, the configuration), in the spec's order of checks:
    decoding (6), the network name (7), the version (6 or 1)."""
    try:
        config = json_decode(text)
    except JsonError as exc:
        raise CniError(DECODING_FAILURE, f"error decoding network config: {exc}") from None
    return check_parsed(command, config)


def check_parsed(command: str, config: object) -> tuple[str, dict[str, object]]:
    """check_config of a configuration already decoded."""
    if not isinstance(config, dict):
        raise CniError(DECODING_FAILURE, "error decoding network config: not a JSON object")
    name = config.get("name")
    if name is not None and not isinstance(name, str):
        raise CniError(DECODING_FAILURE, "error decoding network config: name is not a string")
    if not name:
        raise CniError(INVALID_CONFIG, "missing network name")
    if not _valid_name(name):
        raise CniError(INVALID_CONFIG, "invalid characters found in network name", name)
    version = config.get("cniVersion")
    if version is None or version == "":
        version = "0.1.0"  # what a configuration without cniVersion means
    if not isinstance(version, str):
        raise CniError(
            DECODING_FAILURE, "error decoding network config: cniVersion is not a string"
        )
    minimum = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}.get(command)
    if minimum is not None and _version_tuple(version) < _version_tuple(minimum):
        raise CniError(INCOMPATIBLE_VERSION, f"config version does not allow {command}")
    if version not in VERSIONS:
        raise CniError(
            INCOMPATIBLE_VERSION, "incompatible CNI versions",
            f"config is {version!r}, plugin supports {list(VERSIONS)}",
        )
    return version, config


def version_reply(text: str) -> bytes:
    """VERSION: the version asked for (the configuration's), and all supported."""
    try:
        asked = json_decode(text) if text.strip() else {}
    except JsonError:
        asked = {}
    version = asked.get("cniVersion") if isinstance(asked, dict) else None
    if not isinstance(version, str) or not version:
        version = LATEST
    return (json_obj({"cniVersion": version, "supportedVersions": list(VERSIONS)}) + "\n").encode()


def socket_path(config: dict[str, object]) -> str:
    configured = config.get("socket")
    return getenv("NETBAY_SOCKET") or (
        configured if isinstance(configured, str) and configured else SOCKET
    )


def run(env: dict[str, str], stdin: bytes) -> tuple[int, bytes]:
    """(exit code, stdout) of one invocation."""
    version = LATEST
    try:
        command = check_env(env)
        try:
            text = stdin.decode()
        except UnicodeDecodeError as exc:
            raise CniError(DECODING_FAILURE, f"error decoding network config: {exc}") from None
        if command == "VERSION":
            return 0, version_reply(text)
        version, config = check_config(command, text)
        body = json_obj(
            {
                "kind": KIND,
                "env": {k: env[k] for k in ENV_KEYS if k in env},
                "config": text.encode(),
            }
        )
        try:
            status, payload = call(
                socket_path(config), "/cni/" + command.lower(), body.encode(), DAEMON, ROOT
            )
        except Unreachable as exc:
            code = NOT_AVAILABLE if command == "STATUS" else TRY_AGAIN_LATER
            raise CniError(code, "netbay daemon unavailable", str(exc)) from None
        if 200 <= status < 300:
            return 0, payload
        if status == 400 and payload.lstrip().startswith(b"{"):
            return 1, payload  # the daemon's CNI error
        raise CniError(INTERNAL, f"netbay daemon error (HTTP {status})", payload.decode("replace"))
    except CniError as exc:
        return 1, (exc.json(version if version in VERSIONS else LATEST) + "\n").encode()


def main() -> int:
    env = environ("CNI_")
    try:
        stdin = sys.stdin.buffer.read()
    except OSError as exc:
        out((CniError(IO_FAILURE, f"error reading from stdin: {exc}").json() + "\n").encode())
        return 1
    if not env.get("CNI_COMMAND"):
        sys.stderr.write(f"CNI plugin {KIND} (netbay); CNI versions {', '.join(VERSIONS)}\n")
    try:
        code, data = run(env, stdin)
    except Exception as exc:  # never a traceback on a runtime's stdout
        code, data = 1, (CniError(INTERNAL, "internal error", repr(exc)).json() + "\n").encode()
    out(data)
    return code


if __name__ == "__main__":
    finish(main())
