"""The record of everything netbay made: the Store protocol, its SQLite implementation
(store.sqlite) and an in-memory one for tests (MemoryStore)."""

from .base import Store
from .memory import MemoryStore

__all__ = ["MemoryStore", "Store"]
