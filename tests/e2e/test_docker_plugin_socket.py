"""netbayd's Docker plugin socket driven with the exact calls dockerd 20.10 makes for
`docker network create -d netbay --ipam-driver netbay` and `docker run -p`, in the test's
throwaway host namespace; the test does what Docker does with the link (moves it into the
sandbox, names it eth0, gives it its address and the gateway), and checks the kernel."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import PROBE, Env, api_get, link_names, sh, tcp_answer, wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]
NETWORK = "5d4c3b2a19f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e"
ENDPOINT = "7e6d5c4b3a291807f6e5d4c3b2a19081726354453627180918273645546372819"
PORTMAP = [
    {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 18400, "HostPortEnd": 18400},
    {"Proto": 6, "IP": "", "Port": 80, "HostIP": "127.0.0.1", "HostPort": 18401,
     "HostPortEnd": 18401},
]


class Plugin:
    """Docker's plugin client: HTTP/1.1 POSTs of JSON on the unix socket."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def call(self, method: str, body: dict[str, Any] | None = None) -> Any:
        data = b"" if body is None else json.dumps(body).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(self.path))
            sock.sendall(
                f"POST /{method} HTTP/1.1\r\nHost: plugin\r\nConnection: close\r\n"
                "Content-Type: application/vnd.docker.plugins.v1.2+json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        head, _, payload = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), raw
        reply = json.loads(payload)
        assert not reply.get("Err") and not reply.get("Error"), reply
        return reply


def ns(path: Path, command: str) -> subprocess.CompletedProcess[str]:
    return sh(f"nsenter --net={path} {command}")


def test_network_create_run_publish_and_remove(
    env: Env, tmp_path: Path, namespaces: Any
) -> None:
    socket_path = tmp_path / "plugins" / "netbay.sock"
    env.environ["NETBAY_DOCKER_PLUGIN"] = str(socket_path)
    env.run("daemon", "start")
    wait_until(socket_path.exists, 10, "the plugin socket")
    plugin = Plugin(socket_path)
    before = link_names()
    assert plugin.call("Plugin.Activate") == {"Implements": ["NetworkDriver", "IpamDriver"]}
    assert plugin.call("NetworkDriver.GetCapabilities")["Scope"] == "local"
    pool = plugin.call("IpamDriver.RequestPool", {"AddressSpace": "netbay", "Pool": "10.66.5.0/24",
                                                  "SubPool": "", "Options": {}, "V6": False})
    gateway = plugin.call("IpamDriver.RequestAddress", {
        "PoolID": pool["PoolID"], "Address": "",
        "Options": {"RequestAddressType": "com.docker.network.gateway"}})
    assert gateway["Address"] == "10.66.5.1/24"
    plugin.call("NetworkDriver.CreateNetwork", {
        "NetworkID": NETWORK,
        "Options": {"com.docker.network.enable_ipv6": False, "com.docker.network.generic": {}},
        "IPv4Data": [{"AddressSpace": "netbay", "Pool": pool["Pool"],
                      "Gateway": gateway["Address"]}]})
    network = env.json("network", "inspect", f"docker-{NETWORK[:12]}")[0]
    bridge = f"br-{network['Id'][:12]}"
    assert bridge in link_names()
    address = plugin.call("IpamDriver.RequestAddress",
                          {"PoolID": pool["PoolID"], "Address": "", "Options": {}})["Address"]
    assert address == "10.66.5.2/24"
    created = plugin.call("NetworkDriver.CreateEndpoint", {
        "NetworkID": NETWORK, "EndpointID": ENDPOINT, "Options": {},
        "Interface": {"Address": address, "AddressIPv6": "", "MacAddress": ""}})
    mac = created["Interface"]["MacAddress"]
    sandbox = namespaces("sandbox")
    joined = plugin.call("NetworkDriver.Join", {"NetworkID": NETWORK, "EndpointID": ENDPOINT,
                                                "SandboxKey": str(sandbox), "Options": {}})
    src = joined["InterfaceName"]["SrcName"]
    assert joined["InterfaceName"]["DstPrefix"] == "eth"
    assert joined["Gateway"] == "10.66.5.1"
    assert src in link_names()  # in the host's namespace, for Docker to take
    # what Docker's sandbox code does with it
    sh(f"ip link set {src} netns {sandbox}")
    ns(sandbox, f"ip link set {src} name eth0")
    ns(sandbox, f"ip addr add {address} dev eth0")
    ns(sandbox, "ip link set eth0 up")
    ns(sandbox, f"ip route add default via {joined['Gateway']}")
    link = json.loads(ns(sandbox, "ip -j link show eth0").stdout)[0]
    assert link["address"] == mac
    [port] = [name for name in link_names() - before if name.startswith("nbv")]
    assert json.loads(sh(f"ip -j link show {port}").stdout)[0]["master"] == bridge
    ns(sandbox, "ping -c 1 -W 2 10.66.5.1")

    plugin.call("NetworkDriver.ProgramExternalConnectivity", {
        "NetworkID": NETWORK, "EndpointID": ENDPOINT,
        "Options": {"com.docker.network.portmap": PORTMAP,
                    "com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}]}})
    assert plugin.call("NetworkDriver.EndpointOperInfo", {
        "NetworkID": NETWORK, "EndpointID": ENDPOINT})["Value"]["netbay.ports"] == [
        "80/tcp -> 0.0.0.0:18400", "80/tcp -> 127.0.0.1:18401"]
    server = subprocess.Popen(["nsenter", f"--net={sandbox}", sys.executable, PROBE,
                               "tcp-serve", "80"])
    try:
        wait_until(lambda: "saw" in tcp_answer("10.66.5.1", 18400), 20, "the published port")
        wait_until(lambda: "saw" in tcp_answer("127.0.0.1", 18401), 20, "the 127.0.0.1 port")
        # hairpin: the container reaches its own published port by the host's address
        hairpin = ns(sandbox, f"{sys.executable} {PROBE} tcp 10.66.5.1 18400").stdout
        assert "saw" in hairpin, hairpin
        plugin.call("NetworkDriver.RevokeExternalConnectivity",
                    {"NetworkID": NETWORK, "EndpointID": ENDPOINT})
        assert "saw" not in tcp_answer("10.66.5.1", 18400)
    finally:
        server.kill()
        server.wait()

    ids = {"NetworkID": NETWORK, "EndpointID": ENDPOINT}
    plugin.call("NetworkDriver.Leave", ids)
    # Docker then hands the link back, named as before, and deletes the endpoint
    ns(sandbox, "ip link set eth0 down")
    ns(sandbox, f"ip link set eth0 name {src}")
    ns(sandbox, f"ip link set {src} netns /proc/{env.daemon_pid()}/ns/net")
    plugin.call("NetworkDriver.DeleteEndpoint", ids)
    assert src not in link_names() and port not in link_names()
    plugin.call("IpamDriver.ReleaseAddress", {"PoolID": pool["PoolID"], "Address": address})
    plugin.call("NetworkDriver.DeleteNetwork", {"NetworkID": NETWORK})
    plugin.call("IpamDriver.ReleasePool", {"PoolID": pool["PoolID"]})
    assert bridge not in link_names()
    assert api_get(env.paths, "/containers/json?all=1") == (200, [])  # the sandbox record
    env.stop_daemon()
    assert not socket_path.exists()
    assert not (env.paths.root / "docker-staging").exists()
