"""The real docker command-line client against netbayd's Docker-Engine-compatible API.

The client runs with `-H unix://<the test's socket>` and a throwaway DOCKER_CONFIG, inside the
test's own network namespace; every outcome is checked on netbay's record and on the kernel.
NETBAY_DOCKER picks another client binary (e.g. Debian's docker.io 20.10 one).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import Env, link_names

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]

DOCKER = os.environ.get("NETBAY_DOCKER") or shutil.which("docker")
if DOCKER is None:
    pytestmark.append(pytest.mark.skip(reason="no docker client binary on PATH"))

# What `docker network inspect` shows for a network (Docker Engine API, Network object).
INSPECT_KEYS = {
    "Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM", "Internal", "Attachable",
    "Ingress", "ConfigFrom", "ConfigOnly", "Containers", "Options", "Labels",
}

Docker = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def docker(env: Env, tmp_path: Path) -> Docker:
    """Runs the docker client against this test's netbayd (started through the netbay CLI)."""
    env.run("network", "ls")  # autostarts the daemon in the test's namespace
    config = tmp_path / "docker-config"
    config.mkdir()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    environ["DOCKER_CONFIG"] = str(config)

    def run(*args: str, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess[str]:
        assert DOCKER is not None
        result = subprocess.run(
            [DOCKER, "-H", f"unix://{env.paths.socket}", *args], capture_output=True,
            text=True, timeout=60, env={**environ, **extra_env},
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr}")
        return result

    return run


def bridge_of(network_id: str) -> str:
    return "br-" + network_id[:12]


def ip_json(*args: str) -> Any:
    return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True,
                                     check=True).stdout)


def ls_rows(docker: Docker, *args: str) -> list[dict[str, str]]:
    out = docker("network", "ls", "--format", "{{json .}}", *args).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def netbay_names(env: Env) -> set[str]:
    """Network names in netbay's own record (the netbay CLI, not the docker client)."""
    out = env.run("network", "ls", "--format", "json").stdout
    return {json.loads(line)["Name"] for line in out.splitlines() if line.strip()}


def refused(docker: Docker, *args: str, **extra_env: str) -> str:
    result = docker(*args, check=False, **extra_env)
    assert result.returncode != 0, f"docker {' '.join(args)} succeeded: {result.stdout}"
    return result.stderr


def test_client_negotiates_our_api_version(docker: Docker) -> None:
    out = docker("version", "--format", "{{.Client.APIVersion}} {{.Server.APIVersion}}").stdout
    assert out.split() == ["1.41", "1.41"]
    # A client that insists on a newer API is refused, as dockerd refuses it.
    err = refused(docker, "network", "ls", DOCKER_API_VERSION="1.99")
    assert "client version 1.99 is too new. Maximum supported API version is 1.41" in err


def test_create_ls_inspect_rm_make_and_remove_the_bridge(env: Env, docker: Docker) -> None:
    created = docker(
        "network", "create", "--driver", "bridge", "--subnet", "10.61.0.0/24",
        "--gateway", "10.61.0.254", "--ip-range", "10.61.0.128/25",
        "--aux-address", "router=10.61.0.2", "--label", "team=odin", "--label", "tier",
        "-o", "com.docker.network.driver.mtu=1400", "asgard",
    ).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", created)
    # netbay's own record and the kernel agree with what the client asked for.
    record = env.json("network", "inspect", "asgard")[0]
    assert record["Id"] == created
    assert record["IPAM"]["Config"][0]["Subnet"] == "10.61.0.0/24"
    bridge = bridge_of(created)
    assert bridge in link_names()
    link = ip_json("addr", "show", "dev", bridge)[0]
    assert link["mtu"] == 1400
    assert [(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"] \
        == [("10.61.0.254", 24)]

    # ls: table, --no-trunc, -q with filters (moby semantics: name is a regular expression,
    # every label term must hold).
    table = docker("network", "ls").stdout.splitlines()
    assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [created[:12], "asgard", "bridge", "local"] in [line.split() for line in table]
    assert created in docker("network", "ls", "--no-trunc").stdout
    rows = {r["Name"]: r for r in ls_rows(docker)}
    assert set(rows) == {"asgard", "bridge", "host", "none"}
    assert (rows["asgard"]["Driver"], rows["none"]["Driver"]) == ("bridge", "null")
    assert sorted(rows["asgard"]["Labels"].split(",")) == ["team=odin", "tier="]

    def quiet(*filters: str) -> list[str]:
        args = [a for f in filters for a in ("--filter", f)]
        return docker("network", "ls", "-q", *args).stdout.split()

    assert quiet("type=custom") == [created[:12]]
    assert quiet("name=^asg") == [created[:12]]
    assert quiet("label=team=odin", "label=tier") == [created[:12]]
    assert quiet("label=team=odin", "label=absent") == []
    assert quiet("driver=null") == [rows["none"]["ID"]]
    assert len(quiet("type=builtin")) == 3
    assert "invalid filter 'colour'" in refused(docker, "network", "ls", "--filter", "colour=red")

    # inspect: Docker's shape, with the subnet, range, gateway and aux address we gave.
    net = json.loads(docker("network", "inspect", "asgard").stdout)[0]
    assert set(net) >= INSPECT_KEYS
    assert (net["Name"], net["Id"], net["Driver"], net["Scope"]) == (
        "asgard", created, "bridge", "local")
    assert net["IPAM"]["Driver"] == "default"
    assert net["IPAM"]["Config"] == [{
        "Subnet": "10.61.0.0/24", "IPRange": "10.61.0.128/25", "Gateway": "10.61.0.254",
        "AuxiliaryAddresses": {"router": "10.61.0.2"},
    }]
    assert net["Labels"] == {"team": "odin", "tier": ""}
    assert net["Options"] == {"com.docker.network.driver.mtu": "1400"}
    assert (net["Internal"], net["EnableIPv6"], net["Containers"]) == (False, False, {})
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", net["Created"])
    assert docker("network", "inspect", "-f", "{{.Id}}", created[:12]).stdout.strip() == created

    docker("network", "create", "--internal", "--subnet", "10.62.0.0/24", "vanaheim")
    assert json.loads(docker("network", "inspect", "vanaheim").stdout)[0]["Internal"] is True

    # rm: the client prints the name; the record and the bridge are gone.
    assert docker("network", "rm", "asgard").stdout.split() == ["asgard"]
    assert bridge not in link_names()
    assert "network asgard not found" in env.run("network", "inspect", "asgard", check=False).stderr
    assert {r["Name"] for r in ls_rows(docker)} == {"bridge", "host", "none", "vanaheim"}


def test_prune_removes_only_unused_matching_networks(env: Env, docker: Docker) -> None:
    ids = {}
    for name, labels in (("unused", []), ("kept", ["--label", "keep"]), ("busy", [])):
        ids[name] = docker("network", "create", *labels, name).stdout.strip()
    env.run("run", "-d", "--name", "c1", "--network", "busy", "--", "sleep", "infinity")
    assert {bridge_of(i) for i in ids.values()} <= link_names()

    # A filter netbay does not know is refused before anything is removed.
    err = refused(docker, "network", "prune", "-f", "--filter", "name=x")
    assert "invalid filter 'name'" in err
    assert {bridge_of(i) for i in ids.values()} <= link_names()

    out = docker("network", "prune", "-f", "--filter", "label!=keep").stdout
    assert out.split() == ["Deleted", "Networks:", "unused"]
    assert bridge_of(ids["unused"]) not in link_names()
    assert {bridge_of(ids["kept"]), bridge_of(ids["busy"])} <= link_names()

    out = docker("network", "prune", "-f").stdout
    assert out.split() == ["Deleted", "Networks:", "kept"]
    assert bridge_of(ids["kept"]) not in link_names()
    assert bridge_of(ids["busy"]) in link_names()
    assert netbay_names(env) == {"bridge", "host", "none", "busy"}


def test_errors_come_back_as_docker_error_responses(env: Env, docker: Docker) -> None:
    asgard = docker("network", "create", "--subnet", "10.63.0.0/24", "asgard").stdout.strip()
    before = link_names()

    err = refused(docker, "network", "create", "asgard")
    assert "Error response from daemon: network with name asgard already exists" in err
    err = refused(docker, "network", "create", "--subnet", "10.63.0.128/25", "midgard")
    assert "Error response from daemon: invalid subnet '10.63.0.128/25': overlaps" in err
    # A 404: clients since 23.0 print our message, 20.10 prints its own "No such network".
    err = refused(docker, "network", "rm", "nowhere")
    assert ("Error response from daemon: network nowhere not found" in err
            or "Error: No such network: nowhere" in err), err
    err = refused(docker, "network", "rm", "bridge")
    assert "bridge is a pre-defined network and cannot be removed" in err
    for flags in (["--ipv6", "--subnet", "fd12::1/64"], ["--config-only"], ["--ipam-opt", "x=y"],
                  ["-d", "macvlan2"]):
        err = refused(docker, "network", "create", *flags, "refused")
        assert "Error response from daemon: invalid " in err, (flags, err)
    # Nothing refused left a record or a kernel object behind.
    assert link_names() == before
    assert netbay_names(env) == {"bridge", "host", "none", "asgard"}

    env.run("run", "-d", "--name", "c1", "--network", "asgard", "--", "sleep", "infinity")
    err = refused(docker, "network", "rm", "asgard")
    assert "Error response from daemon: error while removing network: network asgard" in err
    assert "has active endpoints" in err
    members = json.loads(docker("network", "inspect", "asgard").stdout)[0]["Containers"]
    assert [m["Name"] for m in members.values()] == ["c1"]
    assert bridge_of(asgard) in link_names()
