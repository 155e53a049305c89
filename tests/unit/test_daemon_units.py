"""`netbay daemon install`: the systemd units it writes (never enabled, never started: no
systemctl here), their syntax (systemd-analyze verify where it exists), and packaging/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netbay.cli.daemon_units import units

PACKAGING = Path(__file__).resolve().parents[2] / "packaging" / "systemd"


def install(tmp_path: Path, *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETBAY_")}
    return subprocess.run(
        [sys.executable, "-m", "netbay", "daemon", "install", "--prefix", str(tmp_path), *args],
        env={**env, **environ}, capture_output=True, text=True, timeout=60,
    )


def keys(text: str) -> dict[str, list[str]]:
    """'Section.Key' -> its values, comments left out."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(f"{section}.{key}", []).append(value)
    return out


def verify(*paths: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        return
    result = subprocess.run(["systemd-analyze", "verify", *map(str, paths)],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")


def test_the_service_alone(tmp_path: Path) -> None:
    result = install(tmp_path, NETBAY_ROOT="/srv/netbay state")
    assert result.returncode == 0, result.stderr
    service = tmp_path / "netbayd.service"
    assert result.stdout.splitlines() == [
        str(service), "systemctl daemon-reload && systemctl enable --now netbayd.service"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["netbayd.service"]
    found = keys(service.read_text())
    assert found["Service.ExecStart"] == [f"{sys.executable} -m netbay.daemon"]
    assert found["Service.Type"] == ["notify"]
    assert found["Service.KillMode"] == ["process"]  # containers outlive a daemon restart
    assert found["Service.Environment"] == ['"NETBAY_ROOT=/srv/netbay state"']
    assert found["Install.WantedBy"] == ["multi-user.target"]
    assert "netbayd.socket" not in service.read_text()
    verify(service)


def test_with_socket_activation(tmp_path: Path) -> None:
    result = install(tmp_path, "--socket-activation", NETBAY_SOCKET="/run/nb/api.sock",
                     NETBAY_SOCKET_GROUP="nogroup")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "systemctl daemon-reload && systemctl enable --now netbayd.socket netbayd.service")
    service, sock = keys((tmp_path / "netbayd.service").read_text()), keys(
        (tmp_path / "netbayd.socket").read_text())
    assert "netbayd.socket" in service["Unit.Wants"][0] and "netbayd.socket" in \
        service["Unit.After"][0]
    assert sock["Socket.ListenStream"] == ["/run/nb/api.sock"]
    assert sock["Socket.SocketMode"] == ["0660"]
    assert sock["Socket.SocketGroup"] == ["nogroup"]
    assert sock["Install.WantedBy"] == ["sockets.target"]
    verify(tmp_path / "netbayd.service", tmp_path / "netbayd.socket")


def test_a_group_that_does_not_exist_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    result = install(tmp_path / "units", "--socket-activation", NETBAY_SOCKET_GROUP="nosuch")
    assert result.returncode == 1
    assert result.stderr == "Error: invalid NETBAY_SOCKET_GROUP 'nosuch': no such group\n"
    assert not (tmp_path / "units").exists()


@pytest.mark.parametrize(("word", "written"), [
    ("/opt/my python/bin/python3", '"/opt/my python/bin/python3"'),
    ("/opt/100%/python", "/opt/100%%/python"),
    ('/a"b$c', '"/a\\"b$$c"'),
])
def test_command_words_are_quoted_for_systemd(word: str, written: str) -> None:
    text = units([word, "-m", "netbay.daemon"], {}, activation=False)["netbayd.service"]
    assert f"ExecStart={written} -m netbay.daemon\n" in text


def test_packaging_holds_the_units_a_distro_installs() -> None:
    """packaging/systemd is what `netbay daemon install --socket-activation` writes for a
    netbayd on /usr/bin: the same text, so the two cannot drift apart."""
    expected = units(["/usr/bin/netbayd"], {}, activation=True)
    assert {p.name: p.read_text() for p in PACKAGING.iterdir()} == expected


def test_a_plugin_install_says_when_netbayd_does_not_start_at_boot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """The executables start netbayd when it is not running, so they work either way; the
    install says the first container after boot would wait for it, until it is enabled."""
    from netbay.cli import daemon_units
    from netbay.cli.main import main

    systemd = tmp_path / "systemd"
    monkeypatch.setattr(daemon_units, "SYSTEMD_DIR", systemd)
    wants = systemd / daemon_units.BOOT_LINK
    wants.parent.mkdir(parents=True)
    wants.symlink_to(systemd / "netbayd.service")  # enabled, then the unit removed
    for enabled in (False, True):
        if enabled:
            (systemd / "netbayd.service").write_text("[Service]\n")
        assert daemon_units.starts_at_boot() is enabled
        assert main(["cni", "install", "--dir", str(tmp_path / "bin")]) == 0
        out, err = capsys.readouterr()
        assert out.split() == [str(tmp_path / "bin" / "netbay"), str(tmp_path / "bin" /
                                                                     "netbay-ipam")]
        assert err == ("" if enabled else daemon_units.NOT_AT_BOOT + "\n")
