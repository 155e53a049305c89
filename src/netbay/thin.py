"""What the runtime-facing executables share (the CNI plugin, the netavark-compatible
backend): JSON with json's C scanner alone, one HTTP/1.1 exchange with netbayd over its unix
socket, and starting netbayd when it is not running.

These executables run once per container operation, under `python -I -S`: only C modules
here (`_json`, `_socket`, `time`, `posix`; not even `os`), because importing `json` (it pulls
in `re`: 8 ms), `socket` (`enum`, `selectors`) or `subprocess` would cost more than
everything else they do. `netbay cni install` and `netbay podman install` copy this file's
code (between the markers) into each executable, so an installed executable imports nothing
of netbay's.
"""

# <thin>
import _json
import _socket
import posix
import sys
import time

DAEMON_WAIT = 30.0  # seconds for a starting netbayd to open its socket
REQUEST_TIMEOUT = 300.0


class JsonError(ValueError):
    """Not a JSON document (or not one these executables take: NaN, Infinity)."""


def _no_constant(name: str) -> object:
    raise JsonError(f"{name} is not JSON")


class _ScanContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_no_constant)
    memo: dict[str, object] = {}


_scan = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]
_BLANK = " \t\n\r"


def json_decode(text: str) -> object:
    """The value of a JSON document; JsonError says where it is not JSON."""
    start = len(text) - len(text.lstrip(_BLANK))
    if start == len(text):
        raise JsonError("unexpected end of JSON input")
    try:
        value, end = _scan(text, start)
    except StopIteration as stop:
        raise JsonError(f"invalid JSON at character {stop.value}") from None
    except JsonError:
        raise
    except SystemError:
        # The scanner reports a syntax error with json.decoder's JSONDecodeError, which
        # before Python 3.12 it only looks up in sys.modules (3.12 imports it). Imported
        # here, for a document refused anyway: it costs 8 ms, more than a whole call.
        if "json.decoder" in sys.modules:
            raise
        import json.decoder  # noqa: F401

        return json_decode(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise JsonError(f"invalid JSON: {exc}") from None
    if text[end:].strip(_BLANK):
        raise JsonError(f"invalid JSON: extra data at character {end}")
    return value


def json_str(value: str) -> str:
    return str(_json.encode_basestring_ascii(value))


def json_obj(items: dict[str, object]) -> str:
    """A flat object of strings, numbers, string lists, or raw JSON (bytes)."""
    parts = []
    for key, value in items.items():
        if isinstance(value, bytes):
            encoded = value.decode()
        elif isinstance(value, str):
            encoded = json_str(value)
        elif isinstance(value, bool):
            encoded = "true" if value else "false"
        elif isinstance(value, int):
            encoded = str(value)
        elif isinstance(value, dict):
            encoded = json_obj(value)
        elif isinstance(value, list | tuple):
            encoded = "[" + ",".join(json_str(str(v)) for v in value) + "]"
        else:
            encoded = "null"
        parts.append(json_str(key) + ":" + encoded)
    return "{" + ",".join(parts) + "}"


class Unreachable(Exception):
    """netbayd does not answer on its socket (and could not be started)."""


class _Busy(Exception):
    """The daemon's listen queue is full (connect: EAGAIN): nothing was sent, try again."""


def _exchange(socket_path: str, target: str, body: bytes) -> tuple[int, bytes]:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(REQUEST_TIMEOUT)
        try:
            sock.connect(socket_path)
        except BlockingIOError:
            raise _Busy() from None
        head = (
            f"POST {target} HTTP/1.1\r\nHost: netbay\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    data = b"".join(chunks)
    header, _, payload = data.partition(b"\r\n\r\n")
    status_line = header.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise Unreachable(f"netbayd answered something that is not HTTP on {socket_path}")
    return int(status_line[1]), payload


def getenv(name: str, default: str = "") -> str:
    value = posix.environ.get(name.encode())
    return default if value is None else value.decode(errors="surrogateescape")


def environ(prefix: str) -> dict[str, str]:
    return {
        k.decode(errors="surrogateescape"): v.decode(errors="surrogateescape")
        for k, v in posix.environ.items()
        if k.startswith(prefix.encode())
    }


def exists(path: str) -> bool:
    try:
        posix.stat(path)
    except OSError:
        return False
    return True


def _makedirs(path: str) -> None:
    parent = path.rsplit("/", 1)[0]
    if parent and not exists(parent):
        _makedirs(parent)
    try:
        posix.mkdir(path, 0o755)
    except FileExistsError:  # contextlib would be one more import
        return


def _start_daemon(argv: list[str], socket_path: str, root: str) -> None:
    """netbayd in its own session, output to its log; several callers may race here, the
    daemon's lock lets one win and the others exit quietly."""
    root = getenv("NETBAY_ROOT") or root
    argv = [*argv, "--socket", socket_path] + (["--root", root] if root else [])
    state = root or "/var/lib/netbay"
    _makedirs(state)
    log = posix.open(state + "/netbayd.log", posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT, 0o640)
    pid = posix.fork()
    if pid == 0:  # the child: become the daemon, holding none of the runtime's pipes
        try:
            posix.setsid()
            null = posix.open("/dev/null", posix.O_RDONLY)
            posix.dup2(null, 0)
            posix.dup2(log, 1)
            posix.dup2(log, 2)
            posix.closerange(3, 65536)
            posix.execv(argv[0], argv)
        finally:
            posix._exit(127)
    posix.close(log)


def call(
    socket_path: str, target: str, body: bytes, daemon: list[str], root: str
) -> tuple[int, bytes]:
    """POST BODY to TARGET on netbayd; start the daemon first if it is not running, and wait
    while it is starting or too busy to take the connection."""
    started = False
    deadline = time.monotonic() + DAEMON_WAIT
    while True:
        try:
            return _exchange(socket_path, target, body)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            if not daemon:
                raise Unreachable(f"netbayd is not running (no socket at {socket_path})") \
                    from exc
            if not started:
                _start_daemon(daemon, socket_path, root)
                started = True
                deadline = time.monotonic() + DAEMON_WAIT
        except _Busy:
            pass
        except OSError as exc:
            raise Unreachable(f"netbayd on {socket_path}: {exc}") from None
        if time.monotonic() > deadline:
            what = "did not start" if started else "did not take the connection"
            raise Unreachable(f"netbayd {what} within {DAEMON_WAIT:.0f}s (socket {socket_path})")
        time.sleep(0.02)


def out(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def finish(code: int) -> None:
    """Exit now, output flushed: the interpreter's own teardown would add ~2 ms and
    release nothing the kernel does not."""
    sys.stdout.flush()
    sys.stderr.flush()
    posix._exit(code)
# </thin>
