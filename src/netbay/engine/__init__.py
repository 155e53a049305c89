"""The engine: the typed library every entry point (daemon, CLI, CNI, podman) calls."""

from .host import Host
from .kernel import Flows, Kernel, Nftables

__all__ = ["Flows", "Host", "Kernel", "Nftables"]
