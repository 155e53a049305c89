from __future__ import annotations

from datetime import UTC, datetime


def now_rfc3339() -> str:
    """UTC with nanosecond-style precision, as Docker's Created fields."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
