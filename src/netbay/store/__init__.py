"""The record of everything netbay made: a Store protocol and its SQLite implementation."""

from .base import Store

__all__ = ["Store"]
