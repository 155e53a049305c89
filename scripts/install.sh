#!/usr/bin/env bash
# Installs what netbay needs on Debian 12 (run as root): system packages from apt, Python
# dependencies from pyproject.toml into ./.venv. Safe to run again.
#   --test   also what the test suite drives: the docker command-line client 20.10, dockerd,
#            docker-proxy, containerd, containerd-shim-runc-v2 and ctr (all taken out of
#            Debian's docker.io and containerd packages into .venv/bin, so no service of
#            theirs is installed; the tests start them inside sandboxes, tests/docker_env.py),
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
  # dockerd and containerd (taken out of their packages below) need runc, tini-static as
  # docker-init, and dockerd links libdevmapper
  packages+=(tini libdevmapper1.02.1)
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

# The Docker engine and containerd, without their packages: installing docker.io or
# containerd runs their maintainer scripts, which enable and start the services (here PID 1 is
# not systemd, so invoke-rc.d falls back to their init scripts). A dockerd in the root network
# namespace makes docker0 and iptables rules on the host, and units masked or a policy-rc.d
# refusing starts protect only until the next `apt-get install` on a machine without them.
# Their binaries alone start nothing: the tests run them inside sandboxes of their own.
# Each entry: package, path inside it, name in .venv/bin.
runtime_binaries=(
  "docker.io ./usr/sbin/dockerd dockerd"
  "docker.io ./usr/sbin/docker-proxy docker-proxy"
  "containerd ./usr/bin/containerd containerd"
  "containerd ./usr/bin/containerd-shim-runc-v2 containerd-shim-runc-v2"
  "containerd ./usr/bin/ctr ctr"
  # the client of the same version: a newer one refuses options dockerd 20.10's API (1.41)
  # takes per container, such as --mac-address
  "docker.io ./usr/bin/docker docker"
)
extract_runtime_binaries() {
  local tmp entry package member name
  tmp=$(mktemp -d)
  for entry in "${runtime_binaries[@]}"; do
    read -r package member name <<<"$entry"
    [ -x ".venv/bin/$name" ] && continue
    if ! ls "$tmp/$package"_*.deb >/dev/null 2>&1; then
      echo "==> $package: binaries only, from its .deb (no service installed)"
      # as root into a 0700 directory: apt warns that its sandbox user cannot write there
      (cd "$tmp" && apt-get download -q "$package" 2>/dev/null)
    fi
    dpkg-deb --fsys-tarfile "$tmp/$package"_*.deb | tar -C "$tmp" -x "$member"
    install -m 0755 "$tmp/$member" ".venv/bin/$name"
  done
  rm -rf "$tmp"
  # dockerd runs docker-init for `docker run --init`; Debian's is tini-static
  ln -sfn /usr/bin/tini-static .venv/bin/docker-init
}
if [ "$want_test" = 1 ]; then
  extract_runtime_binaries
fi
