"""Attach/detach through the library, two source trees side by side in one run: what a
refactor did to the hot path. Not a test. Run as root:

    .venv/bin/python benchmarks/ab_attach.py BEFORE_TREE AFTER_TREE [--count N] [--rounds R]
    .venv/bin/python benchmarks/ab_attach.py TREE... --counts 10,1000,2000

With --counts, no timing: the work each attach and detach does with that many containers on
the network, counted (Python lines run, SQLite VM steps and statements, nft transactions and
their bytes), so a load on the machine cannot blur it; past 1,000 containers the rest join a
second network (a Linux bridge takes at most 1,023 ports).

Each trial runs in `unshare --net --mount` (a throwaway host: its own network and mount
namespaces, state in a temporary directory) with PYTHONPATH at the tree's src/, makes COUNT
containers, then times Host.connect for each and Host.disconnect in reverse. Trials of the
two trees alternate, R rounds each, so drift of the machine falls on both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# a throwaway host's state in a temporary directory, with no resolver to forward to
PRELUDE = r"""
import collections, json, os, shutil, subprocess, sys, tempfile, time
from ipaddress import IPv4Network
from pathlib import Path
from netbay import ContainerSpec, Host, NetworkSpec, Paths, SubnetConfig
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
tmp = Path(tempfile.mkdtemp(prefix="netbay-ab-"))
(tmp / "resolv.conf").write_text("# benchmark: no resolver\n")
os.environ["NETBAY_RESOLV_CONF"] = str(tmp / "resolv.conf")
paths = Paths(root=tmp / "state", socket=tmp / "s.sock", netns_dir=tmp / "netns")
"""

TRIAL = PRELUDE + r"""
count = int(sys.argv[1])
attach, detach = [], []
with Host(paths) as host:
    host.create_network(NetworkSpec(name="bench",
                                    subnets=(SubnetConfig(IPv4Network("10.140.0.0/20")),)))
    for i in range(count):
        c = host.create_container(ContainerSpec(command=("true",), name=f"c{i}", networks=()))
        host.store.update_container(c.id, network_mode="private")
    for i in range(count):
        t = time.perf_counter(); host.connect("bench", f"c{i}")
        attach.append((time.perf_counter() - t) * 1e3)
    for i in reversed(range(count)):
        t = time.perf_counter(); host.disconnect("bench", f"c{i}")
        detach.append((time.perf_counter() - t) * 1e3)
    for c in host.containers():
        host.remove_container(c.id, force=True)
shutil.rmtree(tmp, ignore_errors=True)
print(json.dumps({"attach": attach, "detach": detach}))
"""


COUNTS = PRELUDE + r"""
marks = sorted(int(m) for m in sys.argv[1].split(","))
count, per_bridge = marks[-1] + 2, 1000  # one past the last: the first detach is not counted
work = collections.Counter()
def line(frame, event, arg):
    work["python lines"] += event == "line"
    return line
def step():
    work["sqlite vm steps"] += 1
    return 0
def statement(sql):
    work["sql statements"] += 1
def counted(db, call):
    work.clear()
    db.set_progress_handler(step, 1); db.set_trace_callback(statement); sys.settrace(line)
    try:
        call()
    finally:
        sys.settrace(None); db.set_progress_handler(None, 1); db.set_trace_callback(None)
    return dict(work)
out = {"attach": {}, "detach": {}}
net = lambda i: "bench" if i < per_bridge else "bench2"
with Host(paths) as host:
    for name, subnet in (("bench", "10.140.0.0/20"), ("bench2", "10.141.0.0/20")):
        host.create_network(NetworkSpec(name=name, subnets=(SubnetConfig(IPv4Network(subnet)),)))
    for i in range(count):
        c = host.create_container(ContainerSpec(command=("true",), name=f"c{i}", networks=()))
        host.store.update_container(c.id, network_mode="private")
    nft, db = host._firewall.nft, host.store._db
    apply = nft.apply
    def nft_apply(text):
        work["nft transactions"] += 1; work["nft bytes"] += len(text)
        apply(text)
    nft.apply = nft_apply
    for i in range(count):
        call = lambda: host.connect(net(i), f"c{i}")
        if i in marks: out["attach"][i] = counted(db, call)
        else: call()
    for i in reversed(range(count)):
        call = lambda: host.disconnect(net(i), f"c{i}")
        if i in marks: out["detach"][i] = counted(db, call)
        else: call()
    for c in host.containers():
        host.remove_container(c.id, force=True)
shutil.rmtree(tmp, ignore_errors=True)
print(json.dumps(out))
"""


def trial(tree: Path, count: int | str, code: str = TRIAL) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(code)
    out = subprocess.run(
        ["unshare", "--net", "--mount", "--propagation", "private",
         sys.executable, script.name, str(count)],
        env={"PYTHONPATH": str(tree / "src"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True, text=True, check=False,
    )
    Path(script.name).unlink()
    if out.returncode:
        raise SystemExit(f"trial of {tree} failed: {out.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


def show_counts(trees: list[Path], marks: str) -> None:
    """The work of an attach and a detach with each of MARKS containers on the network."""
    for tree in trees:
        got = trial(tree.resolve(), marks, COUNTS)
        for op in ("attach", "detach"):
            by_mark = dict(sorted(got[op].items(), key=lambda item: int(item[0])))
            print(f"{tree} {op}, with N containers on the network:")
            print(f"  {'':18}" + "".join(f"{'N=' + m:>10}" for m in by_mark))
            for what in ("python lines", "sqlite vm steps", "sql statements",
                         "nft transactions", "nft bytes"):
                print(f"  {what:18}" + "".join(f"{c.get(what, 0):>10}" for c in by_mark.values()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", type=Path, nargs="+", help="BEFORE AFTER; with --counts, any")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--counts", metavar="N,N,...",
                        help="count the work at these numbers of containers instead")
    args = parser.parse_args()
    if args.counts:
        show_counts(args.trees, args.counts)
        return 0
    if len(args.trees) != 2:
        parser.error("timing compares two trees: BEFORE AFTER")
    args.before, args.after = args.trees
    samples: dict[str, dict[str, list[float]]] = {
        "before": {"attach": [], "detach": []}, "after": {"attach": [], "detach": []}}
    for round_ in range(args.rounds):
        for label, tree in (("before", args.before), ("after", args.after)):
            got = trial(tree.resolve(), args.count)
            for op in ("attach", "detach"):
                samples[label][op] += got[op]
            print(f"round {round_ + 1}: {label} attach {statistics.median(got['attach']):.2f} ms"
                  f" detach {statistics.median(got['detach']):.2f} ms", file=sys.stderr)
    for op in ("attach", "detach"):
        before = statistics.median(samples["before"][op])
        after = statistics.median(samples["after"][op])
        print(f"{op}: before {before:.2f} ms, after {after:.2f} ms, after/before "
              f"{after / before:.3f} ({args.rounds} rounds x {args.count} containers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
