"""State shared by the engine's parts (composed into Host)."""

from __future__ import annotations

from ..kernel.host import HostKernel
from ..paths import Paths
from ..store.base import Store


class EngineBase:
    paths: Paths
    store: Store
    kernel: HostKernel
    owner: str
