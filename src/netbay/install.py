"""Writes the runtime-facing executables: the CNI plugins (`netbay`, `netbay-ipam`) and the
netavark-compatible backend for podman (`netavark`).

Each is one self-contained file: the script (cni/plugin.py, podman/netavark.py) with the
shared client (thin.py) pasted in, its settings filled in (the daemon's socket, how to start
the daemon: this interpreter with `-m netbay.daemon`), and the shebang `#!<python> -IS`, so
it starts without site-packages and imports nothing of netbay's (the system's python3 by
default: see default_python).

The code is compiled here, once, by the interpreter of the shebang: compiling ~500 lines at
every start costs more than everything else the executable does (a script run as a file is
never cached). The file holds that bytecode and the source (without comments and
docstrings); it runs the bytecode only when the interpreter is the one that made it (its
magic number) and the bytecode is intact (a checksum), else it compiles the source (see
LOADER). `source=True` writes the readable script alone.
"""

from __future__ import annotations

import ast
import io
import itertools
import os
import subprocess
import sys
import tempfile
import tokenize
from pathlib import Path

from . import __version__
from .paths import DEFAULT_SOCKET

_HERE = Path(__file__).parent
CNI_SCRIPT = _HERE / "cni" / "plugin.py"
NETAVARK_SCRIPT = _HERE / "podman" / "netavark.py"
THIN = _HERE / "thin.py"


def _block(text: str, name: str) -> tuple[int, int]:
    """Where the lines `# <NAME>` ... `# </NAME>` are (start of the first, end of the last)."""
    start = text.index(f"# <{name}>\n")
    end = text.index(f"# </{name}>\n") + len(f"# </{name}>\n")
    return start, end


def render(script: Path, settings: dict[str, object], python: str) -> str:
    source = script.read_text()
    thin = THIN.read_text()
    t_start, t_end = _block(thin, "thin")
    start, end = _block(source, "thin")
    source = source[:start] + thin[t_start:t_end] + source[end:]
    start, end = _block(source, "settings")
    lines = ["# <settings>"] + [f"{key} = {value!r}" for key, value in settings.items()]
    source = source[:start] + "\n".join(lines) + "\n# </settings>\n" + source[end:]
    first, _, rest = source.partition("\n")
    assert first.startswith("#!")
    return f"#!{python} -IS\n{rest}"


def stripped(source: str) -> str:
    """SOURCE without its comments and docstrings, the rest as written: each byte of an
    executable costs the parser ~75 instructions at every start (ast.unparse would also
    write this Python's syntax, which an older target may not read)."""
    lines = io.StringIO(source).readlines()
    starts = list(itertools.accumulate(map(len, lines), initial=0))

    def at(row: int, column: int) -> int:
        return starts[row - 1] + column

    def at_utf8(row: int, byte_column: int) -> int:  # ast counts bytes, tokenize characters
        return at(row, len(lines[row - 1].encode()[:byte_column].decode()))

    cuts = [(at(*token.start), at(*token.end), "")
            for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) \
                and ast.get_docstring(node, clean=False) is not None:
            doc = node.body[0]
            assert doc.end_lineno is not None and doc.end_col_offset is not None
            cuts.append((at_utf8(doc.lineno, doc.col_offset),
                         at_utf8(doc.end_lineno, doc.end_col_offset),
                         "pass" if len(node.body) == 1 else ""))
    for start, end, replacement in sorted(cuts, reverse=True):
        source = source[:start] + replacement + source[end:]
    return source


# Without column positions (-X no_debug_ranges): 9% less bytecode; the executables never
# show a traceback.
_COMPILE = (
    "import marshal, sys; from importlib.util import MAGIC_NUMBER; "
    "sys.stdout.buffer.write(MAGIC_NUMBER + marshal.dumps(compile(sys.stdin.read(), "
    "sys.argv[1], 'exec', optimize=2)))"
)


def bytecode(source: str, python: str, filename: str) -> tuple[bytes, bytes]:
    """(PYTHON's magic number, SOURCE compiled by PYTHON and marshalled): the format
    belongs to the interpreter's version."""
    made = subprocess.run(
        [python, "-I", "-S", "-X", "no_debug_ranges", "-c", _COMPILE, filename],
        input=source.encode(), capture_output=True, check=True,
    ).stdout
    return made[:4], made[4:]


# The largest prime below 2**30, one digit of CPython's integers: the remainder is one pass
# over the bytecode, 1.6% of a start's instructions. It finds every change within three
# bytes and misses other damage once in 10**9. (zlib.crc32 costs as much where zlib is
# built in, 0.6 ms more where it is a shared library, and zlib is optional.)
CHECKSUM_PRIME = 1073741789


def checksum(data: bytes) -> int:
    return int.from_bytes(data, "little") % CHECKSUM_PRIME


# What an executable runs: its bytecode, or its source when the bytecode is another Python's
# (the interpreter was upgraded since the install) or damaged; never an error of its own.
LOADER = f'''\
import marshal

try:  # importlib.util.MAGIC_NUMBER, without importing importlib.util (6 ms)
    from _frozen_importlib_external import MAGIC_NUMBER
except ImportError:
    from importlib.util import MAGIC_NUMBER


def _code():
    if MAGIC_NUMBER == BYTECODE_MAGIC:
        try:
            data = bytes.fromhex(BYTECODE)
            if int.from_bytes(data, "little") % {CHECKSUM_PRIME} == BYTECODE_CHECKSUM:
                return marshal.loads(data)
        except (ValueError, EOFError):  # not hex, not marshal data: damaged
            pass
    return compile(SOURCE, FILENAME, "exec", optimize=2)
'''


def compiled(
    source: str, python: str, name: str, settings: dict[str, object], what: str
) -> str:
    """The executable: a header saying what it is, LOADER, and the code as PYTHON's
    bytecode and as source."""
    filename = f"<netbay {name}>"
    source = stripped(source)
    magic, code = bytecode(source, python, filename)
    # SOURCE as a raw literal: it reads as the script, and parses in 80% of the instructions
    # of repr's one line
    assert "'''" not in source and source.endswith("\n"), filename
    shown = "\n".join(f"#   {key} = {value!r}" for key, value in settings.items())
    return (
        f"#!{python} -IS\n"
        f"# {what}, installed by netbay {__version__}.\n"
        f"# Settings:\n{shown}\n"
        "# The code: netbay's script and thin.py, as source without comments and docstrings\n"
        "# (SOURCE) and as bytecode the interpreter above compiled at install time (BYTECODE,\n"
        "# hex): compiling at every start costs more than the rest (5 ms). Once the\n"
        "# interpreter runs that bytecode no longer (it was upgraded), it compiles SOURCE:\n"
        "# reinstall to save the 5 ms again.\n"
        f"{LOADER}\n\n"
        f"FILENAME = {filename!r}\n"
        f"BYTECODE_MAGIC = {magic!r}\n"
        f"BYTECODE_CHECKSUM = {checksum(code)}\n"
        # hex: the parser reads it in two thirds of the instructions of a bytes literal's
        # escapes; on a line of its own, as a constant of letters and digits alone would be
        # interned (+2% of a start's instructions)
        f"BYTECODE = '''\n{code.hex()}\n'''\n"
        f"SOURCE = r'''{source}'''\n"
        "exec(_code())\n"
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _common(socket: str | None, root: str | None) -> dict[str, object]:
    return {
        "SOCKET": socket or os.environ.get("NETBAY_SOCKET") or DEFAULT_SOCKET,
        "DAEMON": [sys.executable, "-m", "netbay.daemon"],
        "ROOT": root or "",
    }


SYSTEM_PYTHON = "/usr/bin/python3"


def default_python() -> str:
    """The executables' interpreter: the system's python3 when it is 3.10 or later (they
    need nothing from the venv, and a distribution's build starts ~2 ms faster than a
    source build with a shared libpython: PGO, LTO, static linking), else this one."""
    if Path(SYSTEM_PYTHON).exists() and os.access(SYSTEM_PYTHON, os.X_OK):
        probe = subprocess.run(
            [SYSTEM_PYTHON, "-I", "-S", "-c", "import sys; sys.exit(sys.version_info < (3, 10))"],
            capture_output=True,
        )
        if probe.returncode == 0:
            return SYSTEM_PYTHON
    return sys.executable


def _executable(
    script: Path, settings: dict[str, object], python: str, name: str, what: str, source: bool
) -> str:
    text = render(script, settings, python)
    return text if source else compiled(text, python, name, settings, what)


def install_cni(
    directory: Path,
    name: str = "netbay",
    ipam_name: str = "netbay-ipam",
    *,
    socket: str | None = None,
    root: str | None = None,
    python: str | None = None,
    source: bool = False,
) -> list[Path]:
    written = []
    python = python or default_python()
    for kind, filename in (("netbay", name), ("netbay-ipam", ipam_name)):
        settings = {"KIND": kind, **_common(socket, root)}
        path = directory / filename
        what = f"netbay's CNI plugin ({kind}, CNI spec 1.1.0)"
        _write(path, _executable(CNI_SCRIPT, settings, python, filename, what, source))
        written.append(path)
    return written


def install_netavark(
    directory: Path,
    name: str = "netavark",
    *,
    socket: str | None = None,
    root: str | None = None,
    python: str | None = None,
    source: bool = False,
) -> Path:
    settings = {**_common(socket, root), "VERSION": __version__}
    path = directory / name
    what = "netbay's netavark-compatible network backend for podman"
    _write(path, _executable(NETAVARK_SCRIPT, settings, python or default_python(), name,
                             what, source))
    return path
