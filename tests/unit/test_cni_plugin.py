"""The CNI plugin executable's own logic (no daemon, no root): its JSON codec, the checks of
environment and configuration in the spec's order and codes, VERSION, and how it starts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netbay.cni import plugin
from netbay.cni.plugin import CniError, check_config, check_env, parse_args, run
from netbay.install import install_cni, install_netavark
from netbay.thin import JsonError, json_decode, json_obj

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)


@given(json_values)
def test_json_decode_reads_what_json_writes(value: Any) -> None:
    assert json_decode(json.dumps(value)) == value
    assert json_decode(json.dumps(value, indent=2, ensure_ascii=False)) == value


@given(st.text(max_size=40))
def test_json_decode_agrees_with_json_on_any_text(text: str) -> None:
    try:
        expected = json.loads(text)
    except (ValueError, RecursionError):
        with pytest.raises(JsonError):
            json_decode(text)
        return
    if any(c in text for c in ("NaN", "Infinity")):  # Python's extension, not JSON
        with pytest.raises(JsonError):
            json_decode(text)
        return
    assert json_decode(text) == expected


@given(st.dictionaries(st.text(), st.text() | st.integers() | st.booleans()
                       | st.lists(st.text(), max_size=3)))
def test_json_obj_writes_json(items: dict[str, Any]) -> None:
    assert json.loads(json_obj(items)) == {
        k: list(v) if isinstance(v, list) else v for k, v in items.items()
    }


def env(**values: str) -> dict[str, str]:
    base = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x",
            "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}
    base.update(values)
    return {k: v for k, v in base.items() if v != ""}


@pytest.mark.parametrize(
    ("environ", "code", "msg"),
    [
        (env(CNI_COMMAND=""), 4, "required env variables [CNI_COMMAND] missing"),
        (env(CNI_NETNS=""), 4, "required env variables [CNI_NETNS] missing"),
        (env(CNI_CONTAINERID="", CNI_IFNAME=""), 4,
         "required env variables [CNI_CONTAINERID,CNI_IFNAME] missing"),
        (env(CNI_COMMAND="DEL", CNI_IFNAME=""), 4, "[CNI_IFNAME] missing"),
        (env(CNI_COMMAND="GC", CNI_PATH=""), 4, "required env variables [CNI_PATH] missing"),
        (env(CNI_COMMAND="ADDD"), 4, "unknown CNI_COMMAND: ADDD"),
        (env(CNI_CONTAINERID="a b"), 4, "invalid characters in containerID"),
        (env(CNI_CONTAINERID="_x"), 4, "invalid characters in containerID"),
        (env(CNI_CONTAINERID="ctr\u00e9"), 4, "invalid characters in containerID"),
        (env(CNI_IFNAME="x" * 16), 4, "interface name is too long"),
        (env(CNI_IFNAME=".."), 4, "interface name is . or .."),
        (env(CNI_IFNAME="eth 0"), 4, "interface name contains"),
        (env(CNI_ARGS="A=1"), 4, "CNI_ARGS: unknown args ['A']"),
        (env(CNI_ARGS="IgnoreUnknown=maybe"), 4, "IgnoreUnknown='maybe' is not a boolean"),
        (env(CNI_ARGS="K8S_POD_NAME"), 4, "CNI_ARGS: invalid pair"),
    ],
)
def test_environment_errors(environ: dict[str, str], code: int, msg: str) -> None:
    with pytest.raises(CniError) as caught:
        check_env(environ)
    assert caught.value.code == code and msg in caught.value.msg


def test_environment_accepted() -> None:
    assert check_env(env(CNI_COMMAND="DEL", CNI_NETNS="")) == "DEL"  # DEL: namespace optional
    assert check_env({"CNI_COMMAND": "STATUS"}) == "STATUS"
    assert check_env({"CNI_COMMAND": "VERSION"}) == "VERSION"
    assert parse_args("IgnoreUnknown=1;K8S_POD_NAME=web;X=y") == {
        "IgnoreUnknown": "1", "K8S_POD_NAME": "web", "X": "y"}
    assert parse_args("IP=10.1.0.5;MAC=02:00:00:00:00:01")["IP"] == "10.1.0.5"


@pytest.mark.parametrize(
    ("command", "config", "code", "msg"),
    [
        ("ADD", "{", 6, "error decoding network config"),
        ("ADD", "3", 6, "not a JSON object"),
        ("ADD", '{"name": 3}', 6, "name is not a string"),
        ("ADD", '{"cniVersion": "1.0.0"}', 7, "missing network name"),
        ("ADD", '{"name": "a/b", "cniVersion": "1.0.0"}', 7,
         "invalid characters found in network name"),
        ("ADD", '{"name": "n"}', 1, "incompatible CNI versions"),
        ("ADD", '{"name": "n", "cniVersion": "0.2.0"}', 1, "incompatible CNI versions"),
        ("ADD", '{"name": "n", "cniVersion": [1]}', 6, "cniVersion is not a string"),
        ("CHECK", '{"name": "n", "cniVersion": "0.3.1"}', 1, "does not allow CHECK"),
        ("CHECK", '{"name": "n", "cniVersion": "x.y"}', 6, "unable to parse version"),
        ("GC", '{"name": "n", "cniVersion": "1.0.0"}', 1, "does not allow GC"),
        ("STATUS", '{"name": "n", "cniVersion": "0.4.0"}', 1, "does not allow STATUS"),
    ],
)
def test_configuration_errors_in_the_spec_order(
    command: str, config: str, code: int, msg: str
) -> None:
    with pytest.raises(CniError) as caught:
        check_config(command, config)
    assert caught.value.code == code and msg in caught.value.msg


def test_version_reply_and_unreachable_daemon(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = run({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    assert code == 0
    assert json.loads(out) == {"cniVersion": "0.4.0", "supportedVersions": list(plugin.VERSIONS)}
    assert json.loads(run({"CNI_COMMAND": "VERSION"}, b"")[1])["cniVersion"] == "1.1.0"
    monkeypatch.setenv("NETBAY_SOCKET", str(tmp_path / "none.sock"))
    monkeypatch.setattr(plugin, "DAEMON", [])
    conf = b'{"cniVersion": "1.1.0", "name": "n", "type": "netbay", "network": "x"}'
    code, out = run(env(), conf)
    error = json.loads(out)
    assert (code, error["code"], error["cniVersion"]) == (1, 11, "1.1.0")
    assert "netbay daemon unavailable" in error["msg"]
    status = json.loads(run({"CNI_COMMAND": "STATUS"}, conf)[1])
    assert status["code"] == 50


@settings(max_examples=300)
@given(command=st.sampled_from(["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION", "X", ""]),
       stdin=st.binary(max_size=60) | json_values.map(lambda v: json.dumps(v).encode()))
def test_run_never_raises_and_answers_in_the_spec_shape(
    command: str, stdin: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    plugin.DAEMON = []
    socket = str(tmp_path_factory.getbasetemp() / "no.sock")
    import os

    os.environ["NETBAY_SOCKET"] = socket
    try:
        code, out = run(env(CNI_COMMAND=command), stdin)
    finally:
        os.environ.pop("NETBAY_SOCKET", None)
    answer = json.loads(out)
    if code:
        assert set(answer) <= {"cniVersion", "code", "msg", "details"}
        assert answer["code"] in {1, 2, 4, 6, 7, 11, 50}
    else:
        assert command == "VERSION" and "supportedVersions" in answer


IMPORTS_ALLOWED = {"_json", "_socket", "posix", "marshal", "sys", "time"}


@pytest.mark.parametrize("source", [False, True])
def test_installed_executables_start_without_netbay_or_heavy_imports(
    tmp_path: Path, source: bool
) -> None:
    plugin_path, ipam_path = install_cni(tmp_path, source=source)
    netavark_path = install_netavark(tmp_path, source=source)
    first = plugin_path.read_text().splitlines()[0]
    assert first.startswith("#!/") and first.endswith(" -IS")
    for path, stdin, argv in (
        (plugin_path, b'{"cniVersion":"1.0.0"}', []),
        (ipam_path, b"", []),
        (netavark_path, b"", ["version"]),
    ):
        python = first[2:].split()[0]
        out = subprocess.run(
            [python, "-I", "-S", "-X", "importtime", str(path), *argv], input=stdin,
            capture_output=True, env={"CNI_COMMAND": "VERSION"}, timeout=30,
        )
        assert out.returncode == 0, out.stderr
        imported = {line.split("|")[-1].strip() for line in out.stderr.decode().splitlines()
                    if line.startswith("import time:") and "imported package" not in line}
        imported -= {"", "imported package", "package"}
        startup = {"_io", "marshal", "_frozen_importlib_external", "posix", "_codecs", "codecs",
                   "encodings.aliases", "encodings", "encodings.utf_8", "_signal", "_abc", "abc",
                   "io", "zipimport", "time", "_thread", "_warnings", "_weakref", "_imp",
                   "_frozen_importlib"}
        assert imported - startup - IMPORTS_ALLOWED == set(), imported
        json.loads(out.stdout)
    # the executables are the package's scripts (settings aside): same answers
    assert subprocess.run([str(plugin_path)], input=b"{", capture_output=True,
                          env={"CNI_COMMAND": "ADD"}).returncode == 1


def test_call_waits_while_the_daemon_is_too_busy_to_accept(tmp_path: Path) -> None:
    """A starting daemon has bound its socket but accepts nothing yet: its listen queue
    fills and connect says EAGAIN. Nothing was sent; the executable tries again."""
    import contextlib
    import socket
    import threading
    import time

    from netbay import thin

    path = str(tmp_path / "busy.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(0)
    waiting = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
    for s in waiting:  # fill the queue
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(path)

    def serve() -> None:
        time.sleep(0.3)
        for s in waiting:  # the queued ones hang up: accept drains them
            s.close()
        while True:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(2)
                data = conn.recv(65536)
                if b"/cni/status" in data:
                    conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                    return

    worker = threading.Thread(target=serve, daemon=True)
    worker.start()
    try:
        assert thin.call(path, "/cni/status", b"{}", [], "") == (204, b"")
    finally:
        worker.join(5)
        server.close()
