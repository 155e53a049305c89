#!/usr/bin/env bash
# netbay on several hosts: three hosts (network namespaces, each with its own mount and PID
# namespaces, /run, /sys, state root and netbayd) on an underlay of two segments joined by a
# router, and a 3-member etcd, all built by the multi-host test harness (tests/cluster.py).
# Every host joins the cluster, one creates an overlay network, each runs a container on it,
# and the containers ping each other across hosts (host-gw on one segment, VXLAN through
# the router); then the same on a routed network (no bridge, BGP through BIRD on one
# segment, VXLAN through the router). Everything is removed at the end, also on Ctrl-C or a failed step;
# no traffic leaves the namespaces the demo makes. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh --cluster >/dev/null
# exec: the harness itself gets Ctrl-C and SIGTERM, and removes what it built
exec .venv/bin/python tests/cluster.py demo
