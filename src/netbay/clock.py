from __future__ import annotations

from datetime import datetime, timezone


def now_rfc3339() -> str:
    """UTC with nanosecond-style precision, as Docker's Created fields."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
