"""Injected crash points for fault tests: NETBAY_FAULT=<point> SIGKILLs this process the first
time it reaches <point>; NETBAY_FAULT=<point>@<n>, the n-th time (the second network of a
setup, the second attachment a GC removes)."""

from __future__ import annotations

import itertools
import os
import signal

_ARMED, _, _NTH = os.environ.get("NETBAY_FAULT", "").partition("@")
_KILL_AT = int(_NTH or 1)
_hits = itertools.count(1)  # next() is atomic: the daemon's threads share it


def point(name: str) -> None:
    if name == _ARMED and next(_hits) >= _KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)
