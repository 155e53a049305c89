"""Identifiers shaped like Docker's: 64 hex digits, shown as 12."""

from __future__ import annotations

import re
import secrets

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")


def new_id() -> str:
    return secrets.token_hex(32)


def short(full_id: str) -> str:
    return full_id[:12]


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


_ADJ = ("brave", "calm", "eager", "fond", "keen", "lucid", "merry", "nifty", "quiet", "witty")
_NOUN = ("ada", "curie", "darwin", "euler", "gauss", "hopper", "lovelace", "noether", "turing")


def random_name() -> str:
    return f"{secrets.choice(_ADJ)}_{secrets.choice(_NOUN)}_{secrets.token_hex(2)}"
