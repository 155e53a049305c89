"""What happens to the names in a directory, from the kernel (inotify(7), through libc): for
tests that must see every step, not sample the result (a poll loop can miss a window of a
microsecond; inotify cannot)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
from collections.abc import Iterator
from pathlib import Path

IN_ATTRIB = 0x004
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
_NAMES = {IN_ATTRIB: "attrib", IN_MOVED_TO: "moved_to", IN_CREATE: "create",
          IN_DELETE: "delete"}


class Watch:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def events(self, name: str) -> list[str]:
        """What happened to NAME since the watch began (or since the last call)."""
        out = []
        with contextlib.suppress(BlockingIOError):
            while data := os.read(self.fd, 65536):
                offset = 0
                while offset < len(data):
                    _, mask, _, size = _EVENT.unpack_from(data, offset)
                    raw = data[offset + _EVENT.size:offset + _EVENT.size + size]
                    offset += _EVENT.size + size
                    if raw.rstrip(b"\0").decode() == name:
                        out += [label for bit, label in _NAMES.items() if mask & bit]
        return out


@contextlib.contextmanager
def watch(directory: Path) -> Iterator[Watch]:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    try:
        mask = IN_ATTRIB | IN_MOVED_TO | IN_CREATE | IN_DELETE
        if libc.inotify_add_watch(fd, str(directory).encode(), mask) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory}")
        yield Watch(fd)
    finally:
        os.close(fd)
