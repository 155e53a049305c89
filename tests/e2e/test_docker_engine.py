"""The real Docker engine (Debian's dockerd 20.10) drives netbay through its libnetwork
plugin: `docker network create -d netbay --ipam-driver netbay`, `docker run --network`,
connect/disconnect, publishing, bad input, and dockerd or netbayd going away. On a host of
its own (tests/docker_env.py DockerHost: its netbayd serves /run/docker/plugins/netbay.sock;
dockerd runs with --iptables=false --bridge=none, so whatever is programmed is netbay's).

A client namespace inside the host, on 198.51.100.0/24 over a veth, stands for another
machine reaching published ports."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from docker_env import IMAGE, DockerHost, docker_host_fixture
from helpers import wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

SUBNET = "10.71.0.0/24"
HOST_ADDRESS = "198.51.100.1"  # the host's end of the client's veth
SLEEP = ("sleep", "1000")
T = TypeVar("T")

docker_host = docker_host_fixture()


@pytest.fixture(scope="module")
def host(docker_host: DockerHost) -> DockerHost:
    """Docker network dn1 (SUBNET) through netbay, and the client namespace."""
    if docker_host.plugin_missing:
        pytest.skip(docker_host.plugin_missing)
    create(docker_host, "dn1", "--subnet", SUBNET)
    docker_host.run(["sh", "-c", f"""set -e
        ip netns add client
        ip link add ext0 type veth peer name eth0 netns client
        ip addr add {HOST_ADDRESS}/24 dev ext0; ip link set ext0 up
        ip -n client addr add 198.51.100.2/24 dev eth0; ip -n client link set eth0 up
        ip -n client link set lo up"""])
    return docker_host


@pytest.fixture
def containers(host: DockerHost) -> Iterator[list[str]]:
    """Names of the containers a test starts (`containers.append(name)`), removed after it."""
    started: list[str] = []
    yield started
    if started:
        host.docker("rm", "-f", *started, check=False)


def create(host: DockerHost, name: str, *args: str) -> str:
    """`docker network create -d netbay --ipam-driver netbay ARGS NAME`; Docker's id."""
    return host.docker("network", "create", "-d", "netbay", "--ipam-driver", "netbay",
                       *args, name).stdout.strip()


def docker_json(host: DockerHost, *args: str) -> Any:
    return json.loads(host.docker(*args).stdout)[0]


def netbay_network(host: DockerHost, docker_id: str) -> dict[str, Any]:
    """The netbay network labelled with Docker's id DOCKER_ID (netbay's inspect)."""
    listed = host.netbay("network", "ls", "-f", f"label=com.docker.network.id={docker_id}",
                         "--format", "{{.Name}}").stdout.split()
    assert len(listed) == 1, f"netbay networks of Docker's {docker_id}: {listed}"
    return dict(json.loads(host.netbay("network", "inspect", listed[0]).stdout)[0])


def netbay_members(host: DockerHost, docker_id: str) -> set[str]:
    """The addresses netbay's record holds on the network of Docker's DOCKER_ID."""
    return {m["IPv4Address"] for m in netbay_network(host, docker_id)["Containers"].values()}


def docker_members(host: DockerHost, network: str) -> set[str]:
    return {m["IPv4Address"]
            for m in docker_json(host, "network", "inspect", network)["Containers"].values()}


def address(host: DockerHost, container: str, network: str = "dn1") -> str:
    inspected = docker_json(host, "inspect", container)
    return str(inspected["NetworkSettings"]["Networks"][network]["IPAddress"])


def start(host: DockerHost, containers: list[str], name: str, *args: str,
          command: tuple[str, ...] = SLEEP) -> None:
    containers.append(name)
    host.docker("run", "-d", "--name", name, *args, IMAGE, *command)


def in_container(host: DockerHost, network: str, script: str) -> str:
    """SCRIPT's output in a `docker run --rm` container on NETWORK."""
    return host.docker("run", "--rm", "--network", network, IMAGE, "sh", "-c", script).stdout


def veths(host: DockerHost) -> set[str]:
    return {line.split()[1].split("@")[0].rstrip(":")
            for line in host.run(["ip", "-o", "link"]).stdout.splitlines()
            if line.split()[1].startswith("nbv")}


# --- networks -------------------------------------------------------------------------------
def test_network_create_shows_netbays_subnet_and_gateway_and_docker_id(host: DockerHost) -> None:
    docker_id = create(host, "dn-auto")
    try:
        docker = docker_json(host, "network", "inspect", "dn-auto")
        ours = netbay_network(host, docker_id)
        assert docker["Id"] == docker_id and docker["Driver"] == "netbay"
        assert ours["Labels"]["com.docker.network.id"] == docker_id
        assert docker["IPAM"]["Driver"] == "netbay"
        chosen = ours["IPAM"]["Config"][0]
        assert docker["IPAM"]["Config"] == [{"Subnet": chosen["Subnet"],
                                            "Gateway": chosen["Gateway"]}]
        assert ours["Name"] in host.netbay("network", "ls").stdout.split()
    finally:
        host.docker("network", "rm", "dn-auto")
    assert host.netbay("network", "ls", "-f", f"label=com.docker.network.id={docker_id}",
                       "-q").stdout.strip() == ""


# --- containers -----------------------------------------------------------------------------
def test_run_reaches_another_container_and_the_gateway(
    host: DockerHost, containers: list[str]
) -> None:
    start(host, containers, "a1", "--network", "dn1")
    peer = address(host, "a1")
    docker_id = docker_json(host, "network", "inspect", "dn1")["Id"]
    # Docker shows the gateway only when its IPAM config came without a subnet
    gateway = netbay_network(host, docker_id)["IPAM"]["Config"][0]["Gateway"]
    out = in_container(host, "dn1", f"ping -c 1 -W 2 {peer} && ping -c 1 -W 2 {gateway} && "
                                    "ip route")
    assert out.count("1 packets received") == 2, out
    assert f"default via {gateway} dev eth0" in out
    assert f"{peer}/24" in netbay_members(host, docker_id)
    assert docker_members(host, "dn1") == netbay_members(host, docker_id)


def test_ip_mac_and_alias_are_honoured(host: DockerHost, containers: list[str]) -> None:
    start(host, containers, "a2", "--network", "dn1", "--ip", "10.71.0.50",
          "--mac-address", "02:42:0a:47:00:32", "--network-alias", "db")
    inside = host.docker("exec", "a2", "ip", "-o", "addr", "show", "dev", "eth0").stdout
    assert "inet 10.71.0.50/24" in inside
    assert "link/ether 02:42:0a:47:00:32" in host.docker("exec", "a2", "ip", "-o", "link",
                                                         "show", "dev", "eth0").stdout
    resolved = in_container(host, "dn1", "cat /etc/resolv.conf; nslookup db")
    assert "nameserver 127.0.0.11" in resolved  # Docker's own DNS, as for its drivers
    assert "Address: 10.71.0.50" in resolved.split("Name:")[1], resolved


def test_network_connect_and_disconnect(host: DockerHost, containers: list[str]) -> None:
    docker_id = create(host, "dn2", "--subnet", "10.72.0.0/24")
    try:
        start(host, containers, "a3", "--network", "dn1")
        host.docker("network", "connect", "--ip", "10.72.0.9", "dn2", "a3")
        assert "inet 10.72.0.9/24" in host.docker("exec", "a3", "ip", "-o", "addr").stdout
        assert netbay_members(host, docker_id) == {"10.72.0.9/24"}
        host.docker("network", "disconnect", "dn2", "a3")
        assert "10.72.0.9" not in host.docker("exec", "a3", "ip", "-o", "addr").stdout
        assert netbay_members(host, docker_id) == set()
    finally:
        host.docker("rm", "-f", "a3")
        host.docker("network", "rm", "dn2")


# --- publishing -----------------------------------------------------------------------------
def web(host: DockerHost, containers: list[str], name: str, published: str) -> None:
    """busybox httpd answering 'from NAME' on port 80, published as PUBLISHED."""
    start(host, containers, name, "--network", "dn1", "-p", published, command=(
        "sh", "-c", f"mkdir /www && echo from {name} > /www/index.html && "
                    "exec httpd -f -p 80 -h /www"))


def fetch(host: DockerHost, url: str, *, client: bool = True) -> str:
    """URL fetched from the client namespace (CLIENT) or from the host itself; '' if none."""
    enter = ["ip", "netns", "exec", "client"] if client else []
    program = ("import sys, urllib.request\ntry: print(urllib.request.urlopen(sys.argv[1], "
               "timeout=2).read().decode())\nexcept OSError: pass")
    return host.run([*enter, "python3", "-c", program, url]).stdout.strip()


def test_published_ports_go_through_netbays_nftables(
    host: DockerHost, containers: list[str]
) -> None:
    web(host, containers, "w1", "8080:80")
    web(host, containers, "w2", "127.0.0.1:8081:80")
    assert wait_until(lambda: fetch(host, f"http://{HOST_ADDRESS}:8080/"), 10,
                      "w1 through the published port") == "from w1"
    assert fetch(host, "http://127.0.0.1:8081/", client=False) == "from w2"
    assert fetch(host, f"http://{HOST_ADDRESS}:8081/") == ""  # bound to the host's lo only
    ruleset = host.run(["nft", "list", "table", "inet", "netbay"]).stdout
    assert "8080" in ruleset and "8081" in ruleset
    processes = host.run(["ps", "-eo", "comm"]).stdout.split()
    assert "docker-proxy" not in processes
    assert [line for line in host.run(["iptables-save"]).stdout.splitlines()
            if line.startswith("-A")] == []
    host.docker("rm", "-f", "w1", "w2")
    containers.clear()
    ruleset = host.run(["nft", "list", "table", "inet", "netbay"]).stdout
    assert "8080" not in ruleset and "8081" not in ruleset


# --- bad input ------------------------------------------------------------------------------
def settled(state: Callable[[], T]) -> T:
    """STATE once two readings 0.2 s apart agree (a container removed just before takes its
    bridge's carrier down a moment later)."""
    readings = [state()]
    for _ in range(25):
        time.sleep(0.2)
        readings.append(state())
        if readings[-1] == readings[-2]:
            return readings[-1]
    raise AssertionError(f"the host's state did not settle: {readings[-2:]}")


@pytest.mark.parametrize(("options", "expected"), [
    (["-o", "netbay.driver=bogus"], "unknown driver (known: bridge, "),
    (["--subnet", "10.71.0.0/25"], "overlaps 10.71.0.0/24 of network "),
    (["-o", "netbay.driver=bridge", "-o", "netbay.overlay.vni=77"],
     "invalid opt 'netbay.overlay.vni': unknown option for driver bridge"),
])
def test_bad_input_shows_netbays_line_and_changes_nothing(
    host: DockerHost, options: list[str], expected: str
) -> None:
    before = settled(lambda: (host.docker("network", "ls", "-q").stdout,
                              host.netbay("network", "ls").stdout, host.kernel_state()))
    refused = host.docker("network", "create", "-d", "netbay", "--ipam-driver", "netbay",
                          *options, "bad", check=False)
    assert refused.returncode != 0
    line = refused.stderr.strip()
    assert "\n" not in line and line.startswith("Error response from daemon: "), line
    assert expected in line
    assert (host.docker("network", "ls", "-q").stdout, host.netbay("network", "ls").stdout,
            host.kernel_state()) == before


# --- dockerd and netbayd going away ---------------------------------------------------------
def test_dockerd_restarted_keeps_networks_and_endpoints(
    host: DockerHost, containers: list[str]
) -> None:
    docker_id = docker_json(host, "network", "inspect", "dn1")["Id"]
    start(host, containers, "r1", "--network", "dn1", "--restart", "always")
    host.stop_runtime("dockerd", signal.SIGTERM)
    host.start_dockerd()
    assert docker_json(host, "network", "inspect", "dn1")["Id"] == docker_id
    wait_until(lambda: docker_json(host, "inspect", "r1")["State"]["Running"], 20,
               "r1 running again")
    peer = address(host, "r1")
    assert "1 packets received" in in_container(host, "dn1", f"ping -c 1 -W 2 {peer}")
    assert docker_members(host, "dn1") == netbay_members(host, docker_id)
    assert len(veths(host)) == len(netbay_members(host, docker_id))


def test_dockerd_killed_and_restarted_leaks_nothing(
    host: DockerHost, containers: list[str]
) -> None:
    docker_id = create(host, "dn3", "--subnet", "10.73.0.0/24")
    veths_before = veths(host)
    start(host, containers, "k1", "--network", "dn3")
    start(host, containers, "k2", "--network", "dn3", "--restart", "always")
    host.stop_runtime("dockerd", signal.SIGKILL)
    host.start_dockerd()
    wait_until(lambda: docker_members(host, "dn3") == netbay_members(host, docker_id), 20,
               "netbay's record of dn3 to match Docker's endpoints")
    host.docker("rm", "-f", "k1", "k2")
    containers.clear()
    host.netbay("system", "gc")
    assert netbay_members(host, docker_id) == set()
    assert veths(host) == veths_before
    host.docker("network", "rm", "dn3")
    assert host.netbay("network", "ls", "-q", "-f",
                       f"label=com.docker.network.id={docker_id}").stdout.strip() == ""


def test_netbayd_restarted_while_dockerd_runs(host: DockerHost, containers: list[str]) -> None:
    docker_id = docker_json(host, "network", "inspect", "dn1")["Id"]
    web(host, containers, "n1", "8090:80")
    members = netbay_members(host, docker_id)
    host.restart_netbayd()
    assert netbay_members(host, docker_id) == members
    assert wait_until(lambda: fetch(host, f"http://{HOST_ADDRESS}:8090/"), 10,
                      "n1's published port after the restart") == "from n1"
    start(host, containers, "n2", "--network", "dn1")  # Docker's next calls succeed
    peer = address(host, "n2")
    assert "1 packets received" in in_container(host, "dn1", f"ping -c 1 -W 2 {peer}")
    host.docker("rm", "-f", "n2")
    containers.remove("n2")
    assert netbay_members(host, docker_id) == members
