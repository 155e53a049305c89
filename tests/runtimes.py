"""Driving netbay as runtimes do: CNI plugins exec'd like libcni (environment, config on
stdin, chains with prevResult), and the netavark-compatible backend exec'd like podman."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from netbay.install import install_cni, install_netavark

CNI_PATH = Path("/usr/lib/cni")


class Invoked:
    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.code = result.returncode
        self.stdout = result.stdout
        self.stderr = result.stderr
        self.json: Any = json.loads(result.stdout) if result.stdout.strip() else None

    def __repr__(self) -> str:
        return f"Invoked(code={self.code}, stdout={self.stdout!r}, stderr={self.stderr[-500:]!r})"


class Cni:
    """netbay's CNI plugins installed in BIN, exec'd with CNI_PATH = BIN:/usr/lib/cni."""

    def __init__(
        self, bin_dir: Path, environ: Mapping[str, str], enter: Sequence[str] = ()
    ) -> None:
        self.bin = bin_dir
        install_cni(bin_dir)
        self.environ = dict(environ)
        self.enter = tuple(enter)  # where the runtime runs: the real host (Env.enter)
        self.path = f"{bin_dir}:{CNI_PATH}"

    def exe(self, plugin: str) -> str:
        own = self.bin / plugin
        return str(own if own.exists() else CNI_PATH / plugin)

    def env(
        self,
        command: str,
        container_id: str | None = None,
        netns: str | Path | None = None,
        ifname: str | None = "eth0",
        args: str | None = None,
        **extra: str,
    ) -> dict[str, str]:
        env = {k: v for k, v in self.environ.items() if not k.startswith("CNI_")}
        env.update(CNI_COMMAND=command, CNI_PATH=self.path)
        if container_id is not None:
            env["CNI_CONTAINERID"] = container_id
        if netns is not None:
            env["CNI_NETNS"] = str(netns)
        if ifname is not None:
            env["CNI_IFNAME"] = ifname
        if args is not None:
            env["CNI_ARGS"] = args
        env.update(extra)
        return env

    def run(self, plugin: str, env: Mapping[str, str], stdin: str | bytes) -> Invoked:
        data = stdin if isinstance(stdin, bytes) else stdin.encode()
        result = subprocess.run(
            [*self.enter, self.exe(plugin)], input=data, env=dict(env), capture_output=True,
            timeout=120,
        )
        return Invoked(
            subprocess.CompletedProcess(
                result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
            )
        )

    def call(
        self, command: str, conf: Mapping[str, Any], container_id: str | None = None,
        netns: str | Path | None = None, ifname: str | None = "eth0", args: str | None = None,
    ) -> Invoked:
        env = self.env(command, container_id, netns, ifname, args)
        return self.run(str(conf["type"]), env, json.dumps(conf))

    # --- a configuration list, as libcni runs it -------------------------------------------
    def add_list(
        self, conflist: Mapping[str, Any], container_id: str, netns: str | Path,
        ifname: str = "eth0", runtime: Mapping[str, Any] | None = None, args: str | None = None,
    ) -> Any:
        prev = None
        for plugin in conflist["plugins"]:
            conf = plugin_conf(conflist, plugin, prev, runtime)
            out = self.call("ADD", conf, container_id, netns, ifname, args)
            if out.code != 0:
                raise AssertionError(f"{plugin['type']} ADD failed: {out}")
            prev = out.json
        return prev

    def del_list(
        self, conflist: Mapping[str, Any], container_id: str, netns: str | Path | None,
        result: Any, ifname: str = "eth0", runtime: Mapping[str, Any] | None = None,
    ) -> list[Invoked]:
        outs = []
        for plugin in reversed(conflist["plugins"]):
            conf = plugin_conf(conflist, plugin, result, runtime)
            outs.append(self.call("DEL", conf, container_id, netns, ifname))
        return outs

    def check_list(
        self, conflist: Mapping[str, Any], container_id: str, netns: str | Path, result: Any,
        ifname: str = "eth0", runtime: Mapping[str, Any] | None = None,
    ) -> list[Invoked]:
        return [
            self.call("CHECK", plugin_conf(conflist, p, result, runtime), container_id, netns,
                      ifname)
            for p in conflist["plugins"]
        ]


def plugin_conf(
    conflist: Mapping[str, Any], plugin: Mapping[str, Any], prev: Any,
    runtime: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """libcni's derivation: cniVersion and name inserted, capabilities turned into
    runtimeConfig (only those the plugin declares), prevResult."""
    conf = {k: v for k, v in plugin.items() if k != "capabilities"}
    conf["cniVersion"] = conflist["cniVersion"]
    conf["name"] = conflist["name"]
    caps = plugin.get("capabilities") or {}
    runtime_config = {k: v for k, v in (runtime or {}).items() if caps.get(k)}
    if runtime_config:
        conf["runtimeConfig"] = runtime_config
    if prev is not None:
        conf["prevResult"] = prev
    return conf


class NetavarkCli:
    """netbay's netavark-compatible executable, exec'd as podman does."""

    def __init__(
        self, bin_dir: Path, environ: Mapping[str, str], enter: Sequence[str] = ()
    ) -> None:
        self.exe = install_netavark(bin_dir)
        self.environ = dict(environ)
        self.enter = tuple(enter)  # where the runtime runs: the real host (Env.enter)
        self.config = bin_dir.parent / "netavark-config"

    def run(self, *args: str, stdin: str | bytes = b"") -> Invoked:
        data = stdin if isinstance(stdin, bytes) else stdin.encode()
        argv = [*self.enter, str(self.exe), "--config", str(self.config), "--rootless=false",
                "--aardvark-binary=/usr/lib/podman/aardvark-dns", *args]
        result = subprocess.run(argv, input=data, env=self.environ, capture_output=True,
                                timeout=120)
        return Invoked(
            subprocess.CompletedProcess(
                argv, result.returncode, result.stdout.decode(), result.stderr.decode()
            )
        )

    def setup(self, netns: str | Path, options: Mapping[str, Any]) -> Invoked:
        return self.run("setup", str(netns), stdin=json.dumps(options))

    def teardown(self, netns: str | Path, options: Mapping[str, Any]) -> Invoked:
        return self.run("teardown", str(netns), stdin=json.dumps(options))


def netavark_options(
    container_id: str, name: str, networks: Sequence[tuple[str, Mapping[str, Any]]],
    ports: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """podman's JSON: NETWORKS is [(network name, {"subnet", "gateway", "ip", ...})]."""
    per: dict[str, Any] = {}
    info: dict[str, Any] = {}
    for index, (network, spec) in enumerate(networks):
        per[network] = {
            "static_ips": [spec["ip"]] if spec.get("ip") else [],
            "aliases": list(spec.get("aliases", [container_id[:12]])),
            "interface_name": spec.get("ifname", f"eth{index}"),
        }
        if spec.get("mac"):
            per[network]["static_mac"] = spec["mac"]
        info[network] = {
            "name": network,
            "id": spec.get("id", (network * 64)[:64]),
            "driver": spec.get("driver", "bridge"),
            "network_interface": spec.get("device", ""),
            "subnets": [{"subnet": spec["subnet"], "gateway": spec["gateway"]}]
            if spec.get("subnet") else [],
            "ipv6_enabled": False,
            "internal": bool(spec.get("internal")),
            "dns_enabled": bool(spec.get("dns", True)),
            "ipam_options": {"driver": "host-local"},
            **({"options": spec["options"]} if spec.get("options") else {}),
        }
    return {
        "container_id": container_id,
        "container_name": name,
        "port_mappings": [dict(p) for p in ports],
        "networks": per,
        "network_info": info,
    }
