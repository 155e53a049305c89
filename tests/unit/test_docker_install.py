"""`netbay docker install|uninstall`: the drop-in for netbayd.service it writes into a unit
directory (never a systemctl call), what it says, and its undoing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netbay.cli.main import main

DROP_IN = """\
# Written by `netbay docker install`; `netbay docker uninstall` removes it.
[Unit]
# dockerd asks for the plugin as it restores its networks of driver netbay
Before=docker.service

[Service]
Environment=NETBAY_DOCKER_PLUGIN=/run/docker/plugins/netbay.sock
"""


def netbay(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert main(list(args)) == 0
    out = capsys.readouterr()
    assert out.err == ""
    return out.out.splitlines()


def test_install_writes_the_drop_in_and_says_how_to_use_and_undo_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "netbayd.service.d" / "docker-plugin.conf"
    lines = netbay(capsys, "docker", "install", "--unit-dir", str(tmp_path))
    assert path.read_text() == DROP_IN
    assert [p.name for p in tmp_path.rglob("*")] == ["netbayd.service.d", "docker-plugin.conf"]
    assert lines == [
        f"wrote {path}: netbayd serves Docker's network and IPAM plugin \"netbay\" on "
        "/run/docker/plugins/netbay.sock",
        "next: systemctl daemon-reload && systemctl restart netbayd.service",
        "try:  docker network create -d netbay --ipam-driver netbay -o netbay.driver=bridge "
        "mynet",
        "try:  docker run --rm --network mynet busybox ip -4 addr show eth0",
        f"undo: netbay docker uninstall --unit-dir {tmp_path}",
    ]


def test_install_again_leaves_one_file_of_the_same_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "netbayd.service.d" / "docker-plugin.conf"
    path.parent.mkdir()
    path.write_text("[Service]\nEnvironment=NETBAY_DOCKER_PLUGIN=/elsewhere.sock\n")
    netbay(capsys, "docker", "install", "--unit-dir", str(tmp_path))
    netbay(capsys, "docker", "install", "--unit-dir", str(tmp_path))
    assert path.read_text() == DROP_IN
    assert list(path.parent.iterdir()) == [path]


def test_json_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "netbayd.service.d" / "docker-plugin.conf")
    installed = json.loads("\n".join(
        netbay(capsys, "docker", "install", "--unit-dir", str(tmp_path), "--format", "json")))
    assert installed == {
        "Action": "install", "Path": path,
        "PluginSocket": "/run/docker/plugins/netbay.sock",
        "Next": "systemctl daemon-reload && systemctl restart netbayd.service",
        "Try": ["docker network create -d netbay --ipam-driver netbay -o netbay.driver=bridge "
                "mynet", "docker run --rm --network mynet busybox ip -4 addr show eth0"],
        "Undo": f"netbay docker uninstall --unit-dir {tmp_path}",
    }
    removed = json.loads("\n".join(
        netbay(capsys, "docker", "uninstall", "--unit-dir", str(tmp_path), "--format", "json")))
    assert removed == {"Action": "uninstall", "Path": path, "Removed": True,
                       "Next": "systemctl daemon-reload && systemctl restart netbayd.service"}


def test_uninstall_removes_the_file_and_its_emptied_directory_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drop_ins = tmp_path / "netbayd.service.d"
    netbay(capsys, "docker", "install", "--unit-dir", str(tmp_path))
    (drop_ins / "local.conf").write_text("[Service]\nNice=5\n")
    lines = netbay(capsys, "docker", "uninstall", "--unit-dir", str(tmp_path))
    assert lines == [
        f"removed {drop_ins / 'docker-plugin.conf'}: netbayd serves no Docker plugin once "
        "restarted",
        "next: systemctl daemon-reload && systemctl restart netbayd.service",
    ]
    assert [p.name for p in drop_ins.iterdir()] == ["local.conf"]
    (drop_ins / "local.conf").unlink()
    netbay(capsys, "docker", "install", "--unit-dir", str(tmp_path))
    netbay(capsys, "docker", "uninstall", "--unit-dir", str(tmp_path))
    assert list(tmp_path.iterdir()) == []
    assert netbay(capsys, "docker", "uninstall", "--unit-dir", str(tmp_path)) == [
        f"nothing to remove: {drop_ins / 'docker-plugin.conf'} does not exist"]
