"""`netbay rps show|set`: what the daemon reports, drawn as tables; and /proc/net/softnet_stat
parsed. Pure (the daemon reads and writes the masks through kernel/netsysfs.py)."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]
# /proc/net/softnet_stat columns (hex, one row per CPU): see net/core/net-procfs.c
SOFTNET_COLUMNS = {0: "processed", 1: "dropped", 2: "squeezed", 9: "rps", 10: "flow_limit"}


def parse_softnet(text: str) -> list[Json]:
    """Per-CPU packet counts: processed, dropped, squeezed (budget ran out), rps (received
    from other CPUs by RPS), flow_limit. The CPU number is column 12 where the kernel
    prints it, else the row."""
    out = []
    for row, line in enumerate(text.split("\n")):
        fields = [int(x, 16) for x in line.split()]
        if not fields:
            continue
        entry: Json = {"cpu": fields[12] if len(fields) > 12 else row}
        for column, name in SOFTNET_COLUMNS.items():
            entry[name] = fields[column] if len(fields) > column else 0
        out.append(entry)
    return out


def _queues(entry: Json) -> tuple[str, str, str]:
    rps = ",".join(q["cpus"] or "-" for q in entry["rx"]) or "-"
    flows = ",".join(str(q["flow_cnt"]) for q in entry["rx"]) or "-"
    xps = ",".join("n/a" if q["cpus"] is None else (q["cpus"] or "-") for q in entry["tx"]) or "-"
    return rps, flows, xps


def interface_rows(report: Json) -> list[tuple[str, ...]]:
    """NAMESPACE, INTERFACE, OWNER, RXQ, RPS_CPUS, FLOW_CNT, XPS_CPUS per interface."""
    rows: list[tuple[str, ...]] = []
    for entry in report["interfaces"]:
        rps, flows, xps = _queues(entry)
        rows.append((entry["namespace"], entry["name"], entry["owner"], str(len(entry["rx"])),
                     rps, flows, xps))
    return rows


def softnet_rows(report: Json) -> list[tuple[str, ...]]:
    """CPU, PROCESSED, DROPPED, SQUEEZED, RPS_IN, FLOW_LIMIT per CPU."""
    return [(str(c["cpu"]), str(c["processed"]), str(c["dropped"]), str(c["squeezed"]),
             str(c["rps"]), str(c["flow_limit"])) for c in report["softnet"]]


INTERFACE_HEADERS = ("NAMESPACE", "INTERFACE", "OWNER", "RXQ", "RPS_CPUS", "FLOW_CNT", "XPS_CPUS")
SOFTNET_HEADERS = ("CPU", "PROCESSED", "DROPPED", "SQUEEZED", "RPS_IN", "FLOW_LIMIT")
