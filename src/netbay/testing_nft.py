"""FakeNft: netbay's nft text applied to sets of elements, all or nothing like nftables (the
engine's fake of libnftables; netbay.testing re-exports it)."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import FirewallError

_ELEMENT = re.compile(r"^(add|delete) element (\w+) (\w+) (\w+) \{ (.*) \}$")
_TABLE = re.compile(r"^(add|delete) table (\w+) (\w+)$")
_BLOCK = re.compile(r"^table (\w+) (\w+) \{$")
_MEMBER = re.compile(r"^\s+(set|map|chain) (\w+) \{")


@dataclass
class FakeTable:
    sets: dict[str, set[str]] = field(default_factory=dict)
    chains: set[str] = field(default_factory=set)


class FakeNft:
    """netbay's nft tables as sets of element texts, changed by the commands netbay sends
    (plan/firewall.py's text), each apply all or nothing. `flush()` is `nft flush ruleset`;
    `fail_next()` makes the next apply fail as nftables refusing it would."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, str], FakeTable] = {}  # (family, name) ->
        self.applied: list[str] = []  # every transaction that went through
        self._fail: str | None = None

    def elements(self, family: str, name: str, table: str = "netbay") -> set[str]:
        found = self.tables.get((family, table))
        return set(found.sets.get(name, ())) if found else set()

    def flush(self) -> None:
        self.tables.clear()

    def fail_next(self, message: str = "injected failure") -> None:
        self._fail = message

    def apply(self, commands: str) -> None:
        if not commands.strip():
            return
        if self._fail is not None:
            message, self._fail = self._fail, None
            raise FirewallError(f"nftables refused the change: {message}")
        tables = copy.deepcopy(self.tables)
        block: FakeTable | None = None
        for line in commands.splitlines():
            block = self._line(tables, block, line)
        self.tables = tables
        self.applied.append(commands)

    def _line(
        self, tables: dict[tuple[str, str], FakeTable], block: FakeTable | None, line: str
    ) -> FakeTable | None:
        """Apply one line to TABLES; the table block the line is in, after it."""
        if block is not None:
            member = _MEMBER.match(line)
            if member and member[1] == "chain":
                block.chains.add(member[2])
            elif member:
                block.sets[member[2]] = set()
            return None if line == "}" else block
        if not line.strip() or line.lstrip().startswith("#"):
            return None
        if found := _BLOCK.match(line):
            return tables.setdefault((found[1], found[2]), FakeTable())
        if found := _TABLE.match(line):
            key = (found[2], found[3])
            if found[1] == "add":
                tables.setdefault(key, FakeTable())
            elif tables.pop(key, None) is None:
                raise FirewallError(f"nftables refused the change: no table {key}")
            return None
        if found := _ELEMENT.match(line):
            self._elements(tables, *found.groups())
            return None
        raise FirewallError(f"FakeNft cannot parse: {line!r}")

    @staticmethod
    def _elements(
        tables: dict[tuple[str, str], FakeTable],
        verb: str, family: str, table: str, name: str, elements: str,
    ) -> None:
        found = tables.get((family, table))
        if found is None or name not in found.sets:
            raise FirewallError(f"nftables refused the change: no set {family} {table} {name}")
        items = elements.split(", ")
        if verb == "add":
            found.sets[name].update(items)
            return
        if not set(items) <= found.sets[name]:
            raise FirewallError("nftables refused the change: No such file or directory")
        found.sets[name].difference_update(items)

    def list(self, what: str) -> list[dict[str, Any]]:
        """`list ruleset`: the tables with their sets' elements, in libnftables' JSON shape."""
        out: list[dict[str, Any]] = []
        for (family, table), found in sorted(self.tables.items()):
            out.append({"table": {"family": family, "name": table}})
            out += [
                {"set": {"family": family, "table": table, "name": name, "elem": sorted(elems)}}
                for name, elems in sorted(found.sets.items())
            ]
        return out

    def has_chain(self, family: str, table: str, chain: str) -> bool:
        found = self.tables.get((family, table))
        return found is not None and chain in found.chains
