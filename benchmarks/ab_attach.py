"""Attach/detach through the library, two source trees side by side in one run: what a
refactor did to the hot path. Not a test. Run as root:

    .venv/bin/python benchmarks/ab_attach.py BEFORE_TREE AFTER_TREE [--count N] [--rounds R]

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

TRIAL = r"""
import json, os, shutil, subprocess, sys, tempfile, time
from ipaddress import IPv4Network
from pathlib import Path
from netbay import ContainerSpec, Host, NetworkSpec, Paths, SubnetConfig
count = int(sys.argv[1])
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
tmp = Path(tempfile.mkdtemp(prefix="netbay-ab-"))
(tmp / "resolv.conf").write_text("# benchmark: no resolver\n")
os.environ["NETBAY_RESOLV_CONF"] = str(tmp / "resolv.conf")
paths = Paths(root=tmp / "state", socket=tmp / "s.sock", netns_dir=tmp / "netns")
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


def trial(tree: Path, count: int) -> dict[str, list[float]]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(TRIAL)
    out = subprocess.run(
        ["unshare", "--net", "--mount", "--propagation", "private",
         sys.executable, script.name, str(count)],
        env={"PYTHONPATH": str(tree / "src"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True, text=True, check=False,
    )
    Path(script.name).unlink()
    if out.returncode:
        raise SystemExit(f"trial of {tree} failed: {out.stderr.strip()[-2000:]}")
    result: dict[str, list[float]] = json.loads(out.stdout.splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
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
