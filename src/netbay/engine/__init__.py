"""The engine: the typed library every entry point (daemon, CLI, CNI, podman) calls."""

from .host import Host

__all__ = ["Host"]
