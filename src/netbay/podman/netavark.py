#!/usr/bin/env python3
"""A netavark-compatible network backend for podman: netavark's command line and JSON
contract, with netbayd doing the work (POST /netavark/setup|teardown, netbay.podman.daemon_side).

    netavark [--config DIR] [--rootless BOOL] [--aardvark-binary PATH] [-f FILE]
             setup|teardown NETNS | version

The network options come as JSON on stdin (or -f FILE); setup prints netavark's status
block (network name -> interfaces, addresses, DNS servers) on stdout; any failure prints
{"error": "..."} on stdout and exits 1. Podman picks it up as the first `netavark` in
containers.conf's [engine] helper_binaries_dir; `netbay podman install --dir DIR` writes it
there with the shebang `#!<python> -I -S`. Standard library only.
"""

import sys

# <thin>
from netbay.thin import (
    JsonError,
    Unreachable,
    call,
    exists,
    finish,
    getenv,
    json_decode,
    json_obj,
    out,
)

# </thin>

# <settings>
SOCKET = "/run/netbay/netbay.sock"
DAEMON: list[str] = []  # the argv that starts netbayd; empty: never start it
ROOT = ""  # netbayd's state root ("": its default, or $NETBAY_ROOT)
VERSION = "0.1.0"  # netbay's version
# </settings>

NETAVARK_VERSION = "1.4.0"  # the netavark whose contract this follows
_VALUE_OPTIONS = {
    "-f": "file", "--file": "file", "-c": "config", "--config": "config",
    "-r": "rootless", "--rootless": "rootless", "-a": "aardvark", "--aardvark-binary": "aardvark",
}
USAGE = "usage: netavark [--config DIR] [--rootless BOOL] [--aardvark-binary PATH] " \
    "[-f FILE] setup|teardown NETNS | version"


class Failure(Exception):
    pass


def parse_argv(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """(options, the subcommand and its arguments), as netavark's clap parser reads them."""
    options: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in _VALUE_OPTIONS:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise Failure(f"option {name} needs a value")
                value = argv[i]
            options[_VALUE_OPTIONS[name]] = value
        elif arg in ("-V", "--version"):
            options["version"] = "1"
        elif arg in ("-h", "--help"):
            options["help"] = "1"
        elif arg.startswith("-") and not rest:
            raise Failure(f"unknown option {arg}")
        else:
            rest.append(arg)
        i += 1
    return options, rest


def version_info() -> bytes:
    return (json_obj({
        "version": NETAVARK_VERSION,
        "commit": "netbay " + VERSION,
        "build_time": "",
        "target": "netbay",
    }) + "\n").encode()


def check_command(command: str, rest: list[str], options: dict[str, str]) -> str:
    """The network namespace of setup or teardown, once the command line is one netbay
    serves."""
    if command not in ("setup", "teardown"):
        raise Failure(f"unsupported command {command!r} (netbay serves setup, teardown, version)")
    if len(rest) != 2 or not rest[1]:
        raise Failure(f"{command} needs the network namespace path")
    netns = rest[1]
    rootless = options.get("rootless", "false").lower()
    if rootless not in ("true", "false"):
        raise Failure(f"invalid value {options['rootless']!r} for --rootless")
    if rootless == "true":
        raise Failure("netbay's netavark backend serves rootful podman only")
    if command == "setup" and not exists(netns):
        raise Failure(f"invalid namespace path: {netns} does not exist")
    return netns


def read_options(source: str, stdin: object) -> str:
    """The network options document (-f FILE, or stdin), once it is a JSON object."""
    try:
        if source and source != "-":
            with open(source, "rb") as handle:
                raw = handle.read()
        else:
            raw = stdin.read()  # type: ignore[attr-defined]
        text = raw.decode()
        document = json_decode(text)
    except OSError as exc:
        raise Failure(f"IO error: {exc}") from None
    except (UnicodeDecodeError, JsonError) as exc:
        raise Failure(f"JSON Decoding error: {exc}") from None
    if not isinstance(document, dict):
        raise Failure("JSON Decoding error: expected the network options object")
    return text


def run(argv: list[str], stdin: object) -> tuple[int, bytes]:
    options, rest = parse_argv(argv)
    if options.get("help"):
        return 0, (USAGE + "\n").encode()
    if options.get("version"):
        return 0, f"netavark {NETAVARK_VERSION} (netbay {VERSION})\n".encode()
    if not rest:
        raise Failure(USAGE)
    command = rest[0]
    if command == "version":
        return 0, version_info()
    netns = check_command(command, rest, options)
    text = read_options(options.get("file", ""), stdin)
    body = json_obj({
        "netns": netns,
        "config": options.get("config", ""),
        "input": text.encode(),
    })
    socket = getenv("NETBAY_SOCKET") or SOCKET
    try:
        status, payload = call(socket, "/netavark/" + command, body.encode(), DAEMON, ROOT)
    except Unreachable as exc:
        raise Failure(f"netbay daemon unavailable: {exc}") from None
    if 200 <= status < 300:
        return 0, payload
    if payload.lstrip().startswith(b'{"error"'):
        return 1, payload
    raise Failure(f"netbay daemon error (HTTP {status}): {payload.decode('replace').strip()}")


def main() -> int:
    try:
        code, data = run(sys.argv[1:], sys.stdin.buffer)
    except Failure as exc:
        code, data = 1, (json_obj({"error": str(exc)}) + "\n").encode()
    except Exception as exc:  # never a traceback where podman reads JSON
        code, data = 1, (json_obj({"error": f"internal error: {exc!r}"}) + "\n").encode()
    out(data)
    return code


if __name__ == "__main__":
    finish(main())
