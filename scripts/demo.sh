#!/usr/bin/env bash
# netbay's main job, shown end to end: network `asgard`, two containers that ping each other
# by IP, and what netbay reports about them.
#
# By default everything happens inside a throwaway network namespace that stands in for the
# host (with its own state directory), so the demo is safe on any machine and leaves nothing
# behind. `--on-host` runs the same steps on this machine's real network instead.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh >/dev/null

on_host=0
[ "${1:-}" = "--on-host" ] && on_host=1
netbay=("$PWD/.venv/bin/netbay")
run_host=()

if [ "$on_host" = 0 ]; then
  work=$(mktemp -d /tmp/netbay-demo.XXXXXX)
  ns="netbay-demo-$$"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  export NETBAY_ROOT="$work/state" NETBAY_SOCKET="$work/netbay.sock" NETBAY_NETNS_DIR="$work/netns"
  # The sandbox has no way out, so containers get no upstream resolver.
  printf '# demo sandbox: no resolver\n' >"$work/resolv.conf"
  export NETBAY_RESOLV_CONF="$work/resolv.conf"
  netbay=(nsenter "--net=/run/netns/$ns" "$PWD/.venv/bin/netbay")
  run_host=(nsenter "--net=/run/netns/$ns")
  cleanup() {
    "${netbay[@]}" rm -f env1 env2 web >/dev/null 2>&1 || true
    "${netbay[@]}" network rm asgard >/dev/null 2>&1 || true
    "${netbay[@]}" daemon stop >/dev/null 2>&1 || true
    umount -l "$work/netns" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
  }
  trap cleanup EXIT
  echo "(running in sandbox namespace $ns; use --on-host for this machine's real network)"
fi

step() { printf '\n\033[1m$ netbay %s\033[0m\n' "$*"; "${netbay[@]}" "$@"; }

step network create asgard
step run -d --name env1 --network asgard -- sleep infinity
step run -d --name env2 --network asgard -- sleep infinity
step network ls
step ps
ip1=$("${netbay[@]}" inspect -f '{{.NetworkSettings.Networks.asgard.IPAddress}}' env1)
ip2=$("${netbay[@]}" inspect -f '{{.NetworkSettings.Networks.asgard.IPAddress}}' env2)
step exec env1 -- ping -c 3 "$ip2"
step exec env2 -- ping -c 3 "$ip1"
step exec env1 -- ip -br addr
step exec env1 -- ping -c 2 env2            # by name: netbay's embedded DNS
step network inspect asgard
step run -d --name web --network asgard -p 127.0.0.1:8080:80 -- python3 -m http.server 80
step port web
for _ in $(seq 50); do   # the server needs a moment to start
  if "${run_host[@]}" python3 -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:8080/", timeout=1)' 2>/dev/null; then break; fi
  sleep 0.1
done
printf '\n\033[1m$ python3 -c "urlopen(http://127.0.0.1:8080/)"\033[0m  (the published port, from the host)\n'
"${run_host[@]}" python3 -c 'import urllib.request as u; r = u.urlopen("http://127.0.0.1:8080/", timeout=3); print(r.status, r.reason, "from the container web")'
step topology
if [ "$on_host" = 1 ]; then
  step rm -f env1 env2 web
  step network rm asgard
fi
printf '\nDemo done: env1 (%s) and env2 (%s) reached each other over network asgard, by IP and by name;\n' "$ip1" "$ip2"
printf 'web served the host through a published port.\n'
