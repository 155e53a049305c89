"""The soak's part of docs/benchmarks.md (render.py calls it): what every resource was at the
start, its peak and after each round, whether it came back, the memory growth round by round,
throughput and latency per operation; and its plot. Pure rendering of soak.py's figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import soak
from render import Page, ms, table, verdict

# netbayd's RSS growth per cycle over the last round (warm-up done in the first): a leak of a
# container's records would be several KB; below 1 KB, RSS cannot tell a leak from the allocator
RSS_GROWTH_TARGET_KB = 1.0


def as_text(value: float) -> str:  # a count as a count, MB with one decimal
    return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"


def resources_table(data: dict[str, Any]) -> str:
    rounds = data["rounds"]
    rows = []
    for key, label in soak.RESOURCES.items():
        said = soak.verdict(data, key)
        rows.append([label, as_text(data["start"][key]), as_text(data["peak"][key]),
                     *(as_text(r["end"][key]) for r in rounds),
                     said if data["returned"][key] else f"**{said}**"])
    ends = [f"end, round {i}" for i in range(1, len(rounds) + 1)]
    return table(["resource", "start", "peak", *ends, "verdict"], rows)


def growth(data: dict[str, Any], key: str) -> list[float]:
    """How much KEY grew over each round (MB)."""
    before = [data["start"][key], *(r["end"][key] for r in data["rounds"])]
    return [after - earlier for earlier, after in zip(before, before[1:], strict=False)]


def memory_table(data: dict[str, Any]) -> str:
    rows = []
    for who, label in (("daemon", "netbayd"), ("dns", "DNS server")):
        key = f"{who}_rss_mb"
        rows.append([label, ms(data["start"][key], 1), ms(data["peak"][f"{who}_hwm_mb"], 1),
                     *(ms(r["end"][key], 1) for r in data["rounds"]),
                     *(f"{g:+.1f}" for g in growth(data, key))])
    rounds = range(1, len(data["rounds"]) + 1)
    return table(["process", "RSS at start MB", "peak (VmHWM) MB",
                  *(f"end, round {i}" for i in rounds), *(f"growth, round {i}" for i in rounds)],
                 rows)


def latency_table(data: dict[str, Any]) -> str:
    return table(["operation", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"], [
        [op, f"{s['count']:,}", *(ms(s[q]) for q in ("p50", "p90", "p99", "max"))]
        for op, s in data["latency_ms"].items()])


def render(page: Page, data: dict[str, Any], images: Path) -> None:
    rounds = data["rounds"]
    page.add(
        f"{data['clients']} clients, {data['cycles']:,} cycles a round, {len(rounds)} rounds, "
        "against one netbayd in a throwaway namespace. A cycle: `netbay run -d --network soak "
        "-p PORT:80 -- sleep inf` (create, start; PORT the client's own, reused every cycle), "
        "every third cycle a connect to a second network and a disconnect, every tenth a "
        "network created, connected, disconnected and removed, then `netbay rm -f`; over the "
        "daemon's HTTP API with netbay's own client (a connection per request, as the CLI). "
        "Start: both networks made, the DNS server serving, no container. End: after the "
        "round, once the counts were back (the kernel frees a deleted namespace and its veth "
        "in the background; waited at most "
        f"{max(r['settle_s'] for r in rounds):.1f} s). Peak: the highest seen (the two "
        "processes every 0.5 s, the rest ten times a round).",
        f"![netbayd's memory, fds and threads over the soak]({images.name}/soak.png)")
    tables(page, data)


def tables(page: Page, data: dict[str, Any]) -> None:
    """Resources, memory, latency, failures; and the targets."""
    rounds = data["rounds"]
    page.add(resources_table(data))
    said = "; ".join(f"+{g:.1f} MB over round {i}" for i, g in
                     enumerate(growth(data, "daemon_rss_mb"), 1))
    page.add(f"Memory: netbayd's RSS {said} (a leak grows again in every round; warm-up, "
             "Python's allocator and caches filling, only in the first).", memory_table(data))
    page.add(f"Throughput: {data['rate']:.1f} cycles/s (round by round: "
             + ", ".join(f"{r['rate']:.1f}" for r in rounds) + "); latency per operation, "
             "as the clients saw it:", latency_table(data))
    if data["errors"]:
        page.add(f"**{len(data['errors'])} operation(s) failed**; the first: "
                 + "; ".join(f"`{e}`" for e in data["errors"][:3]))
    kept = sum(data["returned"].values())
    page.target(f"soak: resources back at their start after {len(rounds)} x "
                f"{data['cycles']:,} cycles", "all", f"{kept} of {len(data['returned'])}",
                kept == len(data["returned"]))
    page.target("soak: operations that failed", "none", f"{len(data['errors'])}",
                not data["errors"])
    if len(rounds) > 1:
        last = growth(data, "daemon_rss_mb")[-1]
        per_cycle = last * 1024 / data["cycles"]
        page.target("soak: netbayd RSS growth over the last round, per cycle",
                    f"<= {RSS_GROWTH_TARGET_KB:.0f} KB", f"{per_cycle:.2f} KB ({last:+.1f} MB)",
                    per_cycle <= RSS_GROWTH_TARGET_KB)


def text(data: dict[str, Any]) -> str:
    """The section's tables and targets without the page around them (soak.py prints it)."""
    page = Page()
    tables(page, data)
    page.add(*(f"{what}: {figure} (target {goal}): {verdict(ok)}"
               for what, goal, figure, ok in page.targets))
    return "\n\n".join(page.parts)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    samples = data["samples"]
    x = [s["cycles"] for s in samples]
    fig, (memory, counts) = plt.subplots(1, 2, figsize=(12, 4.2), sharex=True)
    for key, label in (("daemon_rss_mb", "netbayd"), ("dns_rss_mb", "DNS server")):
        memory.plot(x, [s[key] for s in samples], label=label, linewidth=1.4)
    for key, label in (("daemon_fds", "netbayd fds"), ("daemon_threads", "netbayd threads"),
                       ("dns_fds", "DNS server fds")):
        counts.plot(x, [s[key] for s in samples], label=label, linewidth=1.2)
    for ax, title in ((memory, "RSS, MB"), (counts, "open fds and threads")):
        for number in range(1, len(data["rounds"])):
            ax.axvline(number * data["cycles"], color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel("cycles done (dashed: the next round begins)")
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
