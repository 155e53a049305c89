"""netbay: container networking for Linux.

The library API is `netbay.Host`. Importing `netbay` alone stays light (the CLI, the CNI
plugin and the container launcher import it): the engine loads on first use.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is ~4 ms of every CLI start

__version__ = "0.1.0"

__all__ = [
    "AttachRequest",
    "Container",
    "ContainerSpec",
    "Endpoint",
    "Host",
    "Network",
    "NetworkSpec",
    "Paths",
    "SubnetConfig",
    "__version__",
]

if TYPE_CHECKING:
    from typing import Any

    from .engine import Host
    from .model import (
        AttachRequest,
        Container,
        ContainerSpec,
        Endpoint,
        Network,
        NetworkSpec,
        SubnetConfig,
    )
    from .paths import Paths


def __getattr__(name: str) -> Any:
    if name == "Host":
        from .engine import Host

        return Host
    if name == "Paths":
        from .paths import Paths

        return Paths
    if name in __all__:
        from . import model

        return getattr(model, name)
    raise AttributeError(name)
