"""sysctl writes for the namespace of the calling thread."""

from __future__ import annotations

import errno
import os
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


def current(key: str, device: str | None = None) -> str | None:
    """The value of the dotted KEY, or of net.ipv4.conf.DEVICE.KEY when DEVICE is given;
    None if there is no such sysctl (the device is gone)."""
    base = Path("/proc/sys")
    path = base / "net/ipv4/conf" / device / key if device else base / key.replace(".", "/")
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KernelError(f"cannot read {path}: {exc}", exc.errno or 0) from exc


def disable_ipv6(ifname: str) -> None:
    """No IPv6 on IFNAME, in the calling thread's namespace (netbay's networks are IPv4):
    its autoconfiguration traffic and timers would serve nothing. A kernel without IPv6 is
    fine. Names may hold dots (eth0.10), so the path is built here, not from a dotted key."""
    path = Path("/proc/sys/net/ipv6/conf") / ifname / "disable_ipv6"
    try:
        path.write_text("1")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise KernelError(f"cannot disable IPv6 on {ifname}: {exc}", exc.errno or 0) from exc


# IPv6 made static on one device, in the order written: everything that would send (router
# solicitations, duplicate address probes) or wait (DAD, autoconfiguration from a router's
# advertisements) is off before IPv6 is switched on, so switching it on sends nothing but the
# link-local address's multicast joins. addr_gen_mode 0: the link-local address is EUI-64,
# from the device's MAC (plan/naming.link_local), which the firewall knows in advance.
STATIC_IPV6 = (
    ("accept_ra", "0"), ("autoconf", "0"), ("accept_dad", "0"), ("dad_transmits", "0"),
    ("router_solicitations", "0"), ("addr_gen_mode", "0"), ("disable_ipv6", "0"),
)
# a bridge holding an IPv6 gateway: no router's advertisements, no DAD for its own addresses
BRIDGE_IPV6 = (("accept_ra", "0"), ("accept_dad", "0"), ("disable_ipv6", "0"))


def enable_ipv6(conf: ConfDir, device: str, settings: tuple[tuple[str, str], ...]) -> None:
    """SETTINGS (STATIC_IPV6, BRIDGE_IPV6) written to DEVICE of CONF (net/ipv6/conf)."""
    for key, value in settings:
        conf.write(device, key, value)


# what a new namespace's `default` holds, so that an interface born in it inherits it:
# STATIC_IPV6 but IPv6 off; turning IPv6 on is then the one write a dual-stack attach makes
STATIC_DEFAULT = (*STATIC_IPV6[:-1], ("disable_ipv6", "1"))
IPV6_ON = (("disable_ipv6", "0"),)


def enable_static_ipv6(ifname: str, inherited: bool = False) -> None:
    """STATIC_IPV6 on IFNAME, in the calling thread's namespace (a container's: one lookup
    of its /proc/sys/net/ipv6/conf, then writes relative to it). INHERITED: IFNAME was born
    in a namespace whose default is STATIC_DEFAULT (kernel/linux.py create_netns): one write."""
    conf = ConfDir.open()
    try:
        enable_ipv6(conf, ifname, IPV6_ON if inherited else STATIC_IPV6)
    finally:
        conf.close()


class ConfDir:
    """A directory of per-device sysctls (`/proc/sys/net/ipv6/conf` unless told) of the
    namespace it was opened in, held open.

    A sysctl path looked up from /proc/sys first finds `net`, an entry every namespace has:
    the kernel compares the name with each namespace's in turn, ~0.1 ms with 1,000
    containers. Looked up relative to this directory, it costs the same with any number."""

    def __init__(self, fd: int | None, tree: str = "net/ipv6/conf") -> None:
        self.fd = fd
        self.tree = tree

    @classmethod
    def open(cls, tree: str = "net/ipv6/conf") -> ConfDir:
        """/proc/sys/TREE of the calling thread's namespace; a kernel without it (without
        IPv6) gives one that does nothing."""
        try:
            return cls(os.open(f"/proc/sys/{tree}", os.O_RDONLY | os.O_DIRECTORY
                               | os.O_CLOEXEC), tree)
        except FileNotFoundError:
            return cls(None, tree)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def write(self, device: str, key: str, value: str) -> None:
        """Set DEVICE's KEY (writing an unchanged value is a no-op for the kernel)."""
        if self.fd is None:
            return
        try:
            fd = os.open(f"{device}/{key}", os.O_WRONLY | os.O_CLOEXEC, dir_fd=self.fd)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            code = exc.errno or errno.EIO
            dotted = self.tree.replace("/", ".")
            raise KernelError(f"cannot set {dotted}.{device}.{key}={value}: {exc}", code) from exc
