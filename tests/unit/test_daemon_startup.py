"""netbayd's start-up stays off the heavy imports its first request does not need: pyroute2
(conntrack cleanup, observe's dumps), etcd's client (a node that joined a cluster) and the
daemon's observe side (topology, trace, RPS)."""

from __future__ import annotations

import json
import subprocess
import sys

from netbay.cluster import identity
from netbay.engine import cluster

START_UP = """
import json, sys
from netbay.daemon.__main__ import Services
from netbay.dns.supervisor import DnsSupervisor
from netbay.engine import Host
from netbay.engine.cluster import ClusterAgent
from netbay.kernel.conntrack import FlowJanitor
from netbay.reconcile.loop import Reconciler
from netbay.daemon.api import Api
from netbay.daemon.cluster_api import ClusterRoutes
from netbay.daemon.server import ApiServer
janitor = FlowJanitor()
janitor.close()
LAZY = ("pyroute2", "aetcd", "grpc", "netbay.observe.observer", "netbay.observe.tracer",
        "netbay.observe.steering")
print(json.dumps(sorted(m for m in LAZY if m in sys.modules)))
"""


def test_start_up_modules_leave_pyroute2_etcd_and_observe_unloaded() -> None:
    out = subprocess.run([sys.executable, "-c", START_UP], capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) == []


def test_the_agent_looks_for_the_join_settings_where_the_cluster_writes_them() -> None:
    assert cluster.JOIN_FILE == identity.JOIN_FILE
