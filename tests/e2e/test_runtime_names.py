"""`netbay ps` and `netbay inspect` of what runtimes attached for real: netbay's CNI plugin
exec'd as Kubernetes' runtime and as containerd's ctr call it, and its netavark-compatible
backend exec'd as podman does, beside a container of netbay's own; each listed by its
runtime's name with its RUNTIME, until the runtime removes it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import Env
from runtimes import Cni, NetavarkCli, netavark_options

pytestmark = [pytest.mark.kernel, pytest.mark.e2e]
PODMAN_ID = "c0" * 32
POD_ID = "5a" * 32  # a CRI sandbox id
NET = {"subnet": "10.88.9.0/24", "gateway": "10.88.9.1", "device": "podman9"}
CONF = {"cniVersion": "1.0.0", "name": "cninet", "type": "netbay", "network": "asgard"}


def ps_rows(env: Env, *args: str) -> dict[str, list[str]]:
    """NAMES -> the table's cells."""
    lines = env.run("ps", *args).stdout.splitlines()
    assert re.split(r" {3,}", lines[0]) == [
        "CONTAINER ID", "COMMAND", "CREATED", "STATUS", "NETWORKS", "RUNTIME", "NAMES"]
    rows = [re.split(r" {3,}", line) for line in lines[1:]]
    return {row[-1]: row for row in rows}


def test_runtimes_attachments_are_listed_by_their_names_until_removed(
    env: Env, tmp_path: Path, namespaces: Callable[[str], Path]
) -> None:
    env.run("network", "create", "--subnet", "10.61.9.0/24", "asgard")
    own = env.run("run", "-d", "--name", "web", "--network", "asgard", "--", "sleep",
                  "1000").stdout.strip()
    cni = Cni(tmp_path / "bin", env.environ, env.enter)
    pod, task = namespaces("pod"), namespaces("task")
    kubernetes = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-0"
    assert cni.call("ADD", CONF, POD_ID, pod, args=kubernetes).code == 0
    assert cni.call("ADD", CONF, "demo", task).code == 0  # `ctr run --cni IMAGE demo`
    netavark = NetavarkCli(tmp_path / "podman-bin", env.environ, env.enter)
    podman = namespaces("podman")
    options = netavark_options(PODMAN_ID, "silly_swanson", [("podnet", {**NET,
                                                                        "ip": "10.88.9.2"})])
    assert netavark.setup(podman, options).code == 0

    rows = ps_rows(env)
    assert {name: row[3:] for name, row in rows.items()} == {
        "web": ["Up", "asgard", "netbay", "web"],
        "shop/cart-0": ["Attached", "asgard", "cni", "shop/cart-0"],
        "demo": ["Attached", "asgard", "cni", "demo"],
        "silly_swanson": ["Attached", "podnet", "podman", "silly_swanson"],
    }
    assert rows["web"][0] == own[:12]
    listed = [json.loads(line) for line in
              env.run("ps", "--format", "json", "--no-trunc").stdout.splitlines()]
    assert sorted((r["Names"], r["Runtime"], r["RuntimeID"]) for r in listed) == sorted([
        ("web", "netbay", own), ("shop/cart-0", "cni", POD_ID), ("demo", "cni", "demo"),
        ("silly_swanson", "podman", PODMAN_ID)])

    for ref, runtime_id in (("silly_swanson", PODMAN_ID), (PODMAN_ID[:12], PODMAN_ID),
                            ("shop/cart-0", POD_ID), ("demo", "demo")):
        (found,) = json.loads(env.run("inspect", ref).stdout)
        assert found["Runtime"]["ContainerID"] == runtime_id
        assert found["Id"].startswith(rows[found["Runtime"]["ContainerName"]][0])

    assert netavark.teardown(podman, options).code == 0
    assert cni.call("DEL", CONF, "demo", task).code == 0
    assert sorted(ps_rows(env)) == ["shop/cart-0", "web"]
    assert cni.call("DEL", CONF, POD_ID, pod).code == 0
    env.run("rm", "-f", "web")
    assert ps_rows(env, "-a") == {}
