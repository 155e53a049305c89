"""Named network namespaces, made in-process: unshare in this thread, bind-mount, switch back.

Namespaces are per thread on Linux, so a daemon thread can step into a namespace, open a
netlink socket there (the socket stays bound to it) and step back, with no helper process.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from .. import _linux
from ..errors import KernelError


@contextlib.contextmanager
def entered(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """Run the body with this thread inside the namespace at PATH (None: stay where we are)."""
    if path is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise KernelError(f"network namespace {path} does not exist", errno.ENOENT) from exc
        try:
            _linux.setns(target, _linux.CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _linux.setns(home, _linux.CLONE_NEWNET)
    finally:
        os.close(home)


def ensure_shared_dir(directory: Path) -> None:
    """Make the netns directory a shared mount, as `ip netns` does.

    Containers get a slave copy of it in their mount namespace, so unmounting a namespace
    file here also unmounts their copy; otherwise a container started earlier would keep
    every later-deleted namespace (and its veth) alive.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = str(directory)
    # Try first, as `ip netns` does, instead of asking mountinfo whether DIRECTORY is a mount
    # point: mountinfo still lists a mount that a later one (a tmpfs over /run) hides, and
    # making the visible plain directory shared then fails with EINVAL.
    try:
        _linux.mount(None, target, None, _linux.MS_SHARED)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        _linux.mount(target, target, None, _linux.MS_BIND)
        _linux.mount(None, target, None, _linux.MS_SHARED)


def create(path: Path) -> None:
    """Create a new network namespace pinned at PATH. Fails if PATH exists."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDONLY | os.O_CLOEXEC, 0o444)
    os.close(fd)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _linux.unshare(_linux.CLONE_NEWNET)
        try:
            _linux.mount("/proc/thread-self/ns/net", str(path), None, _linux.MS_BIND)
        finally:
            _linux.setns(home, _linux.CLONE_NEWNET)
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        raise KernelError(f"cannot create network namespace {path}: {exc}", exc.errno or 0) from exc
    finally:
        os.close(home)


def delete(path: Path) -> None:
    """Unpin and remove the namespace file; a missing one is success."""
    try:
        _linux.umount(str(path))
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise KernelError(f"cannot unmount {path}: {exc}", exc.errno or 0) from exc
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def exists(path: Path) -> bool:
    return path.exists() and _linux.is_mountpoint(path)
