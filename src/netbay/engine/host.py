"""Host: netbay's engine on one machine. The typed library API that every entry point calls."""

from __future__ import annotations

from .. import _linux
from ..kernel import netns
from ..kernel.conntrack import FlowJanitor
from ..kernel.host import HostKernel
from ..kernel.nft import Nft
from ..paths import Paths
from ..store.base import Store
from ..store.sqlite import SQLiteStore
from .sandboxes import SandboxOps


class Host(SandboxOps):
    """Networks, containers and endpoints of this host.

    Thread-safe: kernel changes are serialised by one lock; the store serialises writes
    across threads and processes.
    """

    def __init__(self, paths: Paths | None = None, *, store: Store | None = None) -> None:
        self.paths = paths or Paths.from_env()
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.paths.containers.mkdir(exist_ok=True)
        netns.ensure_shared_dir(self.paths.netns_dir)
        self.store = store or SQLiteStore(self.paths.db)
        self.kernel = HostKernel()
        self.owner = _linux.owner_token()
        self.nft = Nft()
        self.flows = FlowJanitor()
        self.ensure_builtin_networks()
        self.firewall_rebuild()

    def close(self) -> None:
        self.flows.close()
        self.kernel.close()
        self.store.close()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
