"""The topology as a picture: Graphviz DOT (rendered to SVG/PNG by Debian's `dot`), and a
self-contained HTML page (cards and tables in plain CSS, the SVG graph inline when Graphviz
is there). The other nodes of an overlay network are boxes beyond its tunnel or the underlay
device that reaches them. Pure apart from `graphviz`, which runs `dot`."""

from __future__ import annotations

import html
import shutil
import subprocess
from typing import Any

from ..errors import ConfigError, NetbayError
from .peers import node_label, overlay_problems

Json = dict[str, Any]
FONT = "DejaVu Sans"
RED, BLUE, GREY = "#c0392b", "#2c6fb7", "#888888"


def _q(text: str) -> str:
    """A DOT quoted string; a newline becomes DOT's own line break escape."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _attrs(**attrs: str) -> str:
    return "[" + ", ".join(f"{k}={_q(v)}" for k, v in attrs.items()) + "]"


def _label(*lines: str) -> str:
    return "\n".join(line for line in lines if line)


def _by_family(addresses: list[str] | None) -> tuple[str, str]:
    """ADDRESSES as two label lines, IPv4's and IPv6's: a dual-stack label stays narrow."""
    items = addresses or []
    return (" ".join(a for a in items if ":" not in a), " ".join(a for a in items if ":" in a))


def _node(node_id: str, label: str, problems: list[str] | None = None, **attrs: str) -> str:
    if problems:
        label += "\n" + "\n".join(f"! {p}" for p in problems)
        attrs.update(color=RED, fontcolor=RED, penwidth="2")
    return f"    {_q(node_id)} {_attrs(label=label, **attrs)};"


def _edge(a: str, b: str, **attrs: str) -> str:
    return f"  {_q(a)} -- {_q(b)}" + (f" {_attrs(**attrs)}" if attrs else "") + ";"


def _network_cluster(net: Json, edges: list[str]) -> list[str]:
    title = f"network {net['name']} ({net['driver']}{' ' + net['mode'] if net['mode'] else ''})"
    info = "  ".join([s for s in net["subnets"] if ":" not in s]
                     + (["internal"] if net["internal"] else []) + [f"nat {n}" for n in net["nat"]])
    subnets6 = "  ".join(s for s in net["subnets"] if ":" in s)
    lines = [f"  subgraph {_q('cluster:network:' + net['name'])} {{",
             f"    label={_q(_label(title, info, subnets6))}; style=rounded; color={_q(BLUE)};"]
    if net["problems"]:
        lines.append(f"    color={_q(RED)}; fontcolor={_q(RED)};")
    device = net["device"]
    if device is None:
        mode = {"host": "the host's own stack", "private": "no device of its own"}.get(
            net.get("netns_mode", ""), "no networking")
        lines.append(_node(f"mode:{net['name']}", mode, shape="plaintext"))
        lines.append("  }")
        return lines
    dev_id = f"{device['role']}:{device['name']}"
    lines.append(_node(dev_id, _label(f"{device['role']} {device['name']}",
                                      *_by_family(device.get("addresses"))),
                       device["problems"], shape="box3d" if device["role"] == "bridge" else "box"))
    edges.append(_edge("host", dev_id, label=_label(*_by_family(net["gateways"])))
                 if device["role"] == "bridge" else _edge("host", dev_id))
    for port in net["ports"]:
        port_id = f"{port.get('kind') or 'veth'}:{port['name']}"
        lines.append(_node(port_id, f"{port.get('kind') or 'veth'} {port['name']}",
                           port["problems"], shape="ellipse"))
        edges.append(_edge(dev_id, port_id))
        end = port.get("end")
        if end and port.get("container"):
            edges.append(_edge(port_id, f"container:{port['container']}",
                               label=_label(end["ifname"], *_by_family(end["addresses"]))))
    for member in net["members"]:
        edges.append(_edge(dev_id, f"container:{member['container']}",
                           label=_label(f"{net['driver']} {member['ifname']}",
                                        *_by_family(member["addresses"])),
                           color=RED if member["problems"] else "black"))
    if net["shim"]:
        shim = net["shim"]
        lines.append(_node(f"shim:{shim['name']}", f"shim {shim['name']}", shim["problems"]))
        edges.append(_edge(dev_id, f"shim:{shim['name']}"))
    lines.append("  }")
    return lines


def _overlay(net: Json, lines: list[str], edges: list[str], remote: dict[str, str]) -> None:
    """NET's tunnel (into LINES, inside the network's cluster) and the other nodes (into
    REMOTE by node id, drawn once however many networks reach them), joined by EDGES."""
    section = net.get("overlay")
    if not section:
        return
    tunnel = section["tunnel"]
    if tunnel:
        lines.insert(-1, _node(f"tunnel:{tunnel['name']}", _label(
            f"vxlan {tunnel['name']}", f"VNI {section['vni']}  dstport {section['port']}",
            f"local {tunnel.get('local') or '?'}"), tunnel["problems"], shape="cds"))
        edges.append(_edge("host", f"tunnel:{tunnel['name']}"))
    for node in section["nodes"]:
        node_id = f"node:{node['name']}"
        remote[node_id] = _node(node_id, _label(node_label(node), node["state"]),
                                shape="box3d", style="rounded,dashed")
        label = _label(node["block"], f"VNI {section['vni']}" if node["via"] == "vxlan" else
                       f"host-gw via {node['gateway']}" if node["via"] else "no route")
        start = {"vxlan": f"tunnel:{node['device']}", "host-gw": f"interface:{node['device']}"}
        edges.append(_edge(start.get(node["via"], "host"), node_id, label=label,
                           color=RED if node["problems"] else BLUE,
                           style="solid" if node["via"] else "dotted"))


def to_dot(topo: Json) -> str:
    """The topology as an undirected Graphviz graph; node ids are `kind:name`."""
    lines = [
        "graph netbay {",
        f"  graph [rankdir=LR, fontname={_q(FONT)}, fontsize=11, nodesep=0.25, ranksep=0.9];",
        f"  node [fontname={_q(FONT)}, fontsize=10, shape=box, style=\"rounded\"];",
        f"  edge [fontname={_q(FONT)}, fontsize=9, color={_q(GREY)}];",
        _node("host", "host", shape="house"),
    ]
    edges: list[str] = []
    remote: dict[str, str] = {}  # the other nodes of overlay networks, by node id
    for iface in topo["interfaces"]:
        iface_id = f"interface:{iface['name']}"
        lines.append(_node(iface_id, _label(f"{iface.get('kind', '')} {iface['name']}".strip(),
                                            *_by_family(iface.get("addresses"))),
                           iface["problems"]))
        edges.append(_edge("host", iface_id))
    for net in topo["networks"]:
        cluster = _network_cluster(net, edges)
        _overlay(net, cluster, edges, remote)
        lines += cluster
    lines += remote.values()
    for c in topo["containers"]:
        lines.append(_node(f"container:{c['name']}", _label(f"container {c['name']}", c["state"]),
                           c["problems"], shape="component"))
    for port in topo["published"]:
        port_id = f"port:{port['proto']}:{port['host_ip']}:{port['host_port']}"
        lines.append(_node(port_id, f"{port['proto']} {port['host']}",
                           port["problems"], shape="cds"))
        edges.append(_edge("host", port_id, style="dashed"))
        if port["container"]:
            edges.append(_edge(port_id, f"container:{port['container']}", style="dashed",
                               label=f"DNAT {port['to']}"))
    return "\n".join(lines + edges + ["}"]) + "\n"


def graphviz(dot: str, fmt: str) -> bytes:
    """Render DOT to svg or png with Graphviz's `dot` (Debian package graphviz)."""
    binary = shutil.which("dot")
    if binary is None:
        raise ConfigError("format", fmt, "needs Graphviz's dot (apt-get install graphviz); "
                                         "text, dot and html need nothing")
    result = subprocess.run([binary, f"-T{fmt}"], input=dot.encode(), capture_output=True,
                            timeout=60, check=False)
    if result.returncode != 0:
        raise NetbayError(f"dot -T{fmt} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


# --- html ----------------------------------------------------------------------------------
CSS = """
body { font-family: 'DejaVu Sans', sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 12px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.cards { display: flex; flex-wrap: wrap; gap: 16px; }
.card { background: #fff; border: 2px solid #2c6fb7; border-radius: 8px; padding: 10px 14px;
        min-width: 260px; }
.card.bad, .bad { border-color: #c0392b; }
.card h3 { margin: 0 0 6px; font-size: 15px; }
.chip { display: inline-block; background: #e8eef7; border-radius: 10px; padding: 1px 8px;
        margin: 2px 4px 2px 0; font-size: 12px; }
.device { font-weight: bold; margin: 6px 0; }
ul { margin: 4px 0; padding-left: 18px; } li { margin: 2px 0; font-size: 13px; }
.problem { color: #c0392b; font-weight: bold; }
table { border-collapse: collapse; background: #fff; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
th { background: #e8eef7; }
.banner { background: #fdecea; border: 2px solid #c0392b; border-radius: 6px; padding: 8px 12px; }
.ok { background: #eaf7ea; border: 2px solid #2e8b57; border-radius: 6px; padding: 8px 12px; }
.graph svg { max-width: 100%; height: auto; background: #fff; }
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _problems(items: list[str]) -> str:
    return "".join(f'<div class="problem">! {_e(p)}</div>' for p in items)


def _card(net: Json) -> str:
    bad = net["problems"] or (net["device"] or {}).get("problems") or any(
        p["problems"] for p in net["ports"] + net["members"]) or overlay_problems(net)
    chips = [net["driver"] + (f" {net['mode']}" if net["mode"] else "")] + net["subnets"]
    chips += [f"gw {g}" for g in net["gateways"]] + [f"nat {n}" for n in net["nat"]]
    chips += ["internal"] if net["internal"] else []
    parts = [f'<div class="card{" bad" if bad else ""}"><h3>network {_e(net["name"])}</h3>',
             "".join(f'<span class="chip">{_e(c)}</span>' for c in chips),
             _problems(net["problems"])]
    device = net["device"]
    if device:
        parts.append(f'<div class="device">{_e(device["role"])} {_e(device["name"])} '
                     f'{_e(" ".join(device.get("addresses") or []))}</div>'
                     + _problems(device["problems"]))
    items = []
    for port in net["ports"]:
        end = port.get("end")
        who = (f' ⇄ container <b>{_e(port["container"])}</b> {_e(end["ifname"])} '
               f'{_e(" ".join(end["addresses"]))}' if end else "")
        items.append(f'<li>{_e(port.get("kind") or "veth")} {_e(port["name"])}{who}'
                     f'{_problems(port["problems"])}</li>')
    for member in net["members"]:
        items.append(f'<li>{_e(net["driver"])} container <b>{_e(member["container"])}</b> '
                     f'{_e(member["ifname"])} {_e(" ".join(member["addresses"]))}'
                     f'{_problems(member["problems"])}</li>')
    if device is None:
        items.append("<li>a network mode: containers share the host's stack or have none</li>")
    items += _overlay_items(net)
    parts.append(f"<ul>{''.join(items)}</ul></div>")
    return "".join(parts)


def _overlay_items(net: Json) -> list[str]:
    section = net.get("overlay")
    if not section:
        return []
    items = []
    tunnel = section["tunnel"]
    if tunnel:
        items.append(f'<li>tunnel <b>{_e(tunnel["name"])}</b> VNI {_e(section["vni"])} '
                     f'dstport {_e(section["port"])} local {_e(tunnel.get("local") or "?")}'
                     f'{_problems(tunnel["problems"])}</li>')
    for node in section["nodes"]:
        how = (f"vxlan via {node['gateway']}" if node["via"] == "vxlan" else
               f"host-gw via {node['gateway']} dev {node['device']}" if node["via"] else
               "no route")
        items.append(f'<li><b>{_e(node_label(node))}</b> {_e(node["state"])} block '
                     f'{_e(node["block"])}: {_e(how)}{_problems(node["problems"])}</li>')
    return items


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>" if rows else "<p>none</p>"


def to_html(topo: Json, svg: str | None = None) -> str:
    problems = topo["problems"]
    summary = (f'<div class="banner"><b>{len(problems)} disagreement(s) between netbay\'s '
               f'record and the kernel</b>{_problems(problems)}</div>' if problems else
               '<div class="ok">netbay\'s record and the kernel agree</div>')
    containers = [[_e(c["name"]), _e(c["state"]), _e(c["mode"]),
                   "<br>".join(_e(f"{i['ifname']} {' '.join(i['addresses'])} ({i['network']})")
                               for i in c["interfaces"]),
                   "<br>".join(_e(r) for r in c["routes"]) + _problems(c["problems"])]
                  for c in topo["containers"]]
    ports = [[_e(p["proto"]), _e(p["host"]), _e(p["to"]), _e(p["container"]),
              _problems(p["problems"])] for p in topo["published"]]
    interfaces = [[_e(i["name"]), _e(i.get("kind", "")), _e(" ".join(i.get("addresses") or [])),
                   _e(i.get("mtu", "")), _problems(i["problems"])] for i in topo["interfaces"]]
    graph = f'<h2>Graph</h2><div class="graph">{svg[svg.find("<svg"):]}</div>' if svg else ""
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>netbay topology</title>"
        f"<style>{CSS}</style></head><body><h1>netbay topology</h1>{summary}"
        f"<h2>Networks</h2><div class=\"cards\">{''.join(_card(n) for n in topo['networks'])}"
        "</div><h2>Containers</h2>"
        + _table(["name", "state", "mode", "interfaces", "routes"], containers)
        + "<h2>Published ports</h2>"
        + _table(["proto", "host", "target", "container", ""], ports)
        + "<h2>Host interfaces</h2>"
        + _table(["name", "kind", "addresses", "mtu", ""], interfaces)
        + f"{graph}</body></html>\n"
    )
