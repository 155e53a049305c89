"""The doctor's check that a running dockerd can use netbay's Docker plugin.

dockerd finds a legacy (unmanaged) plugin by its socket in /run/docker/plugins, and only
when something first uses the driver: `GET /plugins` lists managed plugins only, and
`GET /info` names netbay under Plugins.Network once a network of driver netbay was made or
restored. So the check asks the socket itself what dockerd would ask first (Plugin.Activate),
and reports dockerd's own listing when it has one. The dockerd is the one netbayd's
environment points at (DOCKER_HOST, else /run/docker.sock). No dockerd is no problem, nor is
a dockerd that nothing ties to netbay (netbayd serves no plugin, no Docker network has driver
netbay): Docker installed for other uses must not make the doctor fail.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .doctor import OK, SKIP, WARN, Finding

CHECK = "docker plugin"
PLUGIN_DIR = Path("/run/docker/plugins")
PLUGIN = "netbay"  # the plugin's name: its socket's file name
IMPLEMENTS = ("NetworkDriver", "IpamDriver")
DEFAULT_DOCKER_HOST = "unix:///run/docker.sock"
ENABLE = ("netbay docker install, then systemctl daemon-reload && systemctl restart "
          "netbayd.service (without systemd: start netbayd with "
          "NETBAY_DOCKER_PLUGIN={socket})")
_DRIVER_FILTER = quote(json.dumps({"driver": [PLUGIN]}))


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket: dockerd's API, a plugin's."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _call(path: str, method: str, target: str, timeout: float) -> tuple[int, Any]:
    """(HTTP status, the body as JSON, else as text); OSError or HTTPException if there is
    no answer."""
    connection = _UnixConnection(path, timeout)
    try:
        connection.request(method, target, body=b"" if method == "POST" else None,
                           headers={"Accept": "application/vnd.docker.plugins.v1.2+json"})
        response = connection.getresponse()
        data = response.read().decode(errors="replace")
    finally:
        connection.close()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, data


def _dockerd(environ: Mapping[str, str], timeout: float) -> tuple[str | None, str]:
    """(dockerd's socket if a dockerd answers GET /_ping there, else None; why not)."""
    host = environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    if not host.startswith("unix://"):
        return None, f"skipped: DOCKER_HOST {host} is no local dockerd's socket"
    path = host.removeprefix("unix://")
    try:
        status, _ = _call(path, "GET", "/_ping", timeout)
    except (OSError, http.client.HTTPException):
        return None, f"skipped: no dockerd (nothing answers on {path})"
    if status != 200:
        return None, f"skipped: no dockerd ({path} answers GET /_ping with HTTP {status})"
    return path, ""


def _activate(plugin: Path, timeout: float) -> tuple[str, str]:
    """(what is wrong with the plugin socket as dockerd would first call it, its fix);
    ("", "") if nothing."""
    restart = "systemctl restart netbayd.service (netbayd makes its socket again)"
    try:
        status, body = _call(str(plugin), "POST", "/Plugin.Activate", timeout)
    except (OSError, http.client.HTTPException) as exc:
        return f"{plugin} does not answer ({exc}): left by a netbayd that stopped?", restart
    implements = body.get("Implements") if isinstance(body, dict) else None
    if status != 200 or not isinstance(implements, list):
        return f"{plugin} answers Plugin.Activate with HTTP {status} {str(body)[:80]!r}", restart
    missing = [kind for kind in IMPLEMENTS if kind not in implements]
    if missing:
        return (f"{plugin} implements {', '.join(map(str, implements))}, not "
                f"{', '.join(missing)}: another plugin holds the name {PLUGIN}",
                f"stop what serves {plugin}, then {restart}")
    return "", ""


def _listed(docker: str, timeout: float) -> bool:
    """dockerd's GET /info names netbay among its network plugins (it has loaded it)."""
    try:
        status, info = _call(docker, "GET", "/info", timeout)
    except (OSError, http.client.HTTPException):
        return False
    plugins = info.get("Plugins") if status == 200 and isinstance(info, dict) else None
    return isinstance(plugins, dict) and PLUGIN in (plugins.get("Network") or ())


def _netbay_networks(docker: str, timeout: float) -> list[str]:
    """The names of dockerd's networks of driver netbay."""
    try:
        status, networks = _call(docker, "GET", "/networks?filters=" + _DRIVER_FILTER, timeout)
    except (OSError, http.client.HTTPException):
        return []
    if status != 200 or not isinstance(networks, list):
        return []
    return sorted(str(n.get("Name")) for n in networks if isinstance(n, dict))


def check_docker_plugin(
    environ: Mapping[str, str], plugin_dir: Path = PLUGIN_DIR, timeout: float = 2.0
) -> Finding:
    """ENVIRON: netbayd's (DOCKER_HOST, NETBAY_DOCKER_PLUGIN); PLUGIN_DIR: where dockerd
    looks for plugins. A dockerd that neither netbayd nor any of its networks ties to
    netbay is skipped: Docker installed is no problem of netbay's."""
    docker, skipped = _dockerd(environ, timeout)
    if docker is None:
        return Finding(CHECK, SKIP, skipped)
    plugin = plugin_dir / f"{PLUGIN}.sock"
    served = environ.get("NETBAY_DOCKER_PLUGIN")
    if served and Path(served) != plugin:
        return Finding(CHECK, WARN, f"netbayd serves the plugin on {served}, where dockerd "
                       f"({docker}) does not look: it finds {PLUGIN} at {plugin}",
                       ENABLE.format(socket=plugin))
    if not plugin.exists():
        used = _netbay_networks(docker, timeout)
        if not served and not used:
            return Finding(CHECK, SKIP, f"skipped: dockerd ({docker}) has no network of driver "
                           "netbay and netbayd serves no plugin (netbay docker install)")
        fails = (f"its networks {', '.join(used)} of driver netbay cannot attach" if used
                 else "`docker network create -d netbay` fails")
        return Finding(CHECK, WARN, f"dockerd runs ({docker}) but no plugin socket is at "
                       f"{plugin}: {fails}", ENABLE.format(socket=plugin))
    problem, fix = _activate(plugin, timeout)
    if problem:
        return Finding(CHECK, WARN, f"dockerd runs ({docker}) but {problem}", fix)
    if _listed(docker, timeout):
        return Finding(CHECK, OK, f"dockerd ({docker}) lists the netbay network plugin, served "
                       f"on {plugin}")
    return Finding(CHECK, OK, f"the netbay plugin answers on {plugin}, where dockerd ({docker}) "
                   "loads it when a network first uses -d netbay")
