"""The null driver: a namespace with only `lo` (Docker's `none` network)."""

from __future__ import annotations

from .host import _ModeDriver


class NullDriver(_ModeDriver):
    name = "null"
    mode = "none"
