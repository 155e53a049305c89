"""containerd 1.6 (Debian's) drives netbay through `ctr run --cni`: ctr runs the CNI plugins
in /opt/cni/bin with the first conflist in /etc/cni/net.d, passes CNI_NETNS=/proc/PID/ns/net
and never sends DEL for `ctr run -d` containers. All of it on a host of its own
(tests/docker_env.py DockerHost: its own netbayd, containerd, /opt and /etc/cni/net.d)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from docker_env import CNI_CONF_DIR, IMAGE, DockerHost, docker_host_fixture
from helpers import wait_until

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

GRACE = 1.0  # seconds: NETBAY_VANISHED_GRACE of the host's netbayd
SUBNET = "10.61.0.0/24"
GATEWAY = "10.61.0.1"
CONFLIST = {"cniVersion": "1.0.0", "name": "ctrnet",
            "plugins": [{"type": "netbay", "network": "asgard"}]}

docker_host = docker_host_fixture(settings={"NETBAY_VANISHED_GRACE": str(GRACE)})


@pytest.fixture(scope="module")
def host(docker_host: DockerHost) -> DockerHost:
    """netbay network asgard, the conflist ctr finds, and netbay's own container web on
    asgard answering TCP on 7001."""
    docker_host.netbay("network", "create", "--subnet", SUBNET, "asgard")
    docker_host.run(["sh", "-c", f"cat > {CNI_CONF_DIR}/10-netbay.conflist <<'EOF'\n"
                                 f"{json.dumps(CONFLIST)}\nEOF"])
    docker_host.netbay("run", "-d", "--name", "web", "--network", "asgard", "--", "python3",
                       "-c", "import socket; s = socket.create_server(('0.0.0.0', 7001))\n"
                       "while True: c = s.accept()[0]; c.sendall(b'from web'); c.close()")
    return docker_host


def members(host: DockerHost) -> dict[str, dict[str, Any]]:
    """asgard's attachments by name: {name: {"IPv4Address": ..., "EndpointID": ...}}."""
    inspected = json.loads(host.netbay("network", "inspect", "asgard").stdout)[0]
    return {member["Name"]: member for member in inspected["Containers"].values()}


def address(host: DockerHost, name: str) -> str:
    return str(members(host)[name]["IPv4Address"]).split("/")[0]


def test_ctr_run_cni_gets_netbays_address_reaches_a_container_and_netbays_dns(
    host: DockerHost,
) -> None:
    web = address(host, "web")
    script = (f"ip -4 -o addr show dev eth0; ip route; echo; nc {web} 7001 </dev/null; echo; "
              f"nslookup web {GATEWAY}")
    out = host.ctr("run", "--rm", "--cni", IMAGE, "c1", "sh", "-c", script).stdout
    own = out.split()[3]  # 'N: eth0 inet ADDRESS/24 ...'
    assert own.endswith("/24") and own.startswith("10.61.0."), out
    assert own != f"{web}/24"
    assert f"default via {GATEWAY} dev eth0" in out
    assert "from web" in out  # TCP to netbay's container on the same network
    # netbay's DNS server (at the gateway) knows netbay's container by its name
    assert f"Address: {web}" in out.split(f"Server:\t\t{GATEWAY}")[1], out
    # --rm: ctr removed the task and the container, and the attachment went with them
    wait_until(lambda: set(members(host)) == {"web"}, 10, "c1's attachment to be released")


def test_ctr_run_detached_is_released_when_its_namespace_is_gone(host: DockerHost) -> None:
    """ctr sends no DEL when a task and its container are removed: netbayd releases the
    attachment (record, lease, veth) once the namespace has been gone for the grace."""
    links_before = host.run(["ip", "-o", "link"]).stdout
    host.ctr("run", "-d", "--cni", IMAGE, "c2", "sleep", "1000")
    name = f"cni-{host.cgroup_parent}-c2"  # ctr's CNI_CONTAINERID: <namespace>-<id>
    record = wait_until(lambda: members(host).get(name, {}), 10, "c2's record")
    veth = f"nbv{record['EndpointID'][:12]}"
    assert veth in host.run(["ip", "-o", "link"]).stdout
    assert host.ctr("task", "exec", "--exec-id", "probe", "c2", "ip", "-4", "-o", "addr",
                    "show", "dev", "eth0").stdout.split()[3] == record["IPv4Address"]

    host.ctr("task", "kill", "-s", "KILL", "c2")
    wait_until(lambda: "STOPPED" in host.ctr("task", "ls").stdout, 10, "c2's task to stop")
    host.ctr("task", "rm", "c2")
    host.ctr("container", "rm", "c2")

    wait_until(lambda: name not in members(host), GRACE + 10, "c2's record to be released")
    assert set(members(host)) == {"web"}
    assert host.run(["ip", "-o", "link"]).stdout == links_before  # the veth is gone
    log = (host.state / "netbayd.log").read_text()
    assert f"released {name} (" in log, log[-2000:]
    # the lease went with it: the next attachment gets the address c2 had
    again = host.ctr("run", "--rm", "--cni", IMAGE, "c3", "ip", "-4", "-o", "addr", "show",
                     "dev", "eth0").stdout
    assert again.split()[3] == record["IPv4Address"]
