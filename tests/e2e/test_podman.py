"""Podman 4.3.1 drives netbay, end to end, inside the test's throwaway host namespace:
- its CNI backend running a conflist of type netbay (two containers, a published port,
  nothing left after rm);
- its netavark backend running netbay's netavark-compatible executable (network create,
  two containers pinging by address and by name, a published port on 127.0.0.1, network
  reload, nothing left after rm).
Containers resolve names only through netbay's DNS server (dns_servers = the gateway)."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import podman_env
from helpers import Env, link_names, sh, wait_until
from runtimes import Cni, NetavarkCli

# podman, conmon and runc run from the test, outside the real host (they need its cgroups
# mounted and podman_env to run them through Env.enter)
pytestmark = [pytest.mark.kernel, pytest.mark.e2e, pytest.mark.shared_sys]
HTTPD = ("httpd", "-f", "-p", "80", "-h", "/www")
PAGE = "hello from podman via netbay\n"


@pytest.fixture
def podman_ready() -> None:
    why = podman_env.missing()
    if why:
        pytest.skip(why)


def make_podman(env: Env, tmp_path: Path, backend: str, gateway: str) -> podman_env.Podman:
    bin_dir = tmp_path / "bin"
    if backend == "cni":
        Cni(bin_dir, env.environ)
    else:
        NetavarkCli(bin_dir, env.environ)
    env.run("daemon", "start")
    return podman_env.Podman(tmp_path, env.environ, backend, bin_dir, [gateway])


@pytest.fixture
def cni_podman(podman_ready: None, env: Env, tmp_path: Path) -> Iterator[podman_env.Podman]:
    podman = make_podman(env, tmp_path, "cni", "10.90.1.1")
    try:
        podman.import_image()
        yield podman
    finally:
        podman.close()


@pytest.fixture
def nv_podman(podman_ready: None, env: Env, tmp_path: Path) -> Iterator[podman_env.Podman]:
    podman = make_podman(env, tmp_path, "netavark", "10.90.2.1")
    try:
        podman.import_image()
        yield podman
    finally:
        podman.close()


def fetch(url: str, deadline: float = 15) -> str:
    def page() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            return None  # not published yet, or the server is still starting

    return wait_until(page, deadline, f"a page from {url}", interval=0.2)


def netbay_state(env: Env) -> dict[str, Any]:
    networks = [json.loads(line)["Name"] for line in
                env.run("network", "ls", "--format", "json").stdout.splitlines()]
    return {
        "networks": sorted(networks),
        "containers": env.run("ps", "-a", "-q").stdout.split(),
        "links": sorted(link_names()),
        "nft": sh("nft list ruleset").stdout,
    }


def nft_tokens() -> list[str]:
    """netbay's ruleset as a sorted multiset of tokens, host veth names blanked."""
    text = re.sub(r"nbv[0-9a-f]{12}", "nbv*", sh("nft list ruleset").stdout)
    return sorted(re.findall(r"[^\s,{}]+", text))


def test_podman_cni_backend(env: Env, cni_podman: podman_env.Podman) -> None:
    podman = cni_podman
    conflist = {
        "cniVersion": "1.0.0",
        "name": "nbcni",
        "plugins": [{
            "type": "netbay", "bridge": "nbpod0", "subnet": "10.90.1.0/24",
            "isGateway": True, "ipMasq": True,
            "capabilities": {"portMappings": True, "ips": True, "mac": True, "aliases": True},
        }],
    }
    (podman.conf_dir / "nbcni.conflist").write_text(json.dumps(conflist))
    before = netbay_state(env)
    podman.start("web", "--network", "nbcni", "-p", "127.0.0.1:18400:80", command=HTTPD)
    podman.start("client", "--network", "nbcni", "--ip", "10.90.1.50", "--privileged")
    web_ip = podman.json("inspect", "web")[0]["NetworkSettings"]["Networks"]["nbcni"][
        "IPAddress"]
    client = podman.json("inspect", "client")[0]["NetworkSettings"]["Networks"]["nbcni"]
    assert client["IPAddress"] == "10.90.1.50"
    assert "nbpod0" in link_names()
    ping = podman.exec("client", "ping", "-c", "1", "-W", "2", web_ip, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    # by name too: podman passes K8S_POD_NAME, netbay's DNS server answers for it
    by_name = podman.exec("client", "ping", "-c", "1", "-W", "2", "web", check=False)
    assert by_name.returncode == 0 and web_ip in by_name.stdout, by_name.stdout + by_name.stderr
    assert fetch("http://127.0.0.1:18400/") == PAGE
    resolv = podman.exec("client", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 10.90.1.1" in resolv and "10.255." not in resolv
    members = env.json("network", "inspect", "nbcni")[0]["Containers"]
    assert len(members) == 2
    podman.run("rm", "-f", "-t", "0", "web", "client")
    assert netbay_state(env) == before


def test_podman_netavark_backend(env: Env, nv_podman: podman_env.Podman) -> None:
    podman = nv_podman
    before = netbay_state(env)
    podman.run("network", "create", "--subnet", "10.90.2.0/24", "nbpod")
    device = podman.json("network", "inspect", "nbpod")[0]["network_interface"]
    podman.start("web", "--network", "nbpod", "-p", "127.0.0.1:18401:80", command=HTTPD)
    podman.start("client", "--network", "nbpod", "--privileged")
    web_ip = podman.json("inspect", "web")[0]["NetworkSettings"]["Networks"]["nbpod"][
        "IPAddress"]
    assert device in link_names()
    netbay_net = env.json("network", "inspect", "nbpod")[0]
    assert netbay_net["Labels"]["netbay.runtime"] == "netavark"
    assert len(netbay_net["Containers"]) == 2

    def reachable() -> None:
        by_ip = podman.exec("client", "ping", "-c", "1", "-W", "2", web_ip, check=False)
        assert by_ip.returncode == 0, by_ip.stdout + by_ip.stderr
        by_name = podman.exec("client", "ping", "-c", "1", "-W", "2", "web", check=False)
        assert by_name.returncode == 0 and web_ip in by_name.stdout, by_name.stdout + \
            by_name.stderr
        assert fetch("http://127.0.0.1:18401/") == PAGE

    reachable()
    resolv = podman.exec("client", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 10.90.2.1" in resolv and "10.255." not in resolv
    nft_before = nft_tokens()
    podman.run("network", "reload", "--all")
    reachable()
    assert nft_tokens() == nft_before  # the same elements (new veths), none twice
    assert len(env.json("network", "inspect", "nbpod")[0]["Containers"]) == 2
    podman.run("rm", "-f", "-t", "0", "web", "client")
    assert netbay_state(env) == before
    assert device not in link_names()
    podman.run("network", "rm", "nbpod")
