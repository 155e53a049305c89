"""The installed executables keep answering when their bytecode cannot run: made by another
Python (an upgrade since the install: another magic number) or damaged. They compile their
source then (written without comments and docstrings), and say the same. No daemon, no root:
VERSION, `netavark version`, a refused document."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netbay.cni.plugin import VERSIONS
from netbay.install import checksum, default_python, install_cni, install_netavark, stripped
from netbay.podman.netavark import NETAVARK_VERSION

CNI_VERSION = {"cniVersion": "1.1.0", "supportedVersions": list(VERSIONS)}
CNI_MARK = ('LATEST = "1.1.0"', 'LATEST = "9.9.9"')  # for mark_source
MARKED_VERSION = {"cniVersion": "9.9.9", "supportedVersions": list(VERSIONS)}


def _literal(path: Path, name: str) -> tuple[Any, int, int]:
    """(the value of the literal assigned to NAME in the installed file, where it starts,
    where it ends)."""
    data = path.read_bytes()
    node = next(n for n in ast.parse(data).body
                if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == name)
    assert node.value.end_lineno is not None and node.value.end_col_offset is not None
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    start = starts[node.value.lineno - 1] + node.value.col_offset
    end = starts[node.value.end_lineno - 1] + node.value.end_col_offset
    return ast.literal_eval(data[start:end].decode()), start, end


def rewrite(path: Path, name: str, change: Callable[[Any], Any]) -> None:
    """The literal assigned to NAME in the installed file replaced by repr(change(value))."""
    value, start, end = _literal(path, name)
    new = change(value)
    assert new != value, name
    data = path.read_bytes()
    path.write_bytes(data[:start] + repr(new).encode() + data[end:])


def mark_source(path: Path, old: str, new: str) -> None:
    """SOURCE edited so that its answer differs from the bytecode's: shows which ran."""
    rewrite(path, "SOURCE", lambda source: source.replace(old, new))


def cni_version(path: Path, python: str | None = None) -> Any:
    """The plugin's answer to VERSION (no cniVersion asked), run as the runtime runs it or
    by PYTHON; nothing on stderr."""
    argv = [python, "-I", "-S", str(path)] if python else [str(path)]
    out = subprocess.run(argv, input=b"", capture_output=True, env={"CNI_COMMAND": "VERSION"},
                         timeout=30)
    assert (out.returncode, out.stderr) == (0, b""), out
    return json.loads(out.stdout)


def netavark_version(path: Path) -> Any:
    out = subprocess.run([str(path), "version"], capture_output=True, timeout=30)
    assert (out.returncode, out.stderr) == (0, b""), out
    return json.loads(out.stdout)


def other_magic(magic: bytes) -> bytes:
    return bytes([magic[0] ^ 1]) + magic[1:]


def replace_bytecode(path: Path, change: Callable[[bytes], bytes]) -> None:
    """BYTECODE changed and its checksum made to match: damage only marshal can tell."""
    data = change(bytes.fromhex(_literal(path, "BYTECODE")[0]))
    rewrite(path, "BYTECODE", lambda _: data.hex())
    rewrite(path, "BYTECODE_CHECKSUM", lambda _: checksum(data))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "another magic number": lambda path: rewrite(path, "BYTECODE_MAGIC", other_magic),
    "another checksum": lambda path: rewrite(path, "BYTECODE_CHECKSUM", lambda c: c + 1),
    # still marshal data, which loads and runs: only the checksum tells
    "a constant changed": lambda path: rewrite(
        path, "BYTECODE", lambda hexdigits: hexdigits.replace(b"1.1.0".hex(), b"9.9.9".hex())),
    "not hex": lambda path: rewrite(path, "BYTECODE", lambda hexdigits: "zz" + hexdigits[2:]),
    "truncated, checksum to match": lambda path: replace_bytecode(
        path, lambda data: data[: len(data) // 2]),
    "not marshal data, checksum to match": lambda path: replace_bytecode(
        path, lambda data: bytes(len(data))),
}


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    return install_cni(tmp_path)[0]


def test_intact_bytecode_is_what_runs(plugin: Path) -> None:
    mark_source(plugin, *CNI_MARK)
    assert cni_version(plugin) == CNI_VERSION


@pytest.mark.parametrize("damage", DAMAGE)
def test_bytecode_that_cannot_run_falls_back_to_the_source(plugin: Path, damage: str) -> None:
    DAMAGE[damage](plugin)
    assert cni_version(plugin) == CNI_VERSION
    mark_source(plugin, *CNI_MARK)
    assert cni_version(plugin) == MARKED_VERSION  # it was the source that answered


def test_netavark_with_another_magic_number(tmp_path: Path) -> None:
    path = install_netavark(tmp_path)
    rewrite(path, "BYTECODE_MAGIC", other_magic)
    assert netavark_version(path)["version"] == NETAVARK_VERSION
    mark_source(path, f'NETAVARK_VERSION = "{NETAVARK_VERSION}"', 'NETAVARK_VERSION = "source"')
    assert netavark_version(path)["version"] == "source"


def _magic(python: str) -> bytes | None:
    """PYTHON's magic number; None if it does not run (a pyenv shim of a version not
    selected)."""
    out = subprocess.run(
        [python, "-I", "-S", "-c",
         "import sys, importlib.util; sys.stdout.buffer.write(importlib.util.MAGIC_NUMBER)"],
        capture_output=True, timeout=30,
    )
    return out.stdout if out.returncode == 0 else None


def _another_python() -> str | None:
    """An interpreter on PATH whose bytecode the executables' default one cannot run."""
    ours = _magic(default_python())
    for minor in range(10, 15):
        found = shutil.which(f"python3.{minor}")
        if found and _magic(found) not in (None, ours):
            return found
    return None


def test_bytecode_of_another_python_as_after_an_upgrade(tmp_path: Path) -> None:
    """Installed for another Python, run by the default one (what an upgrade of the
    executables' interpreter does to them)."""
    other = _another_python()
    if other is None:
        pytest.skip("no Python 3.10+ with another magic number on PATH")
    plugin = install_cni(tmp_path, python=other)[0]
    mark_source(plugin, *CNI_MARK)
    assert cni_version(plugin, python=default_python()) == MARKED_VERSION
    assert cni_version(plugin, python=other) == CNI_VERSION  # its own Python: the bytecode


def test_a_refused_document_is_explained_by_json(plugin: Path) -> None:
    """_json reports a syntax error through json.decoder, which the executable imports
    only then (before Python 3.12 the scanner does not)."""
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x",
           "CNI_IFNAME": "eth0"}
    out = subprocess.run([str(plugin)], input=b'{"name" "n"}', capture_output=True, env=env,
                         timeout=30)
    assert out.returncode == 1 and out.stderr == b""
    assert json.loads(out.stdout) == {
        "cniVersion": "1.1.0", "code": 6,
        "msg": "error decoding network config: invalid JSON: Expecting ':' delimiter: "
               "line 1 column 9 (char 8)",
    }


def test_stripped_drops_comments_and_docstrings_and_nothing_else() -> None:
    source = '''#!/usr/bin/python3
"""Module, é."""
import sys  # why


class Only:
    """Its docstring alone: pass instead."""


def f(x):
    """Über
    ä."""
    return "# not a comment", x  # ä
'''
    assert stripped(source) == (
        "\n\nimport sys  \n\n\nclass Only:\n    pass\n\n\ndef f(x):\n    \n"
        '    return "# not a comment", x  \n'
    )
