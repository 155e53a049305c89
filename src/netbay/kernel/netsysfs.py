"""/sys/class/net of any network namespace: RPS/RFS/XPS masks of its devices.

sysfs shows the network namespace of whoever mounted it, not of the reader: the daemon of a
test (or of a host whose /sys was mounted elsewhere) would see, and write, another
namespace's devices. So every access runs in a short-lived thread that takes a private mount
namespace of its own (unshare CLONE_NEWNS|CLONE_FS, everything made private so nothing
propagates back), steps into the target network namespace and mounts a fresh sysfs over
/sys there. When the thread ends, its mount namespace, and the sysfs in it, go with it: no
helper process, nothing left mounted anywhere.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .. import _linux
from ..errors import KernelError
from ..plan.rps import RpsSetting, parse_mask

T = TypeVar("T")
CLONE_FS = 0x00000200
SYS = Path("/sys")
SOCK_FLOW_ENTRIES = Path("/proc/sys/net/core/rps_sock_flow_entries")


def with_sysfs(netns: str | os.PathLike[str] | None, work: Callable[[Path], T]) -> T:
    """WORK(sysfs root) in a thread whose /sys belongs to NETNS (None: this thread's)."""
    target = None if netns is None else os.fspath(netns)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _linux.unshare(_linux.CLONE_NEWNS | CLONE_FS)
            _linux.mount(None, "/", None, _linux.MS_REC | _linux.MS_PRIVATE)
            fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC) if target else home
            try:
                _linux.setns(fd, _linux.CLONE_NEWNET)
            finally:
                if fd != home:
                    os.close(fd)
            mount_own_sysfs()
            results.append(work(SYS))
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    try:
        thread = threading.Thread(target=run, name="netbay-sysfs", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(home)
    if errors:
        error = errors[0]
        if isinstance(error, FileNotFoundError) and target and error.filename == target:
            raise KernelError(f"network namespace {target} does not exist", errno.ENOENT)
        if isinstance(error, OSError) and not isinstance(error, KernelError):
            raise KernelError(f"sysfs of {target or 'this namespace'}: {error}", error.errno or 0)
        raise error
    return results[0]


def mount_own_sysfs(flags: int = 0) -> None:
    """A sysfs of this thread's network namespace on /sys (in a mount namespace of its own).
    EBUSY means the kernel refused to stack a namespace's sysfs on itself: /sys already shows
    this namespace (a real host's daemon, or a container whose /sys was made for it), so it
    is the right one as it is."""
    try:
        _linux.mount("sysfs", str(SYS), "sysfs", flags)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise


@dataclass(frozen=True)
class Queues:
    """One device's steering settings, per queue."""

    rps_cpus: tuple[frozenset[int], ...]  # per receive queue
    flow_cnt: tuple[int, ...]  # per receive queue
    xps_cpus: tuple[frozenset[int] | None, ...]  # per transmit queue (None: not settable)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _queues(device: Path) -> Queues:
    queues = device / "queues"
    rx = sorted(queues.glob("rx-*"), key=lambda p: int(p.name[3:]))
    tx = sorted(queues.glob("tx-*"), key=lambda p: int(p.name[3:]))
    rps = tuple(parse_mask(_read(q / "rps_cpus") or "0") for q in rx)
    flows = tuple(int(_read(q / "rps_flow_cnt") or 0) for q in rx)
    xps = []
    for q in tx:
        text = _read(q / "xps_cpus")
        xps.append(None if text is None else parse_mask(text))
    return Queues(rps, flows, tuple(xps))


def read_queues(
    netns: str | os.PathLike[str] | None, names: Iterable[str] | None = None
) -> dict[str, Queues]:
    """Steering settings of NAMES (None: every device) in NETNS; missing names are left out."""
    wanted = None if names is None else set(names)

    def work(root: Path) -> dict[str, Queues]:
        out = {}
        for device in sorted((root / "class/net").iterdir()):
            if wanted is None or device.name in wanted:
                out[device.name] = _queues(device)
        return out

    return with_sysfs(netns, work)


def write_rps(netns: str | os.PathLike[str] | None, settings: Mapping[str, RpsSetting]) -> None:
    """Set rps_cpus and rps_flow_cnt of every receive queue of each device in NETNS: every
    device is checked first; a write the kernel refuses puts back what was changed."""

    def work(root: Path) -> None:
        plan: list[tuple[Path, str]] = []
        for name, setting in settings.items():
            device = root / "class/net" / name
            if not device.is_dir():
                raise KernelError(f"no device {name} in {netns or 'this namespace'}",
                                  errno.ENODEV)
            for queue in sorted((device / "queues").glob("rx-*")):
                plan.append((queue / "rps_cpus", setting.mask))
                plan.append((queue / "rps_flow_cnt", str(setting.flows)))
        _write_all(plan)

    with_sysfs(netns, work)


def _write_all(plan: list[tuple[Path, str]]) -> None:
    done: list[tuple[Path, str]] = []
    try:
        for path, value in plan:
            before = path.read_text().strip()
            path.write_text(value)
            done.append((path, before))
    except OSError as exc:
        for path, before in reversed(done):
            try:
                path.write_text(before)
            except OSError:
                continue
        raise KernelError(f"cannot write {path}: {exc.strerror}", exc.errno or 0) from exc


def online_cpus() -> frozenset[int]:
    """The CPUs the kernel runs (not namespaced)."""
    from ..plan.rps import parse_cpu_list

    text = Path("/sys/devices/system/cpu/online").read_text().strip()
    return parse_cpu_list("cpus", text)


def sock_flow_entries_now() -> int | None:
    """net.core.rps_sock_flow_entries, or None where it is not visible: it is global and
    the kernel shows it only in the root network namespace."""
    text = _read(SOCK_FLOW_ENTRIES)
    return None if text is None else int(text)


def set_sock_flow_entries(value: int) -> None:
    try:
        SOCK_FLOW_ENTRIES.write_text(str(value))
    except OSError as exc:
        raise KernelError(f"cannot set net.core.rps_sock_flow_entries={value}: {exc.strerror}",
                          exc.errno or 0) from exc


def size_sock_flow_table(flow_counts: list[int]) -> str:
    """Grow net.core.rps_sock_flow_entries for RFS when the flow tables need it; returns what
    was done, for the caller to report (the table is global: only the root namespace has
    the knob, so a daemon in another namespace can only say what to set)."""
    from ..plan.rps import sock_flow_entries

    current = sock_flow_entries_now()
    if current is None:
        wanted = sock_flow_entries(flow_counts, 0)
        return (f"net.core.rps_sock_flow_entries is global and not visible in this network "
                f"namespace: set it to at least {wanted} in the root namespace for RFS")
    wanted = sock_flow_entries(flow_counts, current)
    if wanted != current:
        set_sock_flow_entries(wanted)
        return f"net.core.rps_sock_flow_entries {current} -> {wanted}"
    return f"net.core.rps_sock_flow_entries {current} (enough)"


def apply_endpoint_rps(
    setting: RpsSetting, host_ifname: str | None, ifname: str, netns: str | os.PathLike[str]
) -> str:
    """A network's `-o rps=...` on one endpoint: the host end of its veth (in this thread's
    namespace) and its container end; then the RFS socket table. Returns a note to log."""
    if host_ifname:
        write_rps(None, {host_ifname: setting})
    write_rps(netns, {ifname: setting})
    return size_sock_flow_table([setting.flows] * 2) if setting.flows else ""
