"""The doctor's check that a running dockerd can use netbay's Docker plugin, against a fake
dockerd and a fake plugin, each an HTTP server on a unix socket in a temporary directory."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from socketserver import ThreadingUnixStreamServer
from typing import Any

import pytest

from netbay.observe.doctor import OK, SKIP, WARN, Finding, render
from netbay.observe.doctor_docker import check_docker_plugin

ACTIVATED = {"Implements": ["NetworkDriver", "IpamDriver"]}
NETBAY_NETWORKS = '/networks?filters=%7B%22driver%22%3A%20%5B%22netbay%22%5D%7D'
ENABLE = ("netbay docker install, then systemctl daemon-reload && systemctl restart "
          "netbayd.service (without systemd: start netbayd with NETBAY_DOCKER_PLUGIN={})")

Routes = dict[tuple[str, str], tuple[int, Any]]


class FakeServer:
    """Answers ROUTES[(method, target)] as JSON (a str as text); 404 otherwise. The requests
    it got, in order."""

    def __init__(self, path: Path, routes: Routes) -> None:
        self.requests: list[tuple[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                owner.requests.append((self.command, self.path))
                status, body = routes.get((self.command, self.path), (404, {"message": "no"}))
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = answer

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet (and a unix socket's client has no address to log)."""

        self.server = ThreadingUnixStreamServer(str(path), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    made: list[FakeServer] = []
    yield made
    for server in made:
        server.close()


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    path = tmp_path / "plugins"
    path.mkdir()
    return path


def dockerd(tmp_path: Path, servers: list[FakeServer], **routes: Any) -> tuple[dict[str, str],
                                                                            FakeServer]:
    """A dockerd answering _ping, and /info with ROUTES["info"], /networks?... with
    ROUTES["networks"]; netbayd's environment pointing at it."""
    path = tmp_path / "docker.sock"
    server = FakeServer(path, {
        ("GET", "/_ping"): (200, "OK"),
        ("GET", "/info"): (200, routes.get("info", {"Plugins": {"Network": ["bridge"]}})),
        ("GET", NETBAY_NETWORKS): (200, routes.get("networks", [])),
    })
    servers.append(server)
    return {"DOCKER_HOST": f"unix://{path}"}, server


def plugin(plugins: Path, servers: list[FakeServer], answer: Any = ACTIVATED) -> Path:
    path = plugins / "netbay.sock"
    servers.append(FakeServer(path, {("POST", "/Plugin.Activate"): (200, answer)}))
    return path


def test_a_plugin_dockerd_has_loaded_is_ok(
    tmp_path: Path, plugins: Path, servers: list[FakeServer]
) -> None:
    environ, docker = dockerd(tmp_path, servers,
                              info={"Plugins": {"Network": ["bridge", "netbay"]}})
    socket_path = plugin(plugins, servers)
    found = check_docker_plugin(environ, plugins)
    assert found == Finding("docker plugin", OK, f"dockerd ({tmp_path}/docker.sock) lists the "
                            f"netbay network plugin, served on {socket_path}")
    assert docker.requests == [("GET", "/_ping"), ("GET", "/info")]
    assert servers[1].requests == [("POST", "/Plugin.Activate")]


def test_a_plugin_not_yet_used_is_ok_when_it_answers_as_dockerd_would_ask(
    tmp_path: Path, plugins: Path, servers: list[FakeServer]
) -> None:
    environ, _ = dockerd(tmp_path, servers)
    socket_path = plugin(plugins, servers)
    found = check_docker_plugin(environ, plugins)
    assert (found.status, found.message) == (
        OK, f"the netbay plugin answers on {socket_path}, where dockerd "
        f"({tmp_path}/docker.sock) loads it when a network first uses -d netbay")


@pytest.mark.parametrize(
    ("served", "networks", "fails"),
    [
        (True, [], "`docker network create -d netbay` fails"),
        (False, [{"Name": "web"}, {"Name": "db"}],
         "its networks db, web of driver netbay cannot attach"),
    ],
)
def test_plugin_missing_while_netbayd_or_dockers_networks_want_it(
    tmp_path: Path, plugins: Path, servers: list[FakeServer], served: bool,
    networks: list[dict[str, str]], fails: str,
) -> None:
    environ, _ = dockerd(tmp_path, servers, networks=networks)
    if served:
        environ["NETBAY_DOCKER_PLUGIN"] = str(plugins / "netbay.sock")
    found = check_docker_plugin(environ, plugins)
    assert found == Finding(
        "docker plugin", WARN, f"dockerd runs ({tmp_path}/docker.sock) but no plugin socket "
        f"is at {plugins}/netbay.sock: {fails}", ENABLE.format(f"{plugins}/netbay.sock"))
    assert render([found.as_json()]).splitlines() == [
        f"[WARN] docker plugin: {found.message}",
        "       fix: " + ENABLE.format(f"{plugins}/netbay.sock"), "1 problem(s) found"]


def test_a_dockerd_that_does_not_use_netbay_is_skipped(
    tmp_path: Path, plugins: Path, servers: list[FakeServer]
) -> None:
    environ, _ = dockerd(tmp_path, servers)
    assert check_docker_plugin(environ, plugins) == Finding(
        "docker plugin", SKIP, f"skipped: dockerd ({tmp_path}/docker.sock) has no network of "
        "driver netbay and netbayd serves no plugin (netbay docker install)")


def test_served_where_dockerd_does_not_look(
    tmp_path: Path, plugins: Path, servers: list[FakeServer]
) -> None:
    environ, _ = dockerd(tmp_path, servers)
    environ["NETBAY_DOCKER_PLUGIN"] = str(tmp_path / "elsewhere.sock")
    found = check_docker_plugin(environ, plugins)
    assert (found.status, found.message) == (
        WARN, f"netbayd serves the plugin on {tmp_path}/elsewhere.sock, where dockerd "
        f"({tmp_path}/docker.sock) does not look: it finds netbay at {plugins}/netbay.sock")


def test_a_stale_socket_and_another_plugin(
    tmp_path: Path, plugins: Path, servers: list[FakeServer]
) -> None:
    environ, _ = dockerd(tmp_path, servers)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(plugins / "netbay.sock"))  # bound, never listening: refused
    stale.close()
    found = check_docker_plugin(environ, plugins)
    assert found.status == WARN and found.message == (
        f"dockerd runs ({tmp_path}/docker.sock) but {plugins}/netbay.sock does not answer "
        "([Errno 111] Connection refused): left by a netbayd that stopped?")
    assert found.fix == "systemctl restart netbayd.service (netbayd makes its socket again)"
    (plugins / "netbay.sock").unlink()
    plugin(plugins, servers, {"Implements": ["VolumeDriver"]})
    found = check_docker_plugin(environ, plugins)
    assert (found.status, found.message) == (
        WARN, f"dockerd runs ({tmp_path}/docker.sock) but {plugins}/netbay.sock implements "
        "VolumeDriver, not NetworkDriver, IpamDriver: another plugin holds the name netbay")


def test_no_dockerd_is_skipped(tmp_path: Path, plugins: Path) -> None:
    missing = {"DOCKER_HOST": f"unix://{tmp_path}/docker.sock"}
    assert check_docker_plugin(missing, plugins) == Finding(
        "docker plugin", SKIP, f"skipped: no dockerd (nothing answers on {tmp_path}/docker.sock)")
    remote = check_docker_plugin({"DOCKER_HOST": "tcp://10.0.0.1:2375"}, plugins)
    assert (remote.status, remote.message) == (
        SKIP, "skipped: DOCKER_HOST tcp://10.0.0.1:2375 is no local dockerd's socket")
    text = render([remote.as_json()])
    assert text == ("[skip] docker plugin: skipped: DOCKER_HOST tcp://10.0.0.1:2375 is no "
                    "local dockerd's socket\nno problems found")
