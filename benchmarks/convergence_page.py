"""The convergence section of docs/benchmarks.md (render.py calls it): overlay and routed
networks side by side on one cluster in one run: container start to the first reply from
another node, a new block, a node's join to its reachability from all others, a lost node's
routes gone everywhere; and its plot. Pure rendering of convergence.py's figures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from render import Page, median, ms, table, verdict

Json = dict[str, Any]
REACH_TARGET_MS = 1000.0
BLOCK_TARGET_MS = 2000.0  # issue 15: a new block reachable within 2 s
JOIN_TARGET_MS = 5000.0  # issue 15: a joining node reachable within 5 s of its daemon start
KILL_MARGIN_S = 2.0  # over the TTL
NETWORKS = {"overlay": "overlay", "routed": "routed"}
PATHS = {"host-gw": "host-gw", "bgp": "BGP", "vxlan": "VXLAN"}
PROBE_LABELS = {"early": "from before `netbay run`", "late": "from run's return"}
COLOURS = {"overlay": "#4a7ab5", "routed": "#d9822b"}
# an early probe's reply this much later after run returned than a late one's: it waited for
# the kernel's ARP retry
ARP_RETRY_LAG_MS = 100.0


def paths(section: Json) -> Iterator[tuple[str, str, Json]]:
    """(network, path, its figures) of a starts or blocks section, overlay first."""
    for kind in NETWORKS:
        for path, entry in section[kind].items():
            yield kind, path, entry


def label(kind: str, path: str, entry: Json) -> str:
    return f"{NETWORKS[kind]}, {PATHS[path]} ({entry['node']} to {entry['from']})"


def quantile_cells(figures: Json) -> list[str]:
    return [ms(figures[q]) for q in ("p50", "p99", "max")]


def starts_table(data: Json) -> str:
    rows = []
    for kind, path, entry in paths(data["starts"]):
        for probe, how in PROBE_LABELS.items():
            figures = entry[probe]
            rows.append([label(kind, path, entry), how, *quantile_cells(figures["first_reply_ms"]),
                         ms(figures["run_ms"]["p50"]), ms(figures["run_ms"]["p99"]),
                         ms(figures["after_run_ms"]["p50"]), ms(figures["after_run_ms"]["p99"]),
                         str(figures["first_reply_ms"]["lost"])])
    return table(["network, path", "probed", "first reply p50 ms", "p99 ms", "max ms",
                  "`netbay run` p50 ms", "p99 ms", "reply after run returned p50 ms",
                  "p99 ms", "no reply"], rows)


def blocks_table(data: Json) -> str:
    rows = [[label(kind, path, entry), *quantile_cells(entry["first_reply_ms"]),
             ms(entry["run_ms"]["p50"]), *quantile_cells(entry["after_run_ms"]),
             str(entry["first_reply_ms"]["lost"])]
            for kind, path, entry in paths(data["blocks"])]
    return table(["network, path", "first reply p50 ms", "p99 ms", "max ms",
                  "`netbay run` p50 ms", "reply after run returned p50 ms", "p99 ms",
                  "max ms", "no reply"], rows)


def blocks_note(data: Json) -> str:
    """The reply's lag after run by the node's place in its round: the first comes while h1
    still settles its own new share."""
    lags: dict[int, list[float]] = {}
    for _, _, entry in paths(data["blocks"]):
        for s in entry["samples"]:
            if s["after_run_ms"] is not None:
                lags.setdefault(s["position"], []).append(s["after_run_ms"])
    return ("Each node goes first every other round, and the place shows more than the path: "
            "after run returned, the reply came (median, both networks) "
            + ", ".join(f"{ms(median(values))} ms for the round's {ORDINALS[place]} node"
                        for place, values in sorted(lags.items()))
            + ". The first comes while h1 is still busy with its own new share of the network "
            "(its container was started just before).")


ORDINALS = {1: "first", 2: "second"}
JOIN_ROWS = (
    ("daemon_start_ms", "`netbay daemon start` (the command)"),
    ("join_ms", "`netbay cluster join` (the command)"),
    ("from_start_ms", "daemon start issued to reachable from every node"),
    ("from_join_ms", "join issued to reachable from every node"),
    ("after_container_ms", "container exists to reachable from every node"),
    ("leave_gone_ms", "`cluster leave` issued to its route gone everywhere"),
)


def joins_table(data: Json) -> str:
    joins = data["joins"]
    rows = [[what, *(cell for kind in NETWORKS for cell in quantile_cells(joins[kind][key]))]
            for key, what in JOIN_ROWS]
    return table(["", *(f"{NETWORKS[kind]} {q}" for kind in NETWORKS
                        for q in ("p50 ms", "p99 ms", "max ms"))], rows)


def reached_note(data: Json) -> str:
    """Which nodes reached the newcomer's routed container when: BGP's wait shows here."""
    samples = data["joins"]["routed"]["samples"]
    probers = {where for s in samples for where in s["reached_ms"]}
    medians = {where: median([v for s in samples
                              if (v := s["reached_ms"].get(where)) is not None])
               for where in sorted(probers)}
    return ("On the routed network, the container on each node reached it (median after it "
            "existed): " + ", ".join(f"{where} {ms(value)} ms" for where, value in
                                     medians.items())
            + ". h1 and h2 peer with it by BGP: they add the session when its block appears "
            "in the cluster record (during `netbay run`) and BIRD connects 1 s later; h3, on "
            "the other segment, reaches it through VXLAN, which the agent programs from the "
            "record at once.")


def same_segment_gone(data: Json, sample: Json) -> str:
    """The routed block's withdrawal on the victim's segment (BGP's, the session's loss)."""
    segment = data["hosts"][sample["victim"]]["segment"]
    got = [s for host, s in sample["gone_by_node_s"]["routed"].items()
           if data["hosts"][host]["segment"] == segment]
    return f"{max(got):.2f}" if got else "-"


def kills_table(data: Json) -> str:
    kills = data["kills"]
    ttl = kills["ttl_s"]
    rows = [[str(number), s["victim"],
             *(f"{s['gone_s'][kind]:.2f} ({s['gone_s'][kind] - ttl:+.2f})" for kind in NETWORKS),
             same_segment_gone(data, s), *(f"{s['back_s'][kind]:.2f}" for kind in NETWORKS)]
            for number, s in enumerate(kills["samples"], 1)]
    gone, back = kills["gone_s"], kills["back_s"]
    rows.append(["p50 / p99", "",
                 *(f"{gone[kind]['p50']:.2f} / {gone[kind]['p99']:.2f}" for kind in NETWORKS),
                 "", *(f"{back[kind]['p50']:.2f} / {back[kind]['p99']:.2f}"
                       for kind in NETWORKS)])
    return table(["round", "lost", *(f"{NETWORKS[k]}: routes gone everywhere s (vs TTL)"
                                     for k in NETWORKS),
                  "routed: gone on its segment (BGP) s",
                  *(f"{NETWORKS[k]}: back after restart s" for k in NETWORKS)], rows)


def arp_note(data: Json) -> str | None:
    """What the early probes waited for, when it shows."""
    lags = {label(kind, path, entry): [entry[probe]["after_run_ms"]["p50"] for probe in
                                       PROBE_LABELS]
            for kind, path, entry in paths(data["starts"])}
    if min(early - late for early, late in lags.values()) < ARP_RETRY_LAG_MS:
        return None
    return ("Once `netbay run` had returned, the first reply came after "
            + ", ".join(f"{early:.0f} ms probed early, {late:.1f} ms probed late ({where})"
                        for where, (early, late) in lags.items())
            + " (medians). The early echoes reached the node before the container was there: "
            "the node's ARP entry for the address was INCOMPLETE when the container came "
            "(`ip neigh` on the node shows it), and the kernel asks again only after "
            "retrans_time (1 s), so early replies cluster just above 1 s from the first echo "
            "whatever run took.")


def tables(page: Page, data: Json) -> None:
    """The four tables, what they show, and the targets."""
    count = data["starts"]["overlay"]["vxlan"]["early"]["first_reply_ms"]["count"]
    page.add(f"**A container started on node A, the first reply from h1** ({count} starts "
             "each way, path and network, interleaved; A's block held already):",
             starts_table(data))
    note = arp_note(data)
    if note:
        page.add(note)
    rounds = data["blocks"]["overlay"]["vxlan"]["first_reply_ms"]["count"]
    page.add(f"**A new block** ({rounds} rounds, each with a new network of each driver, "
             "all kept until the last round): "
             "the network's first container on the node, so `netbay run` claims the node's "
             "block; h1's container probes it from run's return (its address is not known "
             "before). The reply's way back is part of it: on the overlay the node's route "
             "to h1's block comes with its own share, made by that run; on the routed network "
             "BGP had brought it already.", blocks_table(data), blocks_note(data))
    joins = data["joins"]
    page.add(f"**A node joins** ({joins['overlay']['node']}, {len(joins['overlay']['samples'])} "
             "rounds of each network, alternating; the first the node's first join ever): its "
             "netbayd started, `cluster join`, a container on the network, and reachable means "
             "the first echo reply from every other node's container on the network to it. "
             "Between rounds: the container removed, `cluster leave`, netbayd stopped.",
             joins_table(data), reached_note(data))
    ttl = data["kills"]["ttl_s"]
    page.add(f"**A node lost** (SIGKILL to its netbayd, then to its BIRD; TTL {ttl} s; "
             "flannel's lease is 24 h): from the kill until no other node has a route to its "
             "block on either network (polled every 50 ms; netbay's routes, protocol 57, and "
             "what BIRD learned, `proto bird`), and after the daemon's restart until every "
             "other node routes to both again. The lease lapses TTL after the node's last "
             f"renewal (every {ttl / 3:.1f} s), so a loss late in a renewal period shows under "
             "TTL. Nodes on another segment reach the lost node's routed block through VXLAN, "
             "which the lease governs as the overlay's routes; its own segment's (h1 and h2 "
             "peer by BGP) had it from BGP, and BIRD's graceful restart keeps a peer's routes "
             "for 30 s when its session drops, so there too it goes when the lease lapses and "
             "the agent takes the node out of BIRD's configuration. After the restart, BGP's "
             "routes are back once the node's BIRD runs again and its peers' sessions are up "
             "(BIRD connects 1 s after a session is configured); VXLAN's and the overlay's "
             "with the node's lease.", kills_table(data))
    targets(page, data)


def reply_target(page: Page, what: str, figures: list[Json], goal_ms: float) -> None:
    """A first-reply target over FIGURES (quantiles): the worst p99, and no probe unanswered."""
    worst = max(f["p99"] for f in figures)
    lost = sum(f["lost"] for f in figures)
    page.target(what, f"<= {goal_ms / 1000:.0f} s", f"{worst:.0f} ms"
                + (f", {lost} without a reply" if lost else ""),
                worst <= goal_ms and not lost)


def targets(page: Page, data: Json) -> None:
    for kind, path, entry in paths(data["starts"]):
        reply_target(page, f"convergence: {NETWORKS[kind]} container start to first reply, "
                     f"{PATHS[path]}, p99", [entry["early"]["first_reply_ms"]], REACH_TARGET_MS)
    for kind in NETWORKS:
        reply_target(page, f"convergence: {NETWORKS[kind]} new block to first reply, p99 "
                     "(worst path)", [entry["first_reply_ms"] for k, _, entry in
                                      paths(data["blocks"]) if k == kind], BLOCK_TARGET_MS)
    joins = data["joins"]
    joined = joins["overlay"]["after_container_ms"]["p99"]
    page.target("convergence: overlay node joins, reachable from all others after its "
                "container exists, p99", "<= 1 s", f"{joined:.0f} ms", joined <= REACH_TARGET_MS)
    joined = joins["routed"]["from_start_ms"]["p99"]
    page.target("convergence: routed node joins, reachable from all others after its daemon "
                "start, p99", "<= 5 s", f"{joined:.0f} ms", joined <= JOIN_TARGET_MS)
    kills = data["kills"]
    goal = kills["ttl_s"] + KILL_MARGIN_S
    for kind in NETWORKS:
        worst = kills["gone_s"][kind]["max"]
        page.target(f"convergence: {NETWORKS[kind]} node lost, its routes gone everywhere "
                    "(worst)", f"<= TTL + 2 s ({goal:.0f} s)", f"{worst:.2f} s", worst <= goal)


def render(page: Page, data: Json, images: Path) -> None:
    hosts = ", ".join(f"{name} {h['address']} (segment {h['segment']})"
                      for name, h in data["hosts"].items())
    networks = data["networks"]
    page.add(
        f"Real daemons on the multi-host harness (tests/cluster.py): {hosts}, segments a and "
        "b joined by a router, a 3-member etcd; every node joined with `--address` and "
        f"`--ttl {data['ttl_s']}`. Two networks side by side on the same nodes, measured in "
        f"turn round by round: `{networks['overlay']['name']}` (-d overlay, backend auto: "
        "host-gw on a segment, VXLAN across the router) and "
        f"`{networks['routed']['name']}` (-d routed, encap cross-subnet: BGP through BIRD on "
        f"a segment, VXLAN across), both with /{data['block_prefix']} blocks. Probes: an ICMP "
        "echo every millisecond from a container until the first reply, timed on the "
        "monotonic clock every namespace shares. What each figure measures exactly: "
        "benchmarks/convergence.py.",
        f"![convergence: starts, new blocks, joins, lost nodes]({images.name}/convergence.png)")
    tables(page, data)


def text(data: Json) -> str:
    """The section's tables and targets without the page around them (convergence.py)."""
    page = Page()
    tables(page, data)
    page.add(*(f"{what}: {figure} (target {goal}): {verdict(ok)}"
               for what, goal, figure, ok in page.targets))
    return "\n\n".join(page.parts)


def plot(data: Json, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ((starts, blocks), (joins, kills)) = plt.subplots(2, 2, figsize=(14, 8.5))
    boxes(starts, [(f"{NETWORKS[kind]}\n{PATHS[path]}\n{probe}", kind,
                    entry[probe]["samples"]) for kind, path, entry in paths(data["starts"])
                   for probe in PROBE_LABELS], REACH_TARGET_MS)
    starts.set_title("container start: first reply from h1")
    boxes(blocks, [(f"{NETWORKS[kind]}\n{PATHS[path]} ({entry['node']})", kind,
                    entry["samples"]) for kind, path, entry in paths(data["blocks"])],
          BLOCK_TARGET_MS)
    blocks.set_title("new block: first reply from h1")
    plot_joins(joins, data["joins"])
    plot_kills(kills, data["kills"])
    for ax in (starts, blocks, joins, kills):
        ax.set_ylim(bottom=0)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def boxes(ax: Any, series: list[tuple[str, str, list[Json]]], goal_ms: float) -> None:
    """One box per (label, network, samples) of first_reply_ms, coloured by network."""
    drawn = ax.boxplot([[s["first_reply_ms"] for s in samples if s["first_reply_ms"] is not None]
                        for _, _, samples in series], patch_artist=True, showfliers=True,
                       medianprops={"color": "black"})
    for box, (_, kind, _) in zip(drawn["boxes"], series, strict=True):
        box.set_facecolor(COLOURS[kind])
    ax.set_xticks(range(1, len(series) + 1), [name for name, _, _ in series], fontsize=7)
    ax.axhline(goal_ms, color="red", linestyle="--", linewidth=0.8, label="target p99")
    ax.set_ylabel("ms from `netbay run` issued")


def plot_joins(ax: Any, joins: Json) -> None:
    from matplotlib.ticker import MaxNLocator

    for kind in NETWORKS:
        samples = joins[kind]["samples"]
        rounds = range(1, len(samples) + 1)
        for key, style, what in (("from_start_ms", "-", "from its daemon's start"),
                                 ("after_container_ms", ":", "after its container exists")):
            ax.plot(rounds, [s[key] for s in samples], linestyle=style, marker="o",
                    color=COLOURS[kind], label=f"{NETWORKS[kind]}, {what}")
    ax.axhline(JOIN_TARGET_MS, color="red", linestyle="--", linewidth=0.8,
               label="target (routed, from the daemon's start)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("ms")
    ax.set_title("node joins: reachable from every node")


def plot_kills(ax: Any, kills: Json) -> None:
    samples = kills["samples"]
    ttl = kills["ttl_s"]
    width = 0.4
    for offset, kind in enumerate(NETWORKS):
        ax.bar([number + (offset - 0.5) * width for number in range(len(samples))],
               [s["gone_s"][kind] for s in samples], width, color=COLOURS[kind],
               label=NETWORKS[kind])
    ax.set_xticks(range(len(samples)), [f"{n} ({s['victim']})" for n, s in
                                        enumerate(samples, 1)])
    ax.axhline(ttl, color="grey", linestyle=":", label=f"TTL {ttl} s")
    ax.axhline(ttl + KILL_MARGIN_S, color="red", linestyle="--", linewidth=0.8,
               label="target TTL + 2 s")
    ax.set_ylabel("s from SIGKILL")
    ax.set_title("node lost: its routes gone everywhere")
