#!/usr/bin/env bash
# Installs everything (with the peers: netavark, the CNI reference plugins, aardvark-dns,
# dnsperf, iperf3), then runs every benchmark beside the peers and writes docs/benchmarks.md
# with its plots (benchmarks/report.py). As root; ~55 minutes, `--quick` under 3.
# Every benchmark runs in throwaway network namespaces: nothing touches this machine's network.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh --bench
case " $* " in  # the full run's offload section boots Debian's stock kernel under QEMU
  *" --quick "* | *" --tiny "* | *" --render-only "*) ;;
  *) ./scripts/vm-tests.sh --install ;;
esac
exec .venv/bin/python benchmarks/report.py "$@"
