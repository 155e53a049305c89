"""Injected crash points for fault tests: NETBAY_FAULT=<point> SIGKILLs this process there."""

from __future__ import annotations

import os
import signal

_ARMED = os.environ.get("NETBAY_FAULT", "")


def point(name: str) -> None:
    if name == _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
