"""The peers, driven exactly as their runtimes drive them, for side-by-side figures.

- CNI reference plugins (Debian containernetworking-plugins, /usr/lib/cni): the chain
  bridge + host-local + portmap + firewall, exec'd plugin by plugin as libcni does (ADD in
  order with prevResult, DEL in reverse with the final result).
- netavark (Debian, /usr/lib/podman/netavark): `netavark --config DIR -f input.json
  setup|teardown NETNS`, with static_ips as podman passes them.

Both run inside the benchmark sandbox namespace, with their state in its temp directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

CNI_PATH = Path("/usr/lib/cni")
NETAVARK = Path("/usr/lib/podman/netavark")


def available(kind: str) -> str | None:
    """None if the peer can run here, else why not (reported, never silently skipped)."""
    if kind == "cni":
        missing = [
            p
            for p in ("bridge", "host-local", "portmap", "firewall")
            if not (CNI_PATH / p).exists()
        ]
        return f"missing {', '.join(missing)} in {CNI_PATH}" if missing else None
    if kind == "netavark":
        return None if NETAVARK.exists() else f"{NETAVARK} not installed"
    raise ValueError(kind)


class CniChain:
    def __init__(self, workdir: Path, subnet: IPv4Network, bridge: str = "cni0") -> None:
        self.workdir = workdir
        self.plugins: list[dict[str, Any]] = [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(subnet)}]],
                    "dataDir": str(workdir / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            {"type": "firewall"},
        ]

    def _exec(
        self,
        plugin: dict[str, Any],
        command: str,
        cid: str,
        netns: Path,
        prev: Any,
        ports: list[dict[str, Any]],
    ) -> Any:
        conf = {"cniVersion": "1.0.0", "name": "bench", **plugin}
        if prev is not None:
            conf["prevResult"] = prev
        if plugin.get("capabilities", {}).get("portMappings"):
            conf["runtimeConfig"] = {"portMappings": ports}
        env = {
            **os.environ,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": str(netns),
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(CNI_PATH),
        }
        result = subprocess.run(
            [str(CNI_PATH / plugin["type"])],
            input=json.dumps(conf),
            capture_output=True,
            text=True,
            env=env,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{plugin['type']} {command}: {result.stdout} {result.stderr}")
        return json.loads(result.stdout) if result.stdout.strip() else None

    def add(self, cid: str, netns: Path, ports: list[dict[str, Any]]) -> Any:
        prev = None
        for plugin in self.plugins:
            prev = self._exec(plugin, "ADD", cid, netns, prev, ports)
        return prev

    def delete(self, cid: str, netns: Path, result: Any, ports: list[dict[str, Any]]) -> None:
        for plugin in reversed(self.plugins):
            self._exec(plugin, "DEL", cid, netns, result, ports)


class Netavark:
    def __init__(self, workdir: Path, subnet: IPv4Network, bridge: str = "podman9") -> None:
        self.config = workdir / "netavark"
        self.config.mkdir(parents=True, exist_ok=True)
        self.subnet = subnet
        self.bridge = bridge

    def _input(self, cid: str, ip: str, ports: list[dict[str, Any]]) -> str:
        return json.dumps(
            {
                "container_id": cid,
                "container_name": f"c{cid[:8]}",
                "port_mappings": [
                    {
                        "host_ip": "",
                        "container_port": p["containerPort"],
                        "host_port": p["hostPort"],
                        "range": 1,
                        "protocol": p["protocol"],
                    }
                    for p in ports
                ],
                "networks": {"bench": {"static_ips": [ip], "interface_name": "eth0"}},
                "network_info": {
                    "bench": {
                        "name": "bench",
                        "id": "b" * 64,
                        "driver": "bridge",
                        "network_interface": self.bridge,
                        "subnets": [
                            {
                                "subnet": str(self.subnet),
                                "gateway": str(self.subnet.network_address + 1),
                            }
                        ],
                        "ipv6_enabled": False,
                        "internal": False,
                        "dns_enabled": False,
                        "ipam_options": {"driver": "host-local"},
                    }
                },
            }
        )

    def _run(self, verb: str, cid: str, ip: str, netns: Path, ports: list[dict[str, Any]]) -> None:
        result = subprocess.run(
            [
                str(NETAVARK),
                "--config",
                str(self.config),
                "--rootless=false",
                "-f",
                "/dev/stdin",
                verb,
                str(netns),
            ],
            input=self._input(cid, ip, ports),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"netavark {verb}: {result.stdout} {result.stderr}")

    def setup(self, cid: str, ip: str, netns: Path, ports: list[dict[str, Any]]) -> None:
        self._run("setup", cid, ip, netns, ports)

    def teardown(self, cid: str, ip: str, netns: Path, ports: list[dict[str, Any]]) -> None:
        self._run("teardown", cid, ip, netns, ports)


def timed(call: Any, *args: Any) -> float:
    start = time.perf_counter()
    call(*args)
    return (time.perf_counter() - start) * 1000
