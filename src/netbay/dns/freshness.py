"""A cheap answer to "can the record have changed since the zone was loaded?", asked for
every query: the header of SQLite's WAL index, read from memory.

Asking SQLite (`PRAGMA data_version`, the store's `version()`) costs 8-13 us here: it opens a
read transaction, which takes and drops a lock on the -shm file (two fcntl calls). At a fixed
20,000 queries/s nearly every packet comes alone, so that check was the largest cost of an
answer after the send itself. In WAL mode every commit rewrites the WAL-index header, the
first 48 bytes of the -shm file, before the commit returns (https://www.sqlite.org/walformat.html,
"The WAL-Index Header": iChange moves on every transaction, mxFrame on every commit, the salts
on every restart of the WAL). Those bytes, mapped (~0.2 us, no system call), tell: the same
as when SQLite was last asked, nothing was committed since; other bytes, or no -shm file (not
in WAL mode, not opened yet), ask SQLite as before. So it can only make the server ask more
often, never answer from an old zone.

The -shm file cannot be truncated or replaced under the mapping while the server's own read
connection is open: SQLite does either only with its exclusive lock on the file, which that
connection's shared lock keeps anyone from taking. `recheck()` (once a second) still
compares inodes, so a file made anew by hand is followed.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from pathlib import Path

HEADER = 48  # WalIndexHdr: iVersion, unused, iChange, isInit, ..., mxFrame, nPage, salts, sums


class CommitWatch:
    def __init__(self, db: Path) -> None:
        self.path = Path(f"{db}-shm")
        self.seen: bytes | None = None  # the header when SQLite was last asked
        self._map: mmap.mmap | None = None
        self._inode = 0

    def look(self) -> bytes | None:
        """The header as it is now; None when there is nothing to read (ask SQLite)."""
        mapped = self._map  # a local: recheck() may drop the attribute meanwhile
        return None if mapped is None else mapped[:HEADER]

    def unchanged(self) -> bool:
        """Nothing was committed since SQLite was last asked, and `seen` was set then."""
        header = self.look()
        return header is not None and header == self.seen

    def open(self) -> None:
        """Map the header, if there is one yet (SQLite makes the file on its first read)."""
        if self._map is not None:
            return
        with contextlib.suppress(OSError, ValueError):  # missing, or shorter than a header
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                self._inode = os.fstat(fd).st_ino
                self._map = mmap.mmap(fd, HEADER, mmap.MAP_SHARED, mmap.PROT_READ)
            finally:
                os.close(fd)  # the mapping keeps its own reference

    def recheck(self) -> None:
        """Follow a -shm file made anew: drop the mapping (until the next open())."""
        try:
            inode = os.stat(self.path).st_ino
        except OSError:
            inode = 0
        if inode != self._inode:
            self.close()

    def close(self) -> None:
        # not mmap.close(): another thread may be reading it; it goes with its last reference
        self._map, self._inode, self.seen = None, 0, None
