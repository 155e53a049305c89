#!/usr/bin/env bash
# Installs what netbay needs on Debian 12 (run as root): system packages from apt, Python
# dependencies from pyproject.toml into ./.venv. Safe to run again.
#   --test   also what the test suite drives: the docker command-line client (taken out of
#            Debian's docker.io package into .venv/bin, so no Docker daemon is installed),
#            and everything --bench installs (the suite runs the report once, tiny).
#   --bench  also the peers the benchmarks compare with (netavark, the CNI reference plugins,
#            aardvark-dns) and their load tools (dnsperf, iperf3), and everything --cluster
#            installs (the cluster sections run etcd); no service is started.
#   --cluster  also what the multi-host harness (tests/cluster.py, scripts/cluster-demo.sh)
#            runs: etcd server and client (the harness starts members of its own, in its
#            namespaces; it never uses the etcd service Debian may enable), tini.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
want_bench=0
want_cluster=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1; want_bench=1; want_cluster=1 ;;
    --bench) want_bench=1; want_cluster=1 ;;
    --cluster) want_cluster=1 ;;
    *) echo "usage: $0 [--test] [--bench] [--cluster]" >&2; exit 2 ;;
  esac
done

packages=(python3 python3-venv python3-pip iproute2 iputils-ping util-linux procps nftables libnftables1
          tcpdump graphviz)
if [ "$want_test" = 1 ]; then
  packages+=(chromium)  # the topology page is checked in a real browser
  # real runtimes drive netbay in the tests: podman (CNI and netavark backends, a busybox
  # image made locally), the CNI reference plugins chained after netbay (they use iptables)
  packages+=(podman runc busybox-static containernetworking-plugins iptables)
fi
if [ "$want_cluster" = 1 ]; then
  packages+=(etcd-server etcd-client tini bird2)  # bird2: BGP for routed networks
fi
if [ "$want_bench" = 1 ]; then
  packages+=(netavark containernetworking-plugins iptables aardvark-dns dnsperf iperf3)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> python3 -m venv .venv"
  python3 -m venv .venv
fi
echo "==> pip install -e .[test,bench]"
.venv/bin/pip install -q --disable-pip-version-check -e '.[test,bench]'
# An editable install compiles nothing, and where PYTHONDONTWRITEBYTECODE is set no command
# would ever cache its bytecode: every `netbay` would compile its modules again (~15 ms).
.venv/bin/python -m compileall -q src/netbay >/dev/null

if [ "$want_test" = 1 ] && ! command -v docker >/dev/null && [ ! -x .venv/bin/docker ]; then
  echo "==> docker client from Debian's docker.io (client binary only, no daemon)"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q docker.io 2>/dev/null \
     && dpkg-deb --fsys-tarfile docker.io_*.deb | tar -x ./usr/bin/docker)
  install -m 0755 "$tmp/usr/bin/docker" .venv/bin/docker
  rm -rf "$tmp"
fi
