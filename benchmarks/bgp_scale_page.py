"""The BGP scale section of docs/benchmarks.md (render.py calls it): every simulated node's
BIRD as a full iBGP mesh and with two route reflectors (bgp_scale.py), its table and plot.
Pure rendering of that module's figures."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from render import Page, table

Json = dict[str, Any]
TOPOLOGIES = {"mesh": "full iBGP mesh", "reflectors": "2 route reflectors"}
COLOURS = {"mesh": "#4a7ab5", "reflectors": "#e08a3c"}
SHARED, PRIVATE = "#b8b8b8", "#5a9e5a"
ROLE_FIGURES = ("rss_mb", "anon_mb", "established", "imported", "cpu_converge_s", "cpu_steady_s")
BACKLOG = 8  # BIRD 2.0.12's listen(fd, 8) (sysdep/unix/io.c)


# --- the medians ----------------------------------------------------------------------------
def role_median(runs: Sequence[Json], roles: Sequence[str], wanted: str, key: str) -> float:
    """The median over RUNS of the median node of role WANTED in figure KEY."""
    return float(statistics.median(
        statistics.median(v for v, r in zip(run[key], roles, strict=True) if r == wanted)
        for run in runs))


def summary(runs: Sequence[Json], roles: Sequence[str]) -> Json:
    """Medians over RUNS of one topology; per role, the median node's figures."""
    def each(figure: Callable[[Json], float]) -> float:
        return float(statistics.median(figure(r) for r in runs))

    return {
        "converge_s": each(lambda r: r["converge_s"]),
        "node_converge_s": each(lambda r: statistics.median(r["node_converge_s"])),
        "cpu_converge_s": each(lambda r: sum(r["cpu_converge_s"])),
        "cpu_steady_s": each(lambda r: sum(r["cpu_steady_s"])),
        "steady_cpu_share": each(lambda r: sum(r["cpu_steady_s"]) / r["steady_s"]),
        "rss_total_mb": each(lambda r: sum(r["rss_mb"])),
        "sessions": each(lambda r: sum(r["established"]) / 2),
        "roles": {name: {"count": roles.count(name),
                         **{key: role_median(runs, roles, name, key) for key in ROLE_FIGURES}}
                  for name in dict.fromkeys(roles)},
    }


def summaries(data: Json) -> dict[str, Json]:
    return {t: summary(data["samples"][t], data["roles"][t]) for t in TOPOLOGIES}


# --- the section ----------------------------------------------------------------------------


def description(data: Json) -> str:
    nodes, steady = data["nodes"], data["steady_s"]
    return (
        f"{nodes} simulated nodes, each a network namespace running its own BIRD "
        f"({data['bird']}) with the bird.conf netbay renders (plan/bird.py) for a routed network "
        f"under the defaults (AS {data['asn']}, encap=cross-subnet, each node one "
        f"/{data['block_prefix']} of {data['pool']}), all on one L2 segment ({data['segment']}: "
        "a bridge in a namespace of its own, a veth per node; the neighbours static: the "
        "machine's namespaces share one neighbour table of 1,024 dynamic entries, and the mesh "
        f"would need {nodes * (nodes - 1):,}, spread over real nodes' own tables). *Full iBGP "
        "mesh*: every node peers with the "
        f"{nodes - 1} others, the higher address of each pair passive. *2 route reflectors*: "
        "nodes 1 and 2, as engine/bgp.py plans `netbay cluster bgp reflector`: each peers with "
        "the other and with every other node as its route reflector client; the others peer "
        "with the two reflectors only, and receive each block from both; each reflector "
        "refuses the other's reflected copies: the two share one cluster id, the lower "
        "reflector's address, as netbay's agent sets it. Per run all BIRDs "
        "start at once (each connects "
        f"{data['connect_delay_s']} s after its start); *converged*: every node's kernel table "
        "holds exactly the other blocks as `proto bird` routes via their owners, timed from "
        "the first start by the route events of every namespace. CPU: utime + stime of every "
        f"BIRD, to convergence and over {steady:.0f} s of steady state after it; RSS after "
        "that, its private part (RssAnon) in brackets (the rest is BIRD's binary and "
        f"libraries). Runs: {data['runs']} of each topology, alternated; medians.")


def by_role(figures: Json, shown: Callable[[Json], str]) -> str:
    """SHOWN of the median node (mesh) or client, then of the reflectors, if any."""
    roles = figures["roles"]
    text = shown(roles.get("node") or roles["client"])
    return text + (f"; reflectors: {shown(roles['reflector'])}" if "reflector" in roles else "")


def each_run(samples: list[Json], key: str, shown: Callable[[float], str]) -> str:
    return ", ".join(shown(run[key]) for run in samples)


def rows(data: Json) -> list[list[str]]:
    medians, samples = summaries(data), data["samples"]

    def row(what: str, cell: Callable[[Json, list[Json], Json], str]) -> list[str]:
        """WHAT, then CELL(medians, samples, config lines by role) of each topology."""
        return [what, *(cell(medians[t], samples[t], data["config_lines"][t]) for t in TOPOLOGIES)]

    return [
        row("BGP sessions in the cluster", lambda m, s, c: f"{m['sessions']:,.0f}"),
        row("sessions per node", lambda m, s, c: by_role(m, lambda r: f"{r['established']:.0f}")),
        row("routes BIRD imports per node",
            lambda m, s, c: by_role(m, lambda r: f"{r['imported']:.0f}")),
        row("bird.conf lines per node", lambda m, s, c: by_role(
            {"roles": {role: {"lines": lines} for role, lines in c.items()}},
            lambda r: str(r["lines"]))),
        row("all BIRDs started within, s (each run)",
            lambda m, s, c: each_run(s, "launch_s", "{:.2f}".format)),
        row("converged, all nodes, s (each run)", lambda m, s, c: f"{m['converge_s']:.2f} "
            f"({each_run(s, 'converge_s', '{:.2f}'.format)})"),
        row("converged, the median node, s", lambda m, s, c: f"{m['node_converge_s']:.2f}"),
        row(f"connects dropped by a full listen queue (backlog {BACKLOG}), all nodes (each run)",
            lambda m, s, c: each_run(s, "listen_overflows", "{:.0f}".format)),
        row("BIRD CPU to convergence, all nodes, s",
            lambda m, s, c: f"{m['cpu_converge_s']:.2f}"),
        row(f"BIRD CPU in {data['steady_s']:.0f} s of steady state, all nodes, s (share of one "
            "CPU)", lambda m, s, c: f"{m['cpu_steady_s']:.2f} ({m['steady_cpu_share']:.1%})"),
        row("BIRD RSS per node, MB (private)",
            lambda m, s, c: by_role(m, lambda r: f"{r['rss_mb']:.1f} ({r['anon_mb']:.1f})")),
        row("BIRD RSS, all nodes, MB", lambda m, s, c: f"{m['rss_total_mb']:,.0f}"),
        row("route changes in the steady state (all runs)",
            lambda m, s, c: str(sum(run["steady_route_events"] for run in s))),
        row("error lines BIRD logged, all nodes (each run)",
            lambda m, s, c: ", ".join(str(len(run["bird_errors"])) for run in s)),
    ]


def comparison(data: Json) -> str:
    medians = summaries(data)
    mesh, rr = medians["mesh"], medians["reflectors"]
    node, client = mesh["roles"]["node"], rr["roles"]["client"]
    reflector = rr["roles"]["reflector"]
    return (
        f"With two reflectors the cluster has {mesh['sessions'] / rr['sessions']:.1f}x fewer "
        f"sessions ({mesh['sessions']:,.0f} against {rr['sessions']:,.0f}); a client's BIRD "
        f"holds {client['anon_mb']:.1f} MB of private memory against a mesh node's "
        f"{node['anon_mb']:.1f} MB (a reflector {reflector['anon_mb']:.1f} MB); all BIRDs "
        f"together spend {rr['cpu_converge_s']:.2f} CPU seconds to converge against "
        f"{mesh['cpu_converge_s']:.2f}, and every node has every block after "
        f"{rr['converge_s']:.2f} s against {mesh['converge_s']:.2f} s. What BIRD does in the "
        f"steady state: a scan of the kernel table every {data['kernel_scan_s']} s and a "
        "keepalive per session every 80 s (BIRD's default).")


def findings(data: Json) -> list[str]:
    """What the runs showed beyond the figures, where they showed it."""
    said = []
    slowest = max(data["samples"]["mesh"], key=lambda run: run["converge_s"])
    if slowest["listen_overflows"]:
        said.append(
            f"The mesh's slowest run ({slowest['converge_s']:.2f} s) waited on listen queues: "
            "node N is the passive side for the N-1 nodes of lower address, which connect "
            f"within the same second, BIRD listens with a backlog of {BACKLOG}, and "
            f"{slowest['listen_overflows']} connects found a queue full in that run; the "
            "kernel dropped them, and TCP sent each again 1 s later (and 2 s after that when "
            "it found the queue full again). A reflector's client takes two connects.")
    errors = [e for run in data["samples"]["reflectors"] for e in run["bird_errors"]]
    if any("Invalid NEXT_HOP attribute - neighbor address" in e for e in errors):
        said.append(
            "The errors the reflectors log (for example `" + errors[0] + "`) come from the "
            "cluster ids: when a reflector has the other reflector's copy of a client's block "
            "before the client's own announcement, it offers that copy to every peer, the "
            "client included, and BIRD refuses to send a client a route whose next hop is the "
            "client itself. Harmless (the client would drop it by its originator id); the "
            "cluster id the reflectors share stops these offers, as BIRD exports no route "
            "whose cluster list holds the session's cluster id.")
    return said


def render(page: Page, data: Json, images: Path) -> None:
    page.add(description(data),
             f"![convergence, CPU and memory of BIRD, mesh against reflectors]"
             f"({images.name}/bgp_scale.png)",
             table(["", *TOPOLOGIES.values()], rows(data)),
             comparison(data), *findings(data))


def plot(data: Json, path: Path) -> None:
    """Nodes converged over time, BIRD's CPU per phase, its memory per node by role."""
    import matplotlib.pyplot as plt

    fig, (ready, cpu, memory) = plt.subplots(1, 3, figsize=(15, 4.2))
    for topology, label in TOPOLOGIES.items():
        times = sorted(t for run in data["samples"][topology] for t in run["node_converge_s"])
        shares = [100 * (i + 1) / len(times) for i in range(len(times))]
        ready.step([0.0, *times], [0.0, *shares], where="post", color=COLOURS[topology],
                   label=label)
    ready.set_xlabel("seconds since the first BIRD started")
    ready.set_ylabel("% of nodes with every block")
    ready.set_title("nodes converged (all runs)")
    ready.set_xlim(left=0)
    ready.set_ylim(0, 102)
    phases = (("cpu_converge_s", "to convergence"),
              ("cpu_steady_s", f"{data['steady_s']:.0f} s steady"))
    width, medians = 0.38, summaries(data)
    for i, (topology, label) in enumerate(TOPOLOGIES.items()):
        heights = [medians[topology][key] for key, _ in phases]
        cpu.bar([p + (i - 0.5) * width for p in range(len(phases))], heights, width,
                color=COLOURS[topology], label=label)
    cpu.set_xticks(range(len(phases)), [name for _, name in phases])
    cpu.set_ylabel("CPU seconds, all BIRDs (median run)")
    cpu.set_title("BIRD CPU")
    cpu.set_ylim(bottom=0)
    bars = [(f"{TOPOLOGIES[t].split(' ')[-1]}: {role}", figures)
            for t in TOPOLOGIES for role, figures in medians[t]["roles"].items()]
    names = [name for name, _ in bars]
    private = [role["anon_mb"] for _, role in bars]
    memory.barh(names, private, color=PRIVATE, label="private (RssAnon)")
    memory.barh(names, [role["rss_mb"] - role["anon_mb"] for _, role in bars], left=private,
                color=SHARED, label="binary and libraries")
    memory.invert_yaxis()
    memory.set_xlabel("MB per BIRD (median node)")
    memory.set_title("BIRD RSS")
    for ax in (ready, cpu, memory):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"BGP with {data['nodes']} nodes: full mesh against 2 route reflectors")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
