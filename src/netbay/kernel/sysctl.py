"""sysctl writes for the namespace of the calling thread."""

from __future__ import annotations

from pathlib import Path

from ..errors import KernelError


def ensure(key: str, value: str) -> None:
    path = Path("/proc/sys") / key.replace(".", "/")
    try:
        if path.read_text().strip() != value:
            path.write_text(value)
    except OSError as exc:
        raise KernelError(f"cannot set {key}={value}: {exc}", exc.errno or 0) from exc


def ensure_interface(device: str, key: str, value: str) -> None:
    """net.ipv4.conf.DEVICE.KEY (device names may hold dots, so no dotted key here)."""
    path = Path("/proc/sys/net/ipv4/conf") / device / key
    try:
        if path.read_text().strip() != value:
            path.write_text(value)
    except OSError as exc:
        raise KernelError(f"cannot set {path}={value}: {exc}", exc.errno or 0) from exc
